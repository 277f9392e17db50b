"""Evaluation helpers: task folders checked up front, real lm-eval on a tiny model, score cache."""

import json
from pathlib import Path

import pytest

from potstill.evaluate import ScoreCache, heldout_nll, lm_eval_scores
from potstill.io import InputError
from potstill.models import load_checked
from potstill.tasks import task_manager


def test_missing_folder_and_unknown_task_name_the_param(tmp_path):
    with pytest.raises(InputError, match=r"evaluate.task_dir: .* is not a folder of lm-eval task YAMLs"):
        task_manager(tmp_path / "nowhere", ["potstill_mc"])
    with pytest.raises(InputError, match=r"evaluate.tasks: \['nope'\] not defined in data/eval_tasks"):
        task_manager("data/eval_tasks", ["potstill_mc", "nope"])


def test_lm_eval_and_heldout_nll_on_a_tiny_model(tiny_model_dir, tokenizer, tmp_path):
    model = load_checked(tiny_model_dir)
    manager = task_manager("data/eval_tasks", ["potstill_mc", "potstill_gen"])
    scores = lm_eval_scores(model, tokenizer, ["potstill_mc", "potstill_gen"], manager, limit=3, batch_size=3)
    assert 0 <= scores["potstill_mc"]["acc"] <= 1 and "acc_stderr" in scores["potstill_mc"]
    assert 0 <= scores["potstill_gen"]["exact_match"] <= 1
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "Hi"},
                                                        {"role": "assistant", "content": "Hello!"}]}) + "\n")
    nll = heldout_nll(model, tokenizer, test)
    assert 5 < nll < 20  # a random 49k-vocab model sits near ln(49152) = 10.8
    test.write_text("")
    with pytest.raises(InputError, match="no held-out responses"):
        heldout_nll(model, tokenizer, test)


def test_score_cache_is_keyed_by_model_bytes_and_settings(tiny_model_dir, tmp_path):
    test = tmp_path / "test.jsonl"
    test.write_text("{}\n")
    cache = ScoreCache({"tasks": ["t"], "limit": 3}, Path("data/eval_tasks"), test)
    assert cache.get(tiny_model_dir) is None
    cache.put(tiny_model_dir, {"t": {"acc": 0.5}})
    assert cache.get(tiny_model_dir) == {"t": {"acc": 0.5}}
    other = ScoreCache({"tasks": ["t"], "limit": 4}, Path("data/eval_tasks"), test)
    assert other.get(tiny_model_dir) is None
