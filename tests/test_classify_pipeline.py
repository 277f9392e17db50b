"""The classifier pipeline end to end with real parts: the llama.cpp teacher, DVC, the shipped encoder, ONNX.

A small slice of the shipped data (60 texts, 30 gold) keeps it to a few minutes on 2 cores; the
figures it produces say the pipeline works, not how well (the full run's are in the README).
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.conftest import PIPELINE_KEY_ENV, PIPELINE_SECRET, TEST_OVERRIDES, make_project, run

pytestmark = pytest.mark.slow

PIPELINE = "pipelines/classify/dvc.yaml"
STAGES = ("prepare", "label", "curate", "train-soft", "train-hard", "export", "evaluate")
# No gates in the fixture's run: one epoch on ~50 rows learns next to nothing, and the shipped gate
# that says so is tested on its own below (a failed stage would leave dvc.lock behind).
OVERRIDES = {**TEST_OVERRIDES,
             "classify": {"epochs": 1, "batch_size": 8, "teacher_speed_texts": 2, "val_fraction": 0.2, "gates": []}}


# The tests' overrides make the teacher read its (dummy) key from this variable, as a user's would.
KEY = {PIPELINE_KEY_ENV: PIPELINE_SECRET}


def ran(output: str) -> list[str]:
    return [stage for stage in STAGES if re.search(rf"Running stage '{PIPELINE}:{re.escape(stage)}'", output)]


@pytest.fixture(scope="module")
def classify_project(tmp_path_factory):
    dest = tmp_path_factory.mktemp("classify")
    project = make_project(dest, "tiny", OVERRIDES, extra=("pipelines", "data/classify"))
    for name, keep in (("texts.jsonl", 60), ("gold.jsonl", 30)):
        path = project / "data/classify" / name
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[::len(lines) // keep][:keep]))  # spread over the labels
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "small classify data"], project)
    result = run(["dvc", "repro", PIPELINE], project, env_extra=KEY)
    return project, result.stdout + result.stderr


def test_the_pipeline_runs_every_stage_and_reports_every_model_with_intervals(classify_project):
    project, output = classify_project
    assert ran(output) == list(STAGES), output
    metrics = json.loads((project / "metrics/classify/eval.json").read_text())
    assert set(metrics["models"]) == {"teacher", "majority", "tfidf_logreg", "student_hard", "student_soft",
                                      "onnx_int8"}
    for name, scores in metrics["models"].items():
        for key in ("acc", "macro_f1", "ece"):
            low, high = scores["ci95"][key]
            assert 0 <= low <= scores[key] <= high <= 1, (name, key)
    assert metrics["models"]["onnx_int8"]["items_per_s"] > metrics["models"]["teacher"]["items_per_s"]
    report = (project / "reports/classify/eval.md").read_text()
    assert report.startswith("# Classifier distillation")
    assert "The teacher's own accuracy on the 30 gold labels" in report.splitlines()[2]
    assert (project / "reports/classify/reliability.png").read_bytes()[:4] == b"\x89PNG"
    export = json.loads((project / "metrics/classify/export.json").read_text())
    assert export["fp32_max_abs_logit_diff"] < 1e-3
    labelled = [json.loads(line) for line in (project / "data/classify/labelled/gold.jsonl").open()]
    assert len(labelled) == 30 and all(abs(sum(r["teacher_probs"]) - 1) < 1e-4 for r in labelled if r["teacher_probs"])


def test_a_second_repro_runs_nothing_and_a_loss_param_reruns_only_what_it_touches(classify_project):
    project, _ = classify_project
    output = run(["dvc", "repro", PIPELINE], project, env_extra=KEY).stdout
    assert ran(output) == [], output
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["classify"]["alpha"] = 0.8
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        output = run(["dvc", "repro", PIPELINE], project, env_extra=KEY).stdout
        assert ran(output) == ["train-soft", "export", "evaluate"], output
    finally:
        run(["git", "checkout", "--", "params.yaml"], project)


def test_the_root_pipeline_does_not_include_the_classifier(classify_project):
    """`dvc repro` and `dvc stage list` read the default dvc.yaml: the classifier runs only when named."""
    project, _ = classify_project
    assert "classify" not in run(["dvc", "stage", "list"], project).stdout
    assert "train-soft" in run(["dvc", "stage", "list", PIPELINE], project).stdout


def test_the_shipped_gate_fails_a_student_that_learned_nothing(classify_project, tmp_path):
    """One epoch on ~50 rows: the student predicts about one class, and student_beats_majority says so (exit 3)."""
    import yaml

    from tests.conftest import SHIPPED_PARAMS

    project, _ = classify_project
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["classify"]["gates"] = SHIPPED_PARAMS["classify"]["gates"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = run([sys.executable, "stages/classify/evaluate.py", "--params", str(tmp_path / "params.yaml"),
                  "--metrics", str(tmp_path / "eval.json"), "--report", str(tmp_path / "report")], project,
                 check=False, env_extra=KEY)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "gate failed: gate student_beats_majority: gold.acc of student_soft vs majority" in result.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["gates"]["student_beats_majority"]["passed"] is False
    assert "FAIL: gate student_beats_majority" in (tmp_path / "report" / "eval.md").read_text()
