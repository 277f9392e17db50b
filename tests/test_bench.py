"""Benchmarks keep to the rules of honest numbers: choices on val, test left to evaluate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import typer

ROOT = Path(__file__).resolve().parents[1]


def test_the_distillation_grid_chooses_on_val_and_never_opens_the_test_split(tmp_path, monkeypatch, tokenizer,
                                                                              tiny_model_dir):
    import shutil

    sys.path.insert(0, str(ROOT / "bench"))
    import distill_grid

    assert "test.jsonl" not in (ROOT / "bench/distill_grid.py").read_text()
    # A project with a teacher and a val split but no test split: setup() must not need one.
    shutil.copytree(tiny_model_dir, tmp_path / "models/teacher")
    (tmp_path / "data/curated").mkdir(parents=True)
    row = {"id": "v0", "messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
    (tmp_path / "data/curated/val.jsonl").write_text(json.dumps(row) + "\n")
    monkeypatch.setattr(distill_grid, "ROOT", tmp_path)
    monkeypatch.setattr(distill_grid, "SELECTION_SPLIT", tmp_path / "data/curated/val.jsonl")
    tokenizer, teacher, rows = distill_grid.setup()
    references = distill_grid.val_references(tokenizer, teacher)
    prompts, scored, _, teacher_lp, teacher_answers = references
    assert [r["id"] for r in rows] == ["v0"] and len(prompts) == len(scored) == len(teacher_lp) == 1
    # Every arm is measured with 95% intervals over the validation prompts; the teacher against itself: KL 0.
    figures = distill_grid.quality(teacher, tokenizer, references)
    assert abs(figures["kl"]) < 1e-5 and figures["top1"] == 1.0
    # Apart by origin (shipped vs synthesized prompts): here one shipped prompt, the same figures.
    assert set(figures["by_origin"]) == {"shipped"} and figures["by_origin"]["shipped"]["prompts"] == 1
    assert figures["by_origin"]["shipped"]["kl"] == pytest.approx(figures["kl"], abs=1e-9)
    assert {"kl_vs_teacher", "heldout_nll", "top1_vs_teacher", "degenerate_share"} <= set(figures["ci95"])
    assert not (tmp_path / "data/curated/test.jsonl").exists()
    assert distill_grid.SELECTION_SPLIT.name == "val.jsonl"


def test_the_data_size_arm_trains_on_the_default_runs_rows_alone_and_keeps_val(tmp_path, monkeypatch):
    """"shipped:N" keeps the training rows of the N prompts a default run asks, by id; val is untouched."""
    sys.path.insert(0, str(ROOT / "bench"))
    import distill_grid

    (tmp_path / "data/curated").mkdir(parents=True)
    prompts = [{"id": f"{domain}-{i}", "prompt": f"{domain} question {i}?", "domain": domain}
               for domain in ("a", "b") for i in range(3)]
    (tmp_path / "data/prompts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in prompts))
    train = [{"id": row["id"], "messages": []} for row in prompts] + [{"id": "synth-1", "messages": []}]
    (tmp_path / "data/curated/train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in train))
    (tmp_path / "data/curated/val.jsonl").write_text(json.dumps({"id": "a-9", "messages": []}) + "\n")
    monkeypatch.setattr(distill_grid, "ROOT", tmp_path)

    assert distill_grid.training_split("all", tmp_path / "arm") == tmp_path / "data/curated"
    subset = distill_grid.training_split("shipped:4", tmp_path / "arm")
    kept = [json.loads(line)["id"] for line in (subset / "train.jsonl").read_text().splitlines()]
    assert kept == ["a-0", "a-1", "b-0", "b-1"]  # round-robin over domains, as generate.n_examples 4 asks
    assert (subset / "val.jsonl").read_bytes() == (tmp_path / "data/curated/val.jsonl").read_bytes()
    with pytest.raises(typer.BadParameter, match="shipped:N"):
        distill_grid.training_split("first:4", tmp_path / "arm")


def test_val_figures_come_apart_for_shipped_and_synthesized_prompts():
    sys.path.insert(0, str(ROOT / "bench"))
    import distill_grid

    record = {"rows": {"kl": [2.0, 9.0, 3.0], "tokens": [2, 3, 1]},
              "onpolicy_rows": {"kl": [1.0, 6.0, 2.0], "tokens": [1, 2, 2]},
              "answers": [{"degenerate": False}, {"degenerate": True}, {"degenerate": True}]}
    figures = distill_grid.origin_figures(record, ["coding-001", "synth-ab", "facts-002"])
    assert figures["shipped"]["prompts"] == 2 and figures["synthesized"]["prompts"] == 1
    assert figures["shipped"]["kl"] == pytest.approx(5 / 3) and figures["synthesized"]["kl"] == pytest.approx(3.0)
    assert figures["shipped"]["onpolicy_kl"] == pytest.approx(1.0) and figures["shipped"]["degenerate"] == 0.5
    assert figures["synthesized"]["ci95"]["degenerate"] == [1.0, 1.0]
    assert distill_grid.origin_figures(record, ["coding-001"]) == {}  # ids that do not line up: no breakdown


def test_two_runs_compare_on_their_shared_test_prompts_only_and_paired():
    sys.path.insert(0, str(ROOT / "bench"))
    import compare_runs

    def record(kl, onpolicy, loops, lengths, mc):
        answers = [{"degenerate": d, "tokens": n, "prompt": f"q{i}", "answer": f"answer {kl[i]}"}
                   for i, (d, n) in enumerate(zip(loops, lengths, strict=True))]
        return {"rows": {"kl": kl, "tokens": [1] * len(kl)}, "onpolicy_rows": {"kl": onpolicy, "tokens": [1] * len(kl)},
                "answers": answers, "items": {"potstill_mc": {"acc": mc}}}

    teacher = {"answers": [{"degenerate": False, "tokens": 10, "prompt": f"q{i}", "answer": "t"} for i in range(3)]}
    # A's test: s1, s2, x; B's test: y, s2, s1. Only s1 and s2 are shared; x and y must not count.
    a = {"teacher": teacher, "merged": record([2.0, 4.0, 100.0], [2.0, 2.0, 100.0], [True, False, True],
                                              [10, 10, 99], [0.0, 0.0, 1.0, 1.0])}
    b = {"teacher": teacher, "merged": record([100.0, 1.0, 3.0], [100.0, 1.0, 1.0], [True, False, False],
                                              [99, 5, 5], [1.0, 1.0, 1.0, 1.0])}
    result = compare_runs.compare(a, b, ["s1", "s2", "x"], ["y", "s2", "s1"])
    assert result["shared_prompts"] == 2
    assert result["a"]["kl"] == pytest.approx(3.0) and result["b"]["kl"] == pytest.approx(2.0)
    assert result["a"]["degenerate"] == 0.5 and result["b"]["degenerate"] == 0.0
    assert result["b"]["length_vs_teacher"] == pytest.approx(0.5)
    assert result["onpolicy_kl_b_over_a"] == pytest.approx(0.5)
    low, high = result["onpolicy_kl_b_over_a_ci95"]
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)   # every prompt halves: no spread
    assert result["potstill_mc"]["gain"] == pytest.approx(0.5) and result["potstill_mc"]["n"] == 4
    # Side by side, each run's answer to the same prompt: s1 is A's first row and B's last.
    assert result["answers"][0] == {"id": "s1", "prompt": "q0", "teacher": "t", "a": "answer 2.0", "b": "answer 3.0"}
    with pytest.raises(ValueError, match="share no test prompt"):
        compare_runs.compare(a, b, ["s1", "s2", "x"], ["p", "q", "r"])


def test_the_scale_bench_runs_ours_and_trls_trainers_on_the_same_tokens(tmp_path):
    """bench/gpu_scale.py at its micro shape: the teacher scores, then ours (stored top-k), TRL's SFT and GKD
    (teacher online) each train the same rows; each reports what it processed and its peak memory."""
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_scale

    score = gpu_scale.run_one("score", "micro", tmp_path)
    assert score["tokens"] > 0 and (tmp_path / "soft_targets.pt").is_file()
    runs = {variant: gpu_scale.run_one(variant, "micro", tmp_path) for variant in ("ours-lora", "trl-sft-full",
                                                                                 "trl-gkd-lora-gc")}
    timed = gpu_scale.SHAPES["micro"]["steps"] * gpu_scale.SHAPES["micro"]["batch_size"]
    tokens = {variant: run["tokens"] for variant, run in runs.items()}
    assert len(set(tokens.values())) == 1 and tokens["ours-lora"] >= timed * 30, tokens  # the same rows, ~48 tokens
    assert 0 < runs["ours-lora"]["labelled"] < runs["ours-lora"]["tokens"]  # ours learns on the answer only
    assert runs["ours-lora"]["trainable"] < runs["trl-sft-full"]["trainable"]  # LoRA vs every weight
    assert all(run["tokens_per_s"] > 0 and run["peak_gib"] > 0 for run in runs.values())


def test_the_test_split_meets_only_the_arm_chosen_on_val_and_only_once(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import report_chosen

    start = {"key": "start-x", "arm": "start", "onpolicy_kl": 0.1, "length_vs_teacher": 1.0}
    control = {"key": "kd", "onpolicy_steps": 100, "lmbda": 0.0, "onpolicy_kl": 0.2, "length_vs_teacher": 1.0}
    short = {"key": "short", "onpolicy_steps": 40, "lmbda": 1.0, "onpolicy_kl": 0.3, "length_vs_teacher": 0.69}
    arm = {"key": "arm", "onpolicy_steps": 40, "lmbda": 1.0, "onpolicy_kl": 0.9, "length_vs_teacher": 0.7}
    worse = {"key": "worse", "onpolicy_steps": 80, "lmbda": 0.5, "onpolicy_kl": 1.0, "length_vs_teacher": 1.2}
    # Not the start, not the KD control, not answers shorter than 70% of the teacher's: the lowest of the rest.
    assert report_chosen.choose([start, control, short, arm, worse])["key"] == "arm"
    assert report_chosen.choose([start, control, short]) is None

    def split(name, ids):
        (tmp_path / name).write_text("".join(json.dumps({"id": i, "messages": []}) + "\n" for i in ids))
        return tmp_path / name

    ours, theirs = split("ours.jsonl", ["a", "b", "c"]), split("theirs.jsonl", ["c", "x", "a"])
    assert [row["id"] for row in report_chosen.shared_rows(ours, theirs)] == ["a", "c"]   # ours, in our order
    with pytest.raises(SystemExit, match="share no id"):
        report_chosen.shared_rows(ours, split("other.jsonl", ["y"]))
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(SystemExit, match="reported once"):
        report_chosen.main(path=ours, reference=tmp_path, shared_with=theirs, out=tmp_path / "result.json")


def test_the_chosen_arm_is_measured_paired_on_the_shared_prompts(tokenizer, tiny_model_dir):
    sys.path.insert(0, str(ROOT / "bench"))
    import report_chosen

    from potstill.models import load_checked

    teacher = load_checked(tiny_model_dir)
    rows = [{"id": f"t{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for i, (q, a) in enumerate([("Hi?", "Hello."), ("Two plus two?", "Four.")])]
    references = report_chosen.teacher_references(teacher, tokenizer, rows)
    same = report_chosen.measure(teacher, tokenizer, references)
    # The teacher against itself: no divergence on its text or its own answers, its own length.
    assert abs(same["kl"]) < 1e-5 and abs(same["onpolicy_kl"]) < 1e-5 and same["length_vs_teacher"] == 1.0
    other = load_checked(tiny_model_dir)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    moved = report_chosen.measure(other, tokenizer, references)
    assert moved["kl"] > 1e-3 and len(moved["onpolicy_rows"]["kl"]) == 2
    ratio = report_chosen.paired(moved, moved)
    assert ratio["ratio"] == pytest.approx(1.0) and ratio["ci95"] == pytest.approx([1.0, 1.0])


def test_two_onpolicy_arms_compare_paired_over_the_same_val_prompts(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "bench"))
    import distill_grid

    def arm(key, kl):
        return {"key": key, "arm": key, "prompt_rows": {"onpolicy_kl": kl, "onpolicy_tokens": [2, 2, 2]}}

    path = tmp_path / "grid.jsonl"
    rows = [arm("kd", [2.0, 4.0, 6.0]), arm("op", [1.0, 2.0, 3.0]), {"key": "old", "arm": "old"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    distill_grid.paired_onpolicy(a="kd", b="op", path=path)
    assert "op / kd (paired over 3 val prompts): 0.500 [0.500, 0.500]" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no per-prompt rows for \\['old'\\]"):
        distill_grid.paired_onpolicy(a="kd", b="old", path=path)
