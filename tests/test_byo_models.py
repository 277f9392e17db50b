"""Bring your own models: teacher weights and students from folders and the local hub cache, the
tokenizer and chat-template checks made before anything is written, qwen2 pruning, padded vocabularies.

Nothing is fetched: hub ids are read from a cache the tests build themselves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from potstill.errors import InputError
from potstill.weights import POINTER_FILE, TEMPLATE_FILE, WeightsSource, load_tokenizer, resolve_hub, weights_dir
from tests.conftest import ROOT, TEST_OVERRIDES, make_project, run
from tests.test_train import api_tokens, tiny_params, tiny_run, write_split  # noqa: F401 (tiny_run: a fixture)


def save(model, tokenizer, path):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# The teacher's endpoint where the test's teacher needs one: without weights, or for API log-probs (prepare
# refuses a teacher it cannot serve with log-probs, see below).
API_URL = "http://127.0.0.1:8000/v1"


def prepare_params(tmp_path, teacher_weights, student_source, kd_source="api", keep_layers=(0, 1),
                   base_url: str | None = "", **extra):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if base_url == "":
        base_url = API_URL if str(teacher_weights) == "none" or kd_source == "api" else None
    params["teacher"].update(weights=str(teacher_weights), revision=None, base_url=base_url)
    params["student"].update(source=str(student_source), revision=None, keep_layers=list(keep_layers), **extra)
    params["kd"]["source"] = kd_source
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def prepare(params, tmp_path):
    from stages.prepare import run_prepare

    return run_prepare(params, tmp_path / "teacher", tmp_path / "student-base")


@pytest.fixture(scope="module")
def other_student(tmp_path_factory, tokenizer):
    """A pretrained-student stand-in: not a pruned copy (3 layers, 96 wide), the teacher's tokenizer."""
    from potstill.models import tiny_llama

    return save(tiny_llama(tokenizer, layers=3, hidden=96, seed=5), tokenizer,
                tmp_path_factory.mktemp("student") / "model")


# --- params -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, revision, kind", [
    ("embedded", None, "embedded"), ("none", None, "none"), ("models/llama", None, "folder"),
    ("hf:Qwen/Qwen2.5-0.5B-Instruct", "abc123", "hub"), ("weights/model.Q8_0.gguf", None, "gguf")])
def test_weights_sources_parse(value, revision, kind):
    assert WeightsSource.parse(value, revision).kind == kind


@pytest.mark.parametrize("value, revision, message", [
    ("hf:just-a-name", None, "is not a hub id; write hf:<organisation>/<name>"),
    ("models/llama", "abc", "a revision applies to hub ids"),
    ("embedded", "abc", "takes no revision")])
def test_bad_weights_sources_say_what_to_write(value, revision, message):
    with pytest.raises(InputError, match=message):
        WeightsSource.parse(value, revision)


def test_params_refuse_a_student_source_that_is_a_gguf_file(tmp_path):
    from potstill.errors import ParamsError
    from potstill.params import load_params

    path = prepare_params(tmp_path, "embedded", "student.gguf")
    with pytest.raises(ParamsError, match=r"student.source.*is not allowed here; use prune, folder, hub"):
        load_params(path, "student")


# --- the hub, offline -----------------------------------------------------------------------------

def test_a_hub_id_missing_from_the_cache_names_the_download_command():
    with pytest.raises(InputError, match=r"hf download potstill-tests/absent --revision 0123abc` first .*HF_TOKEN"):
        resolve_hub("potstill-tests/absent", "0123abc", "student.source")


def hub_cache(root, repo_id, model_dir, sha="4f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6"):
    """Lay out `model_dir` as the hub cache does after `hf download repo_id`: snapshots/<sha>, refs/main."""
    import shutil

    repo = root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(model_dir, repo / "snapshots" / sha)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    return sha


