"""Evaluation helpers: task folders checked up front, real lm-eval on a tiny model, score cache."""

import json
import math
from pathlib import Path

import pytest

from potstill.errors import InputError
from potstill.evaluation.lm_eval import heldout_nll, lm_eval_scores
from potstill.evaluation.score_cache import ScoreCache
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


def test_a_user_task_folder_anywhere_on_disk_gives_scores_items_and_ece(tiny_model_dir, tokenizer, tmp_path):
    """evaluate.task_dir: an absolute folder outside the repo with one multiple-choice task (YAML + JSONL)."""
    from lm_eval.models.huggingface import HFLM

    from potstill.evaluation.lm_eval import lm_eval_results

    tasks = tmp_path / "my_tasks"
    tasks.mkdir()
    rows = [{"q": "The sky is", "choices": ["blue", "loud"], "label": 0},
            {"q": "Fire is", "choices": ["cold", "hot"], "label": 1},
            {"q": "Ice is", "choices": ["cold", "hot"], "label": 0}]
    (tasks / "mine.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tasks / "mine.yaml").write_text(
        "task: my_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tasks / 'mine.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: '{{q}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: label\n"
        "metric_list:\n  - metric: acc\nmetadata:\n  version: 1.0\n")
    manager = task_manager(str(tasks), ["my_mc"])
    lm = HFLM(pretrained=load_checked(tiny_model_dir), tokenizer=tokenizer, batch_size=3, device="cpu")
    scores, items, calibration = lm_eval_results(lm, ["my_mc"], manager, limit=None)
    assert len(items["my_mc"]["acc"]) == 3 and scores["my_mc"]["acc"] == sum(items["my_mc"]["acc"]) / 3
    assert 0 <= calibration["ece"] <= 1


def test_ece_and_mc_confidences_on_known_values():
    from potstill.evaluation.metrics import expected_calibration_error, mc_confidences

    # Confident and right, confident and wrong: |1 - 0.9| and |0 - 0.9| in one bin -> |0.5 - 0.9| = 0.4.
    assert abs(expected_calibration_error([0.9, 0.9], [True, False]) - 0.4) < 1e-9
    assert expected_calibration_error([0.55, 0.95], [True, True]) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    samples = [{"filtered_resps": [(-1.0, False), (-3.0, False)], "target": "0"},
               {"filtered_resps": [(-2.0, False), (-2.0, False), (-0.5, False)], "target": 0}]
    confidences, correct = mc_confidences(samples)
    assert correct == [True, False] and confidences[0] == pytest.approx(1 / (1 + math.exp(-2)))


def test_distill_metrics_against_the_teacher_itself_and_a_student(tiny_model_dir, tokenizer, tmp_path):
    from potstill.evaluation.metrics import distill_metrics, heldout_rows, hf_logits_fn, teacher_logprobs
    from potstill.models import tiny_llama

    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "Hi"},
                                                        {"role": "assistant", "content": "Hello there!"}]}) + "\n")
    rows = heldout_rows(tokenizer, test)
    teacher = hf_logits_fn(load_checked(tiny_model_dir))
    teacher_lp = teacher_logprobs(teacher, rows)
    itself = distill_metrics(teacher, rows, teacher_lp)
    assert abs(itself["kl_vs_teacher"]) < 1e-5 and itself["top1_vs_teacher"] == 1.0
    assert itself["heldout_nll"] == pytest.approx(heldout_nll(load_checked(tiny_model_dir), tokenizer, test), rel=1e-5)
    other = distill_metrics(hf_logits_fn(tiny_llama(tokenizer, seed=7).eval()), rows, teacher_lp)
    assert other["kl_vs_teacher"] > 0.001 and len(other["argmax"][0]) == len(itself["argmax"][0])


def test_with_train_method_full_the_adapter_folder_holds_whole_weights_and_loads_as_such(tiny_model_dir):
    """train.method full writes a whole model to models/adapter: the merge gate loads it as a model, not peft."""
    from potstill.evaluation.run import load_model

    loaded = load_model("adapter", tiny_model_dir, base=tiny_model_dir)
    assert loaded.parameters is not None and not hasattr(loaded.model, "peft_config")
    assert loaded.model.num_parameters() == load_checked(tiny_model_dir).num_parameters()
