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


def test_score_then_train_with_local_soft_targets(tokenizer, tiny_model_dir, tmp_path):
    import yaml

    from stages.score import app as score_app
    from stages.train import app as train_app

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
                                            str(tiny_model_dir), "--curated", str(curated),
                                            "--out", str(tmp_path / "st")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "st" / "manifest.json").read_text())["k"] == 8
    result = CliRunner().invoke(train_app, [
        "--params", str(tmp_path / "params.yaml"), "--student", str(tiny_model_dir), "--curated", str(curated),
        "--generated", str(tmp_path / "unused"), "--soft-targets", str(tmp_path / "st"),
        "--out", str(tmp_path / "adapter"), "--live", str(tmp_path / "live")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    # Teacher == student here: the KD term starts at (almost) zero, the CE term does not.
    assert metrics["kd_loss"] < 0.05 < metrics["ce_loss"]
