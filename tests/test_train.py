"""Training data: assistant-only labels, API logprobs lined up with token ids, and a real
few-step DistillTrainer run on a tiny model built from config with the shipped tokenizer."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from potstill.chat import tokenize_chat
from potstill.distill.api_targets import align_api_logprobs, token_string_index
from potstill.distill.data import DistillCollator
from potstill.distill.kd import MISSING_LOGPROB

MESSAGES = [{"role": "user", "content": "What colour is the sky?"},
            {"role": "assistant", "content": "The sky is blue on a clear day."}]


@pytest.fixture(scope="module")
def index(tokenizer):
    return token_string_index(tokenizer)


def test_only_assistant_tokens_and_end_of_turn_are_labelled(tokenizer):
    encoded = tokenize_chat(tokenizer, MESSAGES, max_seq_len=256)
    start = encoded["response_start"]
    assert all(label == -100 for label in encoded["labels"][:start])
    labelled = [t for t in encoded["labels"] if t != -100]
    assert tokenizer.decode(labelled[:-1]) == MESSAGES[1]["content"]
    assert labelled[-1] == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert "<|im_start|>assistant" in tokenizer.decode(encoded["input_ids"][:start])
    assert len(tokenize_chat(tokenizer, MESSAGES, max_seq_len=10)["input_ids"]) == 10


def api_tokens(tokenizer, text, k=3):
    """What an endpoint sharing the tokenizer reports: token strings with top-k alternatives."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [{"token": tokenizer.decode([i]), "logprob": -0.1,
             "top": [[tokenizer.decode([i]), -0.1], [" banana", -2.5], ["\ufffd", -3.0]][:k]}
            for i in ids], ids


def test_api_logprobs_map_back_to_the_same_ids(tokenizer, index):
    tokens, ids = api_tokens(tokenizer, MESSAGES[1]["content"])
    aligned = align_api_logprobs(tokenizer, MESSAGES[1]["content"], tokens, index, k=3)
    assert aligned is not None
    kd_ids, kd_lps = aligned
    assert [row[0] for row in kd_ids] == ids
    assert kd_ids[0][1] == tokenizer.convert_tokens_to_ids("Ġbanana")
    # The replacement character decodes from many byte tokens: ambiguous, so left out.
    assert kd_lps[0][2] == MISSING_LOGPROB and "\ufffd" not in index


def test_logprobs_from_another_tokenizer_are_refused(tokenizer, index):
    tokens, _ = api_tokens(tokenizer, "The sky is blue.")
    tokens[1]["token"] = " skyy"  # a teacher whose tokens differ from the student's
    assert align_api_logprobs(tokenizer, "The sky is blue.", tokens, index, k=3) is None
    assert align_api_logprobs(tokenizer, "The sky is blue.", tokens[:-1], index, k=3) is None


def test_collator_lays_soft_targets_on_response_positions(tokenizer):
    encoded = tokenize_chat(tokenizer, MESSAGES, 256)
    n = len(encoded["input_ids"]) - encoded["response_start"] - 1
    row = {**encoded, "kd_ids": [[5, 6]] * n, "kd_logprobs": [[-0.1, -2.0]] * n}
    short = {**tokenize_chat(tokenizer, [MESSAGES[0], {"role": "assistant", "content": "Blue."}], 256),
             "kd_ids": [], "kd_logprobs": []}
    batch = DistillCollator(tokenizer.pad_token_id, k=2)([row, short])
    start = encoded["response_start"]
    assert batch["kd_mask"][0].nonzero().squeeze(-1).tolist() == list(range(start, start + n))
    assert not batch["kd_mask"][1].any()
    assert batch["attention_mask"][1].sum() == len(short["input_ids"])
    assert (batch["labels"][1][len(short["input_ids"]):] == -100).all()