def test_a_hub_student_resolves_offline_from_hf_hub_cache_and_dvc_lock_records_its_commit(
        tmp_path_factory, tiny_model_dir, other_student):
    """The whole prepare stage under real DVC: student hf:<id> pinned to main, resolved to the commit sha."""
    hub = tmp_path_factory.mktemp("hub")
    sha = hub_cache(hub, "potstill-tests/tiny-student", other_student)
    project = tmp_path_factory.mktemp("byo")
    import shutil

    shutil.copytree(tiny_model_dir, project / "teacher-weights")  # a folder relative to the repo
    overrides = {**TEST_OVERRIDES, "teacher": {**TEST_OVERRIDES["teacher"], "weights": "teacher-weights"},
                 "student": {"source": "hf:potstill-tests/tiny-student", "revision": sha}}
    make_project(project, "tiny", overrides)
    run(["dvc", "repro", "prepare"], project, env_extra={"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"})
    pointer = json.loads((project / "models/student-base" / POINTER_FILE).read_text())
    assert pointer["kind"] == "hub" and pointer["id"] == "potstill-tests/tiny-student" and pointer["revision"] == sha
    assert "model.safetensors" in pointer["sizes"]
    lock = (project / "dvc.lock").read_text()
    assert sha in lock and str(hub) not in lock and str(project) not in lock  # no machine-specific paths
    teacher_pointer = json.loads((project / "models/teacher" / POINTER_FILE).read_text())
    assert teacher_pointer == {**teacher_pointer, "kind": "folder", "path": "teacher-weights"}
    assert not any((project / "models/student-base").glob("*.safetensors"))  # a pointer, not a copy


# --- students from folders --------------------------------------------------------------------

