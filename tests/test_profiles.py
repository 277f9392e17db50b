"""One source of defaults (params.yaml), named profiles applied to it, and a score cache that sees code changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from potstill.errors import ParamsError
from potstill.params import SECTIONS, load_params
from potstill.profiles import apply_profile

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "configs/profiles").glob("*.yaml"))


@pytest.fixture
def params_copy(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    return path


def test_the_section_models_hold_no_defaults_params_yaml_is_the_one_source():
    for name, model in SECTIONS.items():
        with_default = [field for field, info in model.model_fields.items() if not info.is_required()]
        assert with_default == [], f"{name}: {with_default} have defaults in params.py; state them in params.yaml"
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, model in SECTIONS.items():
        assert set(shipped[name]) == set(model.model_fields), name
    assert load_params(ROOT / "params.yaml", *SECTIONS)


def test_applying_a_profile_changes_only_its_keys_keeps_comments_and_records_its_name(params_copy):
    before = params_copy.read_text()
    apply_profile(ROOT / "configs/profiles/tiny.yaml", params_copy)
    after = params_copy.read_text()
    old, new = yaml.safe_load(before), yaml.safe_load(after)
    assert new["profile"] == "tiny"
    assert new["student"]["keep_layers"] == [0, 29] and new["train"]["max_steps"] == 4
    assert new["train"]["seed"] == old["train"]["seed"]  # not in the profile: untouched
    assert (old["train"]["learning_rate"], new["train"]["learning_rate"]) == (4e-4, 2e-4)  # in it: changed
    gates = {gate["name"]: gate for gate in new["evaluate"]["gates"]}  # lists are replaced whole
    assert gates["gguf_top1"]["model"] == "gguf-q8_0" and "student_beats_its_start_on_mc" not in gates
    # Every comment line of params.yaml survives (but those inside the gates list, which the profile
    # replaces with its own), and a changed key keeps its own comment.
    outside_gates = before[:before.index("  gates:")] + before[before.index("\nhardware:"):]
    comments = [line.strip() for line in outside_gates.splitlines() if line.strip().startswith("#")]
    assert all(comment in after for comment in comments)
    assert any(line.startswith("  max_steps: 4") and "# optimizer steps" in line for line in after.splitlines())
    assert load_params(params_copy, *SECTIONS)


def test_an_unknown_key_is_refused_naming_the_profile_and_key_and_nothing_is_written(params_copy, tmp_path):
    profile = tmp_path / "typo.yaml"
    profile.write_text("train:\n  max_step: 10\n")
    before = params_copy.read_text()
    with pytest.raises(ParamsError) as err:
        apply_profile(profile, params_copy)
    assert str(profile) in str(err.value) and "train.max_step" in str(err.value) and "max_steps" in str(err.value)
    assert params_copy.read_text() == before


def test_a_profile_whose_result_does_not_validate_is_refused_before_writing(params_copy, tmp_path):
    profile = tmp_path / "bad.yaml"
    profile.write_text("train:\n  learning_rate: -1\n")
    before = params_copy.read_text()
    with pytest.raises(ParamsError, match=r"train.learning_rate"):
        apply_profile(profile, params_copy)
    assert params_copy.read_text() == before
    with pytest.raises(ParamsError, match="no such profile; available in"):
        apply_profile(tmp_path / "missing.yaml", params_copy)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda path: path.stem)
def test_every_shipped_profile_applies_to_the_shipped_params_and_says_what_it_is_for(profile, params_copy):
    assert profile.read_text().startswith("#"), f"{profile}: start with a comment: hardware, time, purpose"
    apply_profile(profile, params_copy)
    assert yaml.safe_load(params_copy.read_text())["profile"] == profile.stem


def test_the_profile_command_applies_by_name(params_copy):
    from typer.testing import CliRunner

    from potstill.profiles import app

    result = CliRunner().invoke(app, ["tiny", "--params", str(params_copy),
                                      "--profiles", str(ROOT / "configs/profiles")])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(params_copy.read_text())["generate"]["n_examples"] == 14
    listed = CliRunner().invoke(app, ["--list", "--profiles", str(ROOT / "configs/profiles")])
    assert "tiny" in listed.output
    refused = CliRunner().invoke(app, ["nope", "--params", str(params_copy),
                                       "--profiles", str(ROOT / "configs/profiles")])
    assert refused.exit_code == 2 and "no such profile" in refused.output


def test_the_score_cache_misses_when_a_metric_function_changes(tmp_path, monkeypatch):
    from potstill.evaluation import score_cache

    code = tmp_path / "potstill"
    shutil.copytree(ROOT / "potstill", code, ignore=shutil.ignore_patterns("__pycache__"))
    real_digest = score_cache.code_digest
    monkeypatch.setattr(score_cache, "code_digest", lambda: real_digest(code))  # score with the copy's code
    tasks, test, model = tmp_path / "tasks", tmp_path / "test.jsonl", tmp_path / "model"
    tasks.mkdir()
    model.mkdir()
    (tasks / "t.yaml").write_text("task: t\n")
    test.write_text("{}\n")
    (model / "model.safetensors").write_bytes(b"weights")
    cache = score_cache.ScoreCache({"limit": 4}, tasks, test)
    cache.put(model, {"acc": 0.5})
    assert score_cache.ScoreCache({"limit": 4}, tasks, test).get(model) == {"acc": 0.5}
    metrics = code / "evaluation/metrics.py"
    metrics.write_text(metrics.read_text().replace("def top1_agreement(", "def top1_agreement(  ", 1))
    assert score_cache.ScoreCache({"limit": 4}, tasks, test).get(model) is None
    assert real_digest(code) != real_digest(ROOT / "potstill")