def write_split(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tokenizer, tiny_model_dir):
    """A curated/generated pair of folders with API logprobs, as the data stages write them."""
    root = tmp_path_factory.mktemp("train")
    curated, generated = root / "curated", root / "generated"
    curated.mkdir()
    generated.mkdir()
    replies = ["The sky is blue.", "Two plus two is four.", "Paris is in France.", "Water boils at 100 C."]
    rows, logprobs = [], []
    for i, reply in enumerate(replies):
        rows.append({"id": f"r{i}", "domain": "d", "messages": [
            {"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": reply}]})
        logprobs.append({"id": f"r{i}", "tokens": api_tokens(tokenizer, reply)[0]})
    write_split(curated / "train.jsonl", rows[:3])
    write_split(curated / "val.jsonl", rows[3:])
    write_split(generated / "logprobs.jsonl", logprobs)
    write_split(generated / "responses.jsonl", rows)
    (generated / "manifest.json").write_text(json.dumps(
        {"logprobs_k": 3, "endpoint": {"logprob_temperature": 1.0}}))
    return root


def tiny_params(root, **train):
    import yaml

    params = yaml.safe_load(open("params.yaml"))
    params["teacher"]["logprobs"] = 3
    params["kd"].update({"source": "api", "top_k": 3})
    # LoRA unless a test asks otherwise (the shipped default is full fine-tuning).
    params["train"].update({"method": "lora", "max_steps": 6, "batch_size": 2, "grad_accum": 1, "logging_steps": 1,
                            "warmup_steps": 0, "max_seq_len": 64, "learning_rate": 5e-3, **train})
    params["lora"].update({"r": 4, "alpha": 8})
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_train_cli_fits_an_adapter_and_logs_ce_and_kd_apart(tiny_run, tiny_model_dir, tokenizer):
    from stages.train import app

    params = tiny_params(tiny_run)
    result = CliRunner().invoke(app, [
        "--params", str(params), "--student", str(tiny_model_dir), "--curated", str(tiny_run / "curated"),
        "--generated", str(tiny_run / "generated"), "--soft-targets", str(tiny_run / "none"),
        "--out", str(tiny_run / "adapter"),
        "--live", str(tiny_run / "live")])
    assert result.exit_code == 0, result.output
    assert (tiny_run / "adapter" / "adapter_model.safetensors").exists()
    metrics = json.loads((tiny_run / "live" / "metrics.json").read_text())
    assert math.isfinite(metrics["kd_loss"]) and math.isfinite(metrics["ce_loss"])
    assert metrics["final/rows_aligned"] == 4
    # Compute is counted in tokens, padding not counted: 3 rows make 2 batches an epoch (2 rows, then 1),
    # so 6 steps are 3 epochs.
    rows = [json.loads(line) for line in (tiny_run / "curated" / "train.jsonl").read_text().splitlines()]
    lengths = [len(tokenize_chat(tokenizer, row["messages"], 64)["input_ids"]) for row in rows]
    assert metrics["final/tokens_student_offpolicy"] == 3 * sum(lengths)
    ce_curve = (tiny_run / "live" / "plots" / "metrics" / "ce_loss.tsv").read_text().splitlines()
    first, last = float(ce_curve[1].split("\t")[-1]), float(ce_curve[-1].split("\t")[-1])
    assert last < first  # 6 steps at a high rate on 3 rows: the student must learn something


def test_train_refuses_when_no_logprobs_line_up(tiny_run, tiny_model_dir, tmp_path):
    import shutil

    from stages.train import app

    generated = tmp_path / "generated"
    shutil.copytree(tiny_run / "generated", generated)
    rows = [json.loads(line) for line in (generated / "logprobs.jsonl").read_text().splitlines()]
    for row in rows:
        row["tokens"][0]["token"] = "@@"  # as if another tokenizer had produced them
    write_split(generated / "logprobs.jsonl", rows)
    result = CliRunner().invoke(app, [
        "--params", str(tiny_params(tiny_run)), "--student", str(tiny_model_dir),
        "--curated", str(tiny_run / "curated"), "--generated", str(generated),
        "--out", str(tmp_path / "adapter"), "--live", str(tmp_path / "live")])
    assert result.exit_code == 2
    assert "line up with the student's tokenizer" in result.output
    assert not (tmp_path / "adapter").exists()


def test_tiny_model_shares_the_shipped_vocabulary(tokenizer, tiny_model_dir):
    from potstill.models import load_checked

    model = load_checked(tiny_model_dir)
    assert model.config.vocab_size == len(tokenizer) == 49152
    with torch.no_grad():
        assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 49152)


