"""Local soft targets: exact teacher top-k on labelled tokens, stored compactly, tokenizer-checked."""

import json

import pytest
import torch
from typer.testing import CliRunner

from potstill.chat import tokenize_chat
from potstill.distill.score import score_rows
from potstill.distill.soft_targets import load_soft_targets, save_soft_targets, tokenizer_fingerprint
from potstill.errors import InputError
from potstill.models import load_checked

ROWS = [{"id": f"r{i}", "domain": "d", "messages": [
    {"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for i, (q, a) in enumerate([("Hi?", "Hello there."), ("Colour of grass?", "Grass is green, mostly."),
                                ("2+2?", "Four.")])]


def test_scores_match_the_teacher_forward_pass_row_by_row(tokenizer, tiny_model_dir):
    model = load_checked(tiny_model_dir)
    targets = score_rows(model, tokenizer, ROWS, k=5, max_seq_len=128, batch_size=2, progress=False)
    for row in ROWS:
        encoded = tokenize_chat(tokenizer, row["messages"], 128)
        n_labelled = len(encoded["input_ids"]) - encoded["response_start"]
        ids, lps = targets[row["id"]]
        assert ids.shape == lps.shape == (n_labelled, 5)
        with torch.no_grad():  # unbatched, unpadded: batching must not change the answer
            logits = model(torch.tensor([encoded["input_ids"]])).logits[0]
        start = encoded["response_start"]
        expected = torch.log_softmax(logits[start - 1:-1], -1).topk(5, -1)
        assert torch.equal(ids.long(), expected.indices)
        assert torch.allclose(lps, expected.values, atol=1e-4)
        assert (lps.exp().sum(-1) <= 1 + 1e-5).all()


def test_round_trip_and_tokenizer_check(tokenizer, tiny_model_dir, tmp_path):
    targets = score_rows(load_checked(tiny_model_dir), tokenizer, ROWS, 4, 128, 3, progress=False)
    manifest = {"source": "local", "k": 4, "logprob_temperature": 1.0,
                "tokenizer": tokenizer_fingerprint(tokenizer), "vocab_size": len(tokenizer)}
    save_soft_targets(tmp_path / "st", targets, manifest)
    loaded, _ = load_soft_targets(tmp_path / "st", tokenizer, k=3)
    assert loaded["r1"]["kd_ids"] == targets["r1"][0][:, :3].tolist()
    with pytest.raises(InputError, match="holds top-4 but kd.top_k is 8"):
        load_soft_targets(tmp_path / "st", tokenizer, k=8)
    other = {**manifest, "tokenizer": "0123456789abcdef"}
    (tmp_path / "st" / "manifest.json").write_text(json.dumps({**other, "tokens": 1}))
    with pytest.raises(InputError, match="made with another tokenizer"):
        load_soft_targets(tmp_path / "st", tokenizer, k=3)


def test_score_then_train_with_local_soft_targets(tokenizer, tmp_path):
    """Teacher == student, and a peaked one: the KD term starts at zero, and it would not if the soft targets
    were laid one position off (adjacent positions of this model disagree by nats)."""
    import yaml

    from potstill.models import save_model, tiny_llama
    from stages.score import app as score_app
    from stages.train import app as train_app

    peaked = tiny_llama(tokenizer, seed=5)
    with torch.no_grad():
        peaked.model.embed_tokens.weight.mul_(40)  # tied head: confident, position-specific predictions
    save_model(peaked, tokenizer, tmp_path / "peaked")
    encoded = tokenize_chat(tokenizer, ROWS[1]["messages"], 64)
    with torch.no_grad():
        logprobs = torch.log_softmax(peaked(torch.tensor([encoded["input_ids"]])).logits[0], -1)
    start = encoded["response_start"]
    here, next_one = logprobs[start - 1:-2], logprobs[start:-1]
    off_by_one = float((here.exp() * (here - next_one)).sum(-1).mean())
    assert off_by_one > 1.0  # the power of the check below

    curated = tmp_path / "curated"
    curated.mkdir()
    (curated / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:2]))
    (curated / "val.jsonl").write_text(json.dumps(ROWS[2]) + "\n")
    params = yaml.safe_load(open("params.yaml"))
    params["kd"].update({"source": "local", "top_k": 8})
    params["train"].update({"max_steps": 2, "batch_size": 2, "grad_accum": 1, "logging_steps": 1,
                            "warmup_steps": 0, "max_seq_len": 64})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(score_app, ["--params", str(tmp_path / "params.yaml"), "--teacher",
                                            str(tmp_path / "peaked"), "--curated", str(curated),
                                            "--out", str(tmp_path / "st")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "st" / "manifest.json").read_text())["k"] == 8
    result = CliRunner().invoke(train_app, [
        "--params", str(tmp_path / "params.yaml"), "--student", str(tmp_path / "peaked"), "--curated", str(curated),
        "--generated", str(tmp_path / "unused"), "--soft-targets", str(tmp_path / "st"),
        "--out", str(tmp_path / "adapter"), "--live", str(tmp_path / "live")])
    assert result.exit_code == 0, result.output
    first_kd = float((tmp_path / "live/plots/metrics/kd_loss.tsv").read_text().splitlines()[1].split("\t")[-1])
    first_ce = float((tmp_path / "live/plots/metrics/ce_loss.tsv").read_text().splitlines()[1].split("\t")[-1])
    # Step 1 is computed on the untouched student: equal to its teacher on the k + 1 classes.
    assert first_kd < 1e-3 < first_ce


def test_a_teacher_loaded_with_a_device_map_scores_as_the_teacher_on_one_device(tokenizer, tiny_model_dir,
                                                                                 monkeypatch):
    """hardware.teacher_device_map reaches transformers' loader (which places the layers over the GPUs; here the
    CPU is the only device, so nothing is split); the scores are those of the teacher loaded whole."""
    from transformers import AutoModelForCausalLM

    from potstill.models import load_teacher
    from tests.conftest import shipped

    asked, real = [], AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained",
                        lambda *args, **kwargs: asked.append(kwargs.get("device_map")) or real(*args, **kwargs))
    split = load_teacher(tiny_model_dir, shipped("hardware", teacher_device_map="auto"), torch.device("cpu"),
                         torch.float32)
    whole = load_teacher(tiny_model_dir, shipped("hardware"), torch.device("cpu"), torch.float32)
    assert asked == ["auto", None]
    ours, theirs = (score_rows(model, tokenizer, ROWS, k=5, max_seq_len=128, batch_size=2, progress=False)
                    for model in (split, whole))
    for row in ROWS:
        assert torch.equal(ours[row["id"]][0], theirs[row["id"]][0])
        assert torch.allclose(ours[row["id"]][1], theirs[row["id"]][1], atol=1e-6)