def test_a_student_from_a_folder_is_a_pointer_that_trains_and_merges(tiny_run, tiny_model_dir, other_student,  # noqa: F811
                                                                      tmp_path):
    from potstill.models import load_checked
    from stages.merge import run_merge
    from stages.train import app

    record = prepare(prepare_params(tmp_path, tiny_model_dir, other_student, kd_source="api"), tmp_path)
    assert record["student"] == "folder"
    assert weights_dir(tmp_path / "student-base") == other_student
    params = tiny_params(tmp_path)
    result = CliRunner().invoke(app, [
        "--params", str(params), "--student", str(tmp_path / "student-base"), "--curated", str(tiny_run / "curated"),
        "--generated", str(tiny_run / "generated"), "--soft-targets", str(tiny_run / "none"),
        "--out", str(tmp_path / "adapter"), "--live", str(tmp_path / "live")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["final/rows_aligned"] == 4  # the API log-probs line up with this student's tokens
    run_merge(tmp_path / "student-base", tmp_path / "adapter", tmp_path / "merged")
    merged = load_checked(tmp_path / "merged")
    assert merged.config.num_hidden_layers == 3 and merged.config.hidden_size == 96


def test_a_mismatched_tokenizer_is_refused_before_anything_is_written(tmp_path, tokenizer, tiny_model_dir):
    from transformers import AutoTokenizer

    from potstill.models import tiny_llama

    other = AutoTokenizer.from_pretrained(tiny_model_dir)
    other.add_tokens(["<tool_call_begin>"])
    student = save(tiny_llama(other, layers=2, hidden=64), other, tmp_path / "other-tokenizer")
    with pytest.raises(InputError, match=r"(?s)tokenizers differ:.*vocabularies differ: 0 tokens only in the "
                                         r"teacher's, 1 only in the student's.*kd.source: none"):
        prepare(prepare_params(tmp_path, tiny_model_dir, student, kd_source="local"), tmp_path)
    assert not (tmp_path / "teacher").exists() and not (tmp_path / "student-base").exists()
    # The same student is fine when only the teacher's text is learned.
    assert prepare(prepare_params(tmp_path, tiny_model_dir, student, kd_source="none"), tmp_path)


def test_a_student_without_a_chat_template_gets_the_teachers_with_a_warning(tmp_path, tokenizer, tiny_model_dir,
                                                                           capsys):
    from transformers import AutoTokenizer

    from potstill.models import tiny_llama

    base = AutoTokenizer.from_pretrained(tiny_model_dir)
    base.chat_template = None
    student = save(tiny_llama(base), base, tmp_path / "base-model")
    (student / "chat_template.jinja").unlink(missing_ok=True)
    prepare(prepare_params(tmp_path, tiny_model_dir, student, kd_source="none"), tmp_path)
    assert "has no chat template; training uses the teacher's chat template" in capsys.readouterr().err
    assert (tmp_path / "student-base" / TEMPLATE_FILE).read_text() == tokenizer.chat_template
    assert load_tokenizer(tmp_path / "student-base").chat_template == tokenizer.chat_template


def test_a_template_that_cannot_mark_assistant_tokens_is_refused(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from potstill.models import tiny_llama

    odd = AutoTokenizer.from_pretrained(tiny_model_dir)
    odd.chat_template = "{% for m in messages %}{{ m['role'] }}: ...\n{% endfor %}"  # drops every message's text
    student = save(tiny_llama(odd), odd, tmp_path / "odd")
    with pytest.raises(InputError, match="assistant tokens cannot be found"):
        prepare(prepare_params(tmp_path, "none", student, kd_source="none"), tmp_path)


def test_layers_the_teacher_lacks_are_refused_before_anything_is_written(tmp_path, tiny_model_dir):
    with pytest.raises(InputError, match=r"layer 5 does not exist; the teacher has layers 0..1"):
        prepare(prepare_params(tmp_path, tiny_model_dir, "prune", keep_layers=(0, 5)), tmp_path)
    assert not (tmp_path / "teacher").exists() and not (tmp_path / "student-base").exists()


def test_no_teacher_weights_with_a_pruned_student_is_refused(tmp_path):
    with pytest.raises(InputError, match="student.source prune cuts the student from the teacher's weights"):
        prepare(prepare_params(tmp_path, "none", "prune"), tmp_path)


def test_a_teacher_with_neither_weights_nor_endpoint_is_refused(tmp_path, other_student):
    with pytest.raises(InputError, match="teacher.weights is none and teacher.base_url is null: there is no teacher"):
        prepare(prepare_params(tmp_path, "none", other_student, kd_source="none", base_url=None), tmp_path)
    assert not (tmp_path / "teacher").exists()


@pytest.mark.parametrize(("weights", "message"), [
    ("none", "teacher.weights is none and teacher.base_url is null: there is no teacher"),
    ("nowhere/teacher.gguf", "'nowhere/teacher.gguf' does not exist; give the path of a .gguf file"),
])
def test_serving_the_teacher_refuses_what_it_cannot_serve_before_starting_a_server(weights, message):
    """start_endpoints, reached without prepare (generate and classify label call it): one check, prepare's own."""
    import contextlib

    from potstill.teacher.endpoints import start_endpoints
    from tests.conftest import shipped

    teacher = shipped("teacher", weights=weights, base_url=None)
    with contextlib.ExitStack() as stack, pytest.raises(InputError, match=message):
        start_endpoints(teacher, stack)


def test_api_logprobs_from_a_checkpoint_served_by_transformers_serve_are_refused(tmp_path, tiny_model_dir,
                                                                                 other_student):
    with pytest.raises(InputError, match=r"kd.source api .* `transformers serve`, which returns none"):
        prepare(prepare_params(tmp_path, tiny_model_dir, other_student, kd_source="api", base_url=None), tmp_path)
    # the same teacher behind the user's own endpoint (vLLM) may give log-probs
    assert prepare(prepare_params(tmp_path, tiny_model_dir, other_student, kd_source="api", base_url=API_URL),
                   tmp_path)["teacher"] == "folder"


def test_a_teacher_less_run_writes_pointers_only(tmp_path, other_student):
    record = prepare(prepare_params(tmp_path, "none", other_student, kd_source="api"), tmp_path)
    assert record == {**record, "teacher": "none", "student": "folder"}
    assert weights_dir(tmp_path / "teacher") is None
    assert json.loads((tmp_path / "teacher" / POINTER_FILE).read_text()) == {"kind": "none"}


# --- qwen2 --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory, tokenizer):
    """A 4-layer qwen2 (sliding window above layer 2) with the shipped tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         use_sliding_window=True, sliding_window=64, max_window_layers=2, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return save(Qwen2ForCausalLM(config), tokenizer, tmp_path_factory.mktemp("qwen2") / "model")


def test_a_qwen2_teacher_prunes_with_its_per_layer_config_and_the_student_trains(
        tiny_run, tiny_qwen2, tmp_path):  # noqa: F811
    from potstill.models import load_checked
    from stages.train import app

    teacher = load_checked(tiny_qwen2)
    assert teacher.config.layer_types == ["full_attention"] * 2 + ["sliding_attention"] * 2
    prepare(prepare_params(tmp_path, tiny_qwen2, "prune", keep_layers=(0, 3)), tmp_path)
    student = load_checked(tmp_path / "student-base")
    assert student.config.num_hidden_layers == 2
    assert student.config.layer_types == ["full_attention", "sliding_attention"]
    assert student.config.max_window_layers == 1
    # The kept layers are the teacher's own: same weights, renumbered.
    assert torch.equal(student.model.layers[1].mlp.up_proj.weight, teacher.model.layers[3].mlp.up_proj.weight)
    result = CliRunner().invoke(app, [
        "--params", str(tiny_params(tmp_path)), "--student", str(tmp_path / "student-base"),
        "--curated", str(tiny_run / "curated"), "--generated", str(tiny_run / "generated"),
        "--soft-targets", str(tiny_run / "none"), "--out", str(tmp_path / "adapter"), "--live", str(tmp_path / "live")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


def test_a_model_without_model_layers_is_refused_by_name():
    from potstill.models import prune_layers

    with pytest.raises(InputError, match="Linear has no model.layers"):
        prune_layers(torch.nn.Linear(2, 2), [0])


# --- padded vocabularies (Qwen2.5-0.5B vs -7B: one tokenizer, 151,936 vs 152,064 rows) ----------

def test_the_kd_loss_of_a_padded_student_equals_the_unpadded_one_on_the_shared_id_range():
    from potstill.distill.kd import chunked_distillation_loss, distillation_loss

    torch.manual_seed(0)
    vocab, pad, width = 50, 14, 8
    hidden = torch.randn(2, 6, width)
    head = torch.randn(vocab, width)
    padded = torch.cat([head, 5 * torch.randn(pad, width)])  # untrained rows with large logits
    labels = torch.randint(0, vocab, (2, 6))
    labels[:, :2] = -100
    kd_ids = torch.randint(0, vocab, (2, 6, 4))
    kd_logprobs = torch.log_softmax(torch.randn(2, 6, 4), -1) - 0.5
    kd_mask = labels != -100
    settings = dict(alpha=0.7, temperature=2.0, capture_temperature=2.0)
    reference = distillation_loss(hidden @ head.T, labels, kd_ids, kd_logprobs, kd_mask, **settings)
    full = distillation_loss(hidden @ padded.T, labels, kd_ids, kd_logprobs, kd_mask, vocab_limit=vocab, **settings)
    chunked = chunked_distillation_loss(hidden, padded, labels, kd_ids, kd_logprobs, kd_mask, vocab_limit=vocab,
                                        chunk_rows=3, **settings)
    unlimited = distillation_loss(hidden @ padded.T, labels, kd_ids, kd_logprobs, kd_mask, **settings)
    for ours in (full, chunked):
        assert [float(x) for x in ours] == pytest.approx([float(x) for x in reference], rel=1e-5)
    assert float(unlimited[0]) != pytest.approx(float(reference[0]), rel=1e-3)  # the padding does matter


def test_scoring_a_padded_teacher_leaves_the_padding_rows_out(tokenizer, tiny_model_dir):
    from potstill.distill.score import score_rows
    from potstill.models import load_checked

    rows = [{"id": "r", "messages": [{"role": "user", "content": "Hi?"},
                                     {"role": "assistant", "content": "Hello there."}]}]
    model = load_checked(tiny_model_dir)
    reference = score_rows(model, tokenizer, rows, 4, 64, 1, progress=False)["r"]
    model.resize_token_embeddings(len(tokenizer) + 64, mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[len(tokenizer):] = 3.0  # padding rows that would win the top-k
    padded = score_rows(model, tokenizer, rows, 4, 64, 1, progress=False)["r"]
    assert torch.equal(padded[0], reference[0])
    assert torch.allclose(padded[1], reference[1], atol=1e-5)


def test_hf_hub_cache_is_honoured_in_a_fresh_process(tmp_path, other_student):
    sha = hub_cache(tmp_path, "potstill-tests/fresh", other_student)
    code = ("from potstill.weights import resolve_hub; "
            "print(resolve_hub('potstill-tests/fresh', None, 'student.source'))")
    out = run([sys.executable, "-c", code], tmp_path, env_extra={"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert out.stdout.strip().endswith(f"snapshots/{sha}")


def test_without_teacher_weights_a_gate_on_kl_is_refused_before_any_model_loads(tmp_path, tiny_model_dir):
    from potstill.errors import ParamsError
    from potstill.evaluation.run import run_evaluate

    params = prepare_params(tmp_path, "none", tiny_model_dir)
    models = {"student_base": ("hf", tmp_path / "no-such-student", None), "merged": ("hf", tmp_path / "nope", None)}
    with pytest.raises(ParamsError, match=r"\(student_closes_the_kl_gap\): kl_gap_closed is measured against the "
                                          r"teacher's weights, and teacher.weights is none"):
        run_evaluate(params, models, tmp_path / "test.jsonl")


# --- named profiles for real hardware, dry-run on tiny stand-ins ---------------------------------

def stand_in(kind, tokenizer, layers, hidden, extra_rows=0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from potstill.models import tiny_llama

    if kind == "llama":
        return tiny_llama(tokenizer, layers=layers, hidden=hidden)
    config = Qwen2Config(vocab_size=len(tokenizer) + extra_rows, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Qwen2ForCausalLM(config)


# profile -> (architecture, teacher stand-in padding rows, student stand-in padding rows)
PROFILES = {"api-teacher-lora": ("llama", 0, 0), "llama-8b-to-1b": ("llama", 0, 0),
            "qwen-7b-to-0.5b": ("qwen2", 128, 0)}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_hardware_profile_validates_and_prepares_with_tiny_stand_ins(profile, tmp_path, tokenizer):
    """The profile's hub ids, laid out in a local cache as tiny models of the same family; prepare runs on them."""
    import shutil

    from potstill.profiles import apply_profile

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    applied = yaml.safe_load(apply_profile(ROOT / "configs" / "profiles" / f"{profile}.yaml", params))
    arch, teacher_rows, student_rows = PROFILES[profile]
    hub = tmp_path / "hub"
    for key, layers, hidden, rows in (("teacher", 4, 96, teacher_rows), ("student", 2, 64, student_rows)):
        source = applied[key]["weights" if key == "teacher" else "source"]
        if source.startswith("hf:"):
            folder = save(stand_in(arch, tokenizer, layers, hidden, rows), tokenizer, tmp_path / key)
            hub_cache(hub, source[3:], folder)
    result = run([sys.executable, str(ROOT / "stages" / "prepare.py"), "--params", str(params),
                  "--teacher-out", str(tmp_path / "out-teacher"), "--student-out", str(tmp_path / "out-student")],
                 tmp_path, env_extra={"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"})
    assert "prepare:" in result.stdout
    student = json.loads((tmp_path / "out-student" / POINTER_FILE).read_text())
    assert student["kind"] == "hub" and student["id"] == applied["student"]["source"][3:]
    teacher = json.loads((tmp_path / "out-teacher" / POINTER_FILE).read_text())
    assert teacher["kind"] == ("none" if applied["teacher"]["weights"] == "none" else "hub")


def test_the_default_profile_puts_back_every_key_the_other_profiles_change():
    import shutil
    import tempfile

    from potstill.profiles import apply_profile

    shipped_params = yaml.safe_load((ROOT / "params.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        params = shutil.copy(ROOT / "params.yaml", f"{tmp}/params.yaml")
        for profile in sorted(PROFILES):
            apply_profile(ROOT / "configs" / "profiles" / f"{profile}.yaml", Path(params))
        back = yaml.safe_load(apply_profile(ROOT / "configs" / "profiles" / "default.yaml", Path(params)))
    assert back == {**shipped_params, "profile": "default"}


# --- a run without teacher weights --------------------------------------------------------------

@pytest.mark.slow
def test_a_run_with_only_a_teacher_url_and_a_student_folder_goes_end_to_end(tmp_path, tokenizer, other_student):
    """The README's "bring your own" case with no teacher weights anywhere: an OpenAI-compatible teacher (the fake
    endpoint, reporting log-probs in the student's tokens), kd.source api, the student from a folder; real
    `dvc repro` through evaluate, which leaves the teacher out."""
    from tests.fake_endpoint import FakeOpenAI

    def tokens(text: str) -> list[str]:
        return [tokenizer.decode([i]) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]

    with FakeOpenAI(completion_tokens=12, lifetime_s=900, tokenize=tokens) as server:
        project = make_project(tmp_path / "project", "tiny", {
            "teacher": {"base_url": server.base_url, "model": "fake", "api_key_env": None, "weights": "none",
                        "revision": None, "logprobs": 3},
            "student": {"source": str(other_student), "revision": None},
            "kd": {"source": "api", "top_k": 3},
            "quantize": {"formats": ["quanto-int8"]},
            "evaluate": {"gates": [{"name": "student_rarely_loops", "metric": "degenerate_share", "model": "merged",
                                    "max": 0.10, "warn_only": True}]},
        })
        run(["dvc", "repro"], project, timeout=1200)
        assert sum(server.answered.values()) >= 10  # every prompt went to the endpoint
    assert json.loads((project / "models/teacher" / POINTER_FILE).read_text()) == {"kind": "none"}
    train = json.loads((project / "metrics/train/metrics.json").read_text())
    assert train["final/rows_aligned"] > 0 and train["kd_loss"] > 0  # the endpoint's log-probs were learnt
    evaluation = json.loads((project / "metrics/eval.json").read_text())
    assert "teacher" not in evaluation and {"student_base", "merged", "quanto-int8"} <= set(evaluation)
    assert "kl_vs_teacher" not in evaluation["merged"] and evaluation["merged"]["potstill_mc"]["acc"] >= 0


def test_the_gguf_export_refuses_another_architecture_by_name_and_says_which_formats_work(tmp_path):
    from transformers import Qwen2Config

    from potstill.export.gguf_writer import _check_llama

    with pytest.raises(InputError, match=r"model_type 'qwen2'; the GGUF export handles 'llama' only: for this "
                                         r"architecture use quantize.formats quanto-int8, quanto-int4 or torchao-int8"):
        _check_llama(Qwen2Config(), tmp_path)