def kill_at_first_checkpoint(cmd: list[str], folder, pattern: str, timeout_s: float = 240) -> None:
    """Start the train command, SIGKILL it shortly after its first checkpoint matching `pattern` is complete."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while not list(folder.glob(pattern)):
        assert proc.poll() is None, "train finished before it could be killed"
        assert time.monotonic() < deadline, f"no checkpoint {pattern} appeared"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_train_killed_mid_run_resumes_and_ends_where_an_uninterrupted_run_would(
        tiny_run, tiny_model_dir, tmp_path, state_dir):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    params = tiny_params(tmp_path, max_steps=150, save_steps=10, learning_rate=1e-3, logging_steps=50)
    cmd = [sys.executable, str(root / "stages/train.py"), "--params", str(params),
           "--student", str(tiny_model_dir), "--curated", str(tiny_run / "curated"),
           "--generated", str(tiny_run / "generated"), "--soft-targets", str(tmp_path / "none"),
           "--out", str(tmp_path / "adapter"), "--live", str(tmp_path / "live")]
    kill_at_first_checkpoint(cmd, state_dir / "checkpoints", "*/checkpoint-*/trainer_state.json")
    assert not (tmp_path / "adapter").exists()  # a killed run leaves no output to mistake for one

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "train: resuming from" in rerun.stdout
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["final/global_step"] == 150
    assert 10 <= metrics["final/resumed_from_step"] < 150
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert not list((state_dir / "checkpoints").glob("*/checkpoint-*"))  # cleaned up after success


@pytest.fixture(scope="module")
def local_teacher(tmp_path_factory, tokenizer, tiny_run):
    """A 4-layer tiny teacher, a student pruned from it (layers 0 and 2) and its local soft targets."""
    import copy

    from potstill.distill.score import score_rows
    from potstill.distill.soft_targets import save_soft_targets, tokenizer_fingerprint
    from potstill.io import read_jsonl
    from potstill.models import LAYER_MAP_FILE, prune_layers, save_model, tiny_llama

    root = tmp_path_factory.mktemp("local_teacher")
    teacher = tiny_llama(tokenizer, layers=4)
    save_model(teacher, tokenizer, root / "teacher")
    student = copy.deepcopy(teacher)
    layer_map = prune_layers(student, [0, 2])
    save_model(student, tokenizer, root / "student", {LAYER_MAP_FILE: {str(s): t for s, t in layer_map.items()}})
    rows = [row for split in ("train", "val") for _, row in read_jsonl(tiny_run / "curated" / f"{split}.jsonl")]
    save_soft_targets(root / "soft-targets", score_rows(teacher.eval(), tokenizer, rows, 4, 64, 4, progress=False),
                      {"source": "local", "k": 4, "logprob_temperature": 1.0,
                       "tokenizer": tokenizer_fingerprint(tokenizer), "vocab_size": len(tokenizer)})
    return root


def local_args(tiny_run, local_teacher, params, out):
    return ["--params", str(params), "--student", str(local_teacher / "student"),
            "--teacher", str(local_teacher / "teacher"), "--curated", str(tiny_run / "curated"),
            "--generated", str(tiny_run / "generated"), "--soft-targets", str(local_teacher / "soft-targets"),
            "--out", str(out / "adapter"), "--live", str(out / "live")]


def local_params(root, **kd):
    import yaml

    path = tiny_params(root)
    params = yaml.safe_load(path.read_text())
    params["kd"].update({"source": "local", "top_k": 4, **kd})
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_hidden_state_matching_trains_and_logs_its_own_term(tiny_run, local_teacher, tmp_path, kind):
    from stages.train import app

    params = local_params(tmp_path, hidden_weight=1.0, hidden_loss=kind)
    result = CliRunner().invoke(app, local_args(tiny_run, local_teacher, params, tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["hidden_loss"] > 0 and math.isfinite(metrics["eval"]["hidden_loss"])
    assert math.isfinite(metrics["kd_loss"]) and math.isfinite(metrics["ce_loss"])


def test_hidden_state_matching_needs_the_teacher_and_a_layer_map(tiny_run, local_teacher, tiny_model_dir, tmp_path):
    from stages.train import app

    params = local_params(tmp_path, hidden_weight=1.0)
    args = local_args(tiny_run, local_teacher, params, tmp_path)
    missing_teacher = CliRunner().invoke(app, [*args, "--teacher", str(tmp_path / "nowhere")])
    assert missing_teacher.exit_code == 2 and "kd.hidden_weight" in missing_teacher.output
    no_map = CliRunner().invoke(app, [*args, "--student", str(tiny_model_dir)])
    assert no_map.exit_code == 2 and "potstill_layer_map.json" in no_map.output
    assert not (tmp_path / "adapter").exists()


def test_a_teacher_not_clearly_larger_than_the_student_is_flagged(tiny_run, local_teacher, tmp_path):
    from potstill.distill.trainer import compatibility_warnings
    from stages.train import app

    assert compatibility_warnings(135_000_000, 64_000_000) == []
    # The tiny teacher is mostly its 49,152-token embedding: pruning 2 of 4 layers barely shrinks it.
    result = CliRunner().invoke(app, local_args(tiny_run, local_teacher, local_params(tmp_path), tmp_path))
    assert result.exit_code == 0, result.output
    assert "this is fine-tuning, not distillation" in result.stderr
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert len(metrics["warnings"]) == 1 and "fine-tuning, not distillation" in metrics["warnings"][0]
    assert "hidden_loss" not in metrics  # off by default


def test_the_chunked_loss_reads_the_models_own_final_hidden_states(tokenizer):
    from peft import LoraConfig, get_peft_model

    from potstill.distill.trainer import chunkable_head
    from potstill.models import tiny_llama

    model = get_peft_model(tiny_llama(tokenizer), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                             task_type="CAUSAL_LM"))
    head = chunkable_head(model)
    assert head is model.get_base_model().lm_head
    ids = torch.randint(0, 1000, (2, 7))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        lean = model(input_ids=ids, logits_to_keep=torch.zeros_like(ids, dtype=torch.bool), output_hidden_states=True)
    assert lean.logits.numel() == 0  # no full-vocabulary logits at all
    assert torch.allclose(lean.hidden_states[-1] @ head.weight.T, full, atol=1e-5)  # after the final norm
    # LoRA on the head itself: its weight alone is not the head any more, so the full logits are used.
    assert chunkable_head(get_peft_model(tiny_llama(tokenizer), LoraConfig(r=4, target_modules=["lm_head"]))) is None


def test_a_student_of_another_width_learns_projections_that_a_resume_restores(
        tokenizer, tiny_run, local_teacher, tmp_path):
    from transformers import TrainingArguments

    from potstill.distill.data import DistillCollator, build_dataset
    from potstill.distill.trainer import PROJECTION_FILE, PROJECTION_MODULE, DistillTrainer
    from potstill.models import load_checked, tiny_llama

    teacher = load_checked(local_teacher / "teacher")  # 4 layers, 64 wide
    data = build_dataset(tokenizer, {"train": tiny_run / "curated" / "train.jsonl"}, {}, 1, 64)["train"]

    def fit(student, resume=None):
        args = TrainingArguments(output_dir=str(tmp_path), max_steps=8, learning_rate=1e-2,
                                 lr_scheduler_type="constant", per_device_train_batch_size=3, save_steps=4,
                                 logging_steps=1, report_to=[],
                                 remove_unused_columns=False, use_cpu=True, seed=0, data_seed=0,
                                 dataloader_num_workers=0)
        trainer = DistillTrainer(student, args, train_dataset=data,
                                 data_collator=DistillCollator(tokenizer.pad_token_id, 1), kd_alpha=0.0,
                                 kd_temperature=1.0, capture_temperature=1.0, kd_tail="bucket", teacher=teacher,
                                 layer_map={0: 1, 1: 3}, hidden_weight=1.0, hidden_loss="cosine")
        initial = {key: value.clone() for key, value in getattr(student, PROJECTION_MODULE).state_dict().items()}
        trainer.train(resume_from_checkpoint=resume)
        return trainer, initial, getattr(student, PROJECTION_MODULE).state_dict()

    trainer, initial, trained = fit(tiny_llama(tokenizer, layers=2, hidden=32, seed=1))
    assert trained["0.weight"].shape == (64, 32)
    hidden = [entry["hidden_loss"] for entry in trainer.state.log_history if "hidden_loss" in entry]
    assert len(hidden) == 8 and hidden[-1] < hidden[0]
    assert all(not torch.equal(initial[key], trained[key]) for key in trained)
    assert (tmp_path / "checkpoint-4" / PROJECTION_FILE).is_file()
    # A fresh process's student (other random projections) resumed at step 4 ends where the run did.
    _, _, resumed = fit(tiny_llama(tokenizer, layers=2, hidden=32, seed=1), resume=str(tmp_path / "checkpoint-4"))
    for key, value in trained.items():
        assert torch.allclose(resumed[key], value, atol=1e-5)


def test_a_student_of_another_width_trains_with_a_layer_map_from_params(tokenizer, tiny_run, local_teacher, tmp_path):
    from safetensors import safe_open

    from potstill.models import save_model, tiny_llama
    from stages.train import app

    narrow = tmp_path / "narrow"
    save_model(tiny_llama(tokenizer, layers=2, hidden=32, seed=1), tokenizer, narrow)  # no layer map beside it
    params = local_params(tmp_path, hidden_weight=1.0, hidden_layer_map={0: 1, 1: 3})
    result = CliRunner().invoke(app, [*local_args(tiny_run, local_teacher, params, tmp_path), "--student", str(narrow)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["hidden_loss"] > 0 and math.isfinite(metrics["kd_loss"])
    with safe_open(tmp_path / "adapter" / "adapter_model.safetensors", "pt") as adapter:
        assert not [key for key in adapter.keys() if "projection" in key]  # the student does not keep them
    bad = local_params(tmp_path, hidden_weight=1.0, hidden_layer_map={0: 1, 5: 3})
    refused = CliRunner().invoke(app, [*local_args(tiny_run, local_teacher, bad, tmp_path), "--student", str(narrow)])
    assert refused.exit_code == 2 and "kd.hidden_layer_map" in refused.output


def test_select_best_keeps_the_checkpoint_with_the_lowest_validation_loss(tiny_run, tiny_model_dir, tmp_path):
    """A rate high enough to overshoot: the kept adapter is the best validation checkpoint, not the last."""
    from stages.train import app

    params = tiny_params(tmp_path, select_best=True, save_steps=2, learning_rate=0.3)
    result = CliRunner().invoke(app, [
        "--params", str(params), "--student", str(tiny_model_dir), "--curated", str(tiny_run / "curated"),
        "--generated", str(tiny_run / "generated"), "--soft-targets", str(tiny_run / "none"),
        "--out", str(tmp_path / "adapter"), "--live", str(tmp_path / "live")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    curve = [line.split("\t") for line in (tmp_path / "live/plots/metrics/eval/loss.tsv").read_text().splitlines()[1:]]
    losses = {int(step): float(value) for step, value in curve}
    assert sorted(losses) == [2, 4, 6]  # evaluated at every checkpoint
    best_step = min(losses, key=losses.get)
    assert metrics["final/selected_step"] == best_step
    assert metrics["final/eval_loss"] == pytest.approx(losses[best_step], rel=1e-4)


def test_full_fine_tuning_writes_whole_weights_that_merge_passes_through(tiny_run, tiny_model_dir, tmp_path):
    """train.method full (the default): every weight trains, the output is a whole model, merge re-saves it."""
    import torch

    from potstill.models import load_checked
    from stages.merge import run_merge
    from stages.train import app

    params = tiny_params(tmp_path, method="full", learning_rate=1e-3)
    result = CliRunner().invoke(app, [
        "--params", str(params), "--student", str(tiny_model_dir), "--curated", str(tiny_run / "curated"),
        "--generated", str(tiny_run / "generated"), "--soft-targets", str(tiny_run / "none"),
        "--out", str(tmp_path / "adapter"), "--live", str(tmp_path / "live")])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "adapter" / "adapter_config.json").exists()
    trained, base = load_checked(tmp_path / "adapter"), load_checked(tiny_model_dir)
    changed = [name for name, weight in trained.state_dict().items()
               if not torch.equal(weight, base.state_dict()[name])]
    assert any("mlp" in name for name in changed) and any("norm" in name for name in changed)  # not adapters only
    assert run_merge(tiny_model_dir, tmp_path / "adapter", tmp_path / "merged")["method"] == "full"
    merged = load_checked(tmp_path / "merged")
    assert all(torch.equal(weight, trained.state_dict()[name]) for name, weight in merged.state_dict().items())


def test_grad_accumulation_gives_the_gradients_of_one_big_batch_and_logs_what_is_minimised(tokenizer, tmp_path):
    """grad_accum 2 x batch 4 and grad_accum 1 x batch 8 take the same SGD step on the same 8 rows of unequal
    lengths; the logged loss is alpha x kd_loss + (1 - alpha) x ce_loss, on both the chunked and the full path."""
    from transformers import TrainingArguments

    from potstill.distill.data import DistillCollator, build_dataset
    from potstill.distill.score import score_rows
    from potstill.distill.trainer import DistillTrainer
    from potstill.models import tiny_llama

    replies = ["Yes.", "The sky is blue because air scatters blue light more than red light.", "Four.",
               "Paris is the capital of France, on the Seine.", "No, never.", "Water boils at 100 C at sea level.",
               "Seven.", "A cat is a small domesticated carnivorous mammal with soft fur."]
    rows = [{"id": f"r{i}", "domain": "d", "messages": [{"role": "user", "content": f"Question {i}?"},
                                                        {"role": "assistant", "content": reply}]}
            for i, reply in enumerate(replies)]
    write_split(tmp_path / "train.jsonl", rows)
    targets = score_rows(tiny_llama(tokenizer, seed=3).eval(), tokenizer, rows, 4, 64, 8, progress=False)
    soft = {key: {"kd_ids": ids.tolist(), "kd_logprobs": lps.tolist()} for key, (ids, lps) in targets.items()}
    data = build_dataset(tokenizer, {"train": tmp_path / "train.jsonl"}, soft, 4, 64)["train"]

    def one_step(batch_size: int, grad_accum: int, chunk_rows: int) -> tuple[dict, dict]:
        model = tiny_llama(tokenizer, seed=0)
        args = TrainingArguments(output_dir=str(tmp_path / f"{batch_size}x{grad_accum}"), max_steps=1,
                                 learning_rate=0.5, optim="sgd", lr_scheduler_type="constant", max_grad_norm=1e9,
                                 per_device_train_batch_size=batch_size, gradient_accumulation_steps=grad_accum,
                                 logging_steps=1, report_to=[], remove_unused_columns=False, use_cpu=True,
                                 seed=0, data_seed=0, dataloader_num_workers=0, save_strategy="no")
        collator = DistillCollator(tokenizer.pad_token_id, 4)
        trainer = DistillTrainer(model, args, train_dataset=data, data_collator=collator,
                                 kd_alpha=0.9, kd_temperature=1.0, capture_temperature=1.0, kd_tail="bucket",
                                 kd_chunk_rows=chunk_rows)
        trainer.train()
        return {key: value.detach().clone() for key, value in model.state_dict().items()}, trainer.state.log_history[0]

    big, big_log = one_step(8, 1, chunk_rows=1024)
    accumulated, accumulated_log = one_step(4, 2, chunk_rows=16)
    start = tiny_llama(tokenizer, seed=0).state_dict()
    moved = max(float((big[key] - start[key]).abs().max()) for key in big)
    assert moved > 1e-3  # the step did something
    for key in big:
        assert torch.allclose(big[key], accumulated[key], atol=1e-6, rtol=1e-4), key
    for log in (big_log, accumulated_log):
        assert log["loss"] == pytest.approx(0.9 * log["kd_loss"] + 0.1 * log["ce_loss"], rel=1e-5)
    assert accumulated_log["loss"] == pytest.approx(big_log["loss"], rel=1e-5)
    assert accumulated_log["grad_norm"] == pytest.approx(big_log["grad_norm"], rel=1e-4)


def onpolicy_params(root, offpolicy_steps: int = 2, **onpolicy):
    import yaml

    path = local_params(root)
    params = yaml.safe_load(path.read_text())
    params["train"].update({"max_steps": offpolicy_steps, "save_steps": 2})
    params["onpolicy"].update({"steps": 6, "lmbda": 0.5, "resample_every": 2, "max_new_tokens": 8,
                               "rollout_batch_size": 4, "top_k": 4, "learning_rate": 1e-3, **onpolicy})
    path.write_text(yaml.safe_dump(params))
    return path


def rollout_steps(path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("offpolicy", [2, 0])  # 0: on-policy only, from the student as given
def test_the_onpolicy_phase_trains_on_the_students_rollouts_and_writes_them(tiny_run, local_teacher, tmp_path,
                                                                            offpolicy):
    from potstill.distill.onpolicy import step_is_onpolicy
    from stages.train import app

    expected = [step for step in range(6) for _ in range(2) if step_is_onpolicy(0, step, 0.5)]  # 2 rows a step
    assert 0 < len(expected) < 12  # both kinds of step occur with this seed
    params = onpolicy_params(tmp_path, offpolicy)
    rollouts = tmp_path / "rollouts.jsonl"
    result = CliRunner().invoke(app, [*local_args(tiny_run, local_teacher, params, tmp_path),
                                      "--rollouts", str(rollouts)])
    assert result.exit_code == 0, result.output
    assert rollout_steps(rollouts) == expected
    for row in map(json.loads, rollouts.read_text().splitlines()):
        assert row["prompt"].startswith("Question") and len(row["tokens"]) == len(row["teacher_logprobs"]) >= 1
        assert all(lp <= 0 for lp in row["teacher_logprobs"])
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["final/global_step"] == offpolicy and metrics["final/onpolicy_steps"] == 6
    assert metrics["final/rollouts"] == len(expected)
    assert metrics["final/tokens_student_sampled"] == sum(len(row["tokens"]) for row in map(
        json.loads, rollouts.read_text().splitlines()))
    curve = (tmp_path / "live" / "plots" / "metrics" / "onpolicy_loss.tsv").read_text().splitlines()[1:]
    # Logged after the off-policy steps, at the on-policy steps (offset by train.max_steps).
    assert [int(line.split("\t")[0]) for line in curve] == sorted({offpolicy + step + 1 for step in expected})
    assert all(math.isfinite(float(line.split("\t")[-1])) for line in curve)


def test_the_onpolicy_phase_refuses_a_teacher_without_weights_or_with_an_api_that_cannot_score(
        tiny_run, local_teacher, tmp_path):
    import yaml

    from stages.train import app
    from tests.fake_endpoint import FakeOpenAI

    params = onpolicy_params(tmp_path)
    args = local_args(tiny_run, local_teacher, params, tmp_path)
    args[args.index("--teacher") + 1] = str(tmp_path / "no-teacher")
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "onpolicy.scorer local" in result.output
    with FakeOpenAI(prompt_logprobs=False) as server:
        raw = yaml.safe_load(params.read_text())
        raw["teacher"]["base_url"], raw["onpolicy"]["scorer"] = server.base_url, "api"
        params.write_text(yaml.safe_dump(raw))
        result = CliRunner().invoke(app, local_args(tiny_run, local_teacher, params, tmp_path))
    assert result.exit_code != 0 and "llama.cpp" in result.output
    assert not (tmp_path / "live").exists()  # refused before any training


def test_train_killed_in_the_onpolicy_phase_resumes_there_and_ends_at_the_same_step(
        tiny_run, local_teacher, tmp_path, state_dir):
    import subprocess
    import sys
    from pathlib import Path

    from potstill.distill.onpolicy import step_is_onpolicy

    root = Path(__file__).resolve().parents[1]
    params = onpolicy_params(tmp_path, steps=60, resample_every=2)
    rollouts = tmp_path / "rollouts.jsonl"
    cmd = [sys.executable, str(root / "stages/train.py"),
           *local_args(tiny_run, local_teacher, params, tmp_path), "--rollouts", str(rollouts)]
    kill_at_first_checkpoint(cmd, state_dir / "checkpoints", "*/onpolicy/checkpoint-*/trainer_state.json")
    assert not rollouts.exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming the on-policy phase" in rerun.stdout
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["final/onpolicy_steps"] == 60 and metrics["final/global_step"] == 2
    assert 2 <= metrics["final/onpolicy_resumed_from_step"] < 60
    # Every on-policy step's rollouts once: none lost with the kill, none doubled by the resume.
    assert rollout_steps(rollouts) == [step for step in range(60) for _ in range(2) if step_is_onpolicy(0, step, 0.5)]
    assert not list((state_dir / "checkpoints").glob("*/onpolicy"))
