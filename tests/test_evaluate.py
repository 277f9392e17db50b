"""Evaluation helpers: task folders checked up front, real lm-eval on a tiny model, score cache."""

import json
import math
from pathlib import Path

import pytest
import torch

from potstill.errors import InputError
from potstill.evaluation.lm_eval import heldout_nll, lm_eval_scores
from potstill.evaluation.score_cache import ScoreCache
from potstill.models import load_checked
from potstill.tasks import task_manager
from tests.conftest import ROOT, shipped


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
    # Independently: transformers' own causal-LM loss on the same tokens, prompt masked.
    from potstill.chat import tokenize_chat

    row = tokenize_chat(tokenizer, json.loads(test.read_text())["messages"], 512)
    with torch.no_grad():
        reference = model(torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]])).loss
    assert nll == pytest.approx(float(reference), rel=1e-5)
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
    scores, items, calibration, categories, outputs = lm_eval_results(lm, ["my_mc"], manager, limit=None)
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
    student = tiny_llama(tokenizer, seed=7).eval()
    other = distill_metrics(hf_logits_fn(student), rows, teacher_lp)
    # Independently: KL(teacher || student) with torch's kl_div over the whole vocabulary, assistant tokens only.
    ids, labels = torch.tensor([rows[0]["input_ids"]]), torch.tensor(rows[0]["labels"][1:])
    with torch.no_grad():
        t_log = torch.log_softmax(load_checked(tiny_model_dir)(ids).logits[0, :-1], -1)[labels != -100]
        s_log = torch.log_softmax(student(ids).logits[0, :-1], -1)[labels != -100]
    expected = torch.nn.functional.kl_div(s_log, t_log, log_target=True, reduction="sum") / len(t_log)
    assert other["kl_vs_teacher"] == pytest.approx(float(expected), rel=1e-4)
    agree = float((s_log.argmax(-1) == t_log.argmax(-1)).float().mean())
    assert other["top1_vs_teacher"] == pytest.approx(agree) and len(other["argmax"][0]) == len(t_log)


def test_with_train_method_full_the_adapter_folder_holds_whole_weights_and_loads_as_such(tiny_model_dir):
    """train.method full writes a whole model to models/adapter: the merge gate loads it as a model, not peft."""
    from potstill.evaluation.run import load_model

    loaded = load_model("adapter", tiny_model_dir, base=tiny_model_dir)
    assert loaded.parameters is not None and not hasattr(loaded.model, "peft_config")
    assert loaded.model.num_parameters() == load_checked(tiny_model_dir).num_parameters()


def test_answers_stop_at_end_of_turn_but_timing_generates_the_same_tokens_on_every_engine(tiny_model_dir, tokenizer):
    """A random tiny llama repeats one token greedily; call that token end-of-turn and the answer is empty."""
    from types import SimpleNamespace

    from potstill.evaluation.metrics import answer_prompts, hf_generate_fn, time_generation

    model = load_checked(tiny_model_dir)
    prompt = tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]
    free = hf_generate_fn(model, tokenizer)(prompt, 10, stop_at_eos=False)
    assert len(free) == 10
    ends_at_once = SimpleNamespace(eos_token_id=free[0], pad_token_id=tokenizer.pad_token_id, decode=tokenizer.decode)
    generate = hf_generate_fn(model, ends_at_once)
    assert generate(prompt, 10) == []  # the end-of-turn token ends the answer, even first
    forced = generate(prompt, 10, stop_at_eos=False)  # timing: end-of-turn suppressed, exactly 10 tokens
    assert len(forced) == 10 and free[0] not in forced
    never = SimpleNamespace(eos_token_id=next(t for t in range(3, 100) if t not in free),
                            pad_token_id=tokenizer.pad_token_id, decode=tokenizer.decode)
    answers = answer_prompts(hf_generate_fn(model, never), never, [("q", prompt)], max_new_tokens=10)
    assert answers[0]["tokens"] == 10 and answers[0]["cut_off"]
    stopped = answer_prompts(generate, ends_at_once, [("q", prompt)], max_new_tokens=10)
    assert stopped[0]["tokens"] == 0 and not stopped[0]["cut_off"] and stopped[0]["answer"] == ""
    timed = time_generation(generate, [("q", prompt), ("q", prompt)], new_tokens=6)
    assert timed["timed_tokens"] == 12 and timed["ms_per_token"] > 0


def test_degenerate_answers_and_their_share():
    from potstill.evaluation.metrics import answer_figures
    from potstill.text import is_degenerate

    loop = "To fall asleep, you can fall asleep at a sleep. " * 6
    assert is_degenerate(loop) and not is_degenerate("Paris is the capital of France, on the Seine.")
    answers = [{"degenerate": d, "cut_off": c, "words": w, "tokens": 2 * w} for d, c, w in
               [(True, True, 60), (False, False, 10), (False, False, 20), (False, True, 30)]]
    assert answer_figures(answers) == {"degenerate_share": 0.25, "cut_off_share": 0.5, "answer_words": 30.0,
                                       "answer_tokens": 60.0}


def test_bootstrap_intervals_cover_the_estimate_and_narrow_with_more_prompts():
    import random

    from potstill.evaluation.metrics import bootstrap_interval, intervals

    rng = random.Random(1)
    few = [float(rng.random() < 0.3) for _ in range(20)]
    many = [float(rng.random() < 0.3) for _ in range(400)]
    low, high = bootstrap_interval(few)
    assert low <= sum(few) / len(few) <= high and high - low > 0.15
    low_many, high_many = bootstrap_interval(many)
    assert high_many - low_many < (high - low) / 2  # ~1/sqrt(20) of the width: 20x the prompts
    assert bootstrap_interval([3.0] * 10, [2.0] * 10) == (1.5, 1.5)
    # Per-token metrics resample prompts with their token counts: a ratio of sums, not a mean of ratios.
    record = {"rows": {"tokens": [1, 9], "nll": [10.0, 9.0], "kl": [1.0, 9.0], "agree": [0, 9]},
              "answers": [{"degenerate": True}, {"degenerate": False}]}
    ci = intervals(record)
    assert set(ci) == {"heldout_nll", "kl_vs_teacher", "top1_vs_teacher", "degenerate_share"}
    assert ci["heldout_nll"][0] <= 1.9 <= ci["heldout_nll"][1] and ci["top1_vs_teacher"][1] <= 1.0


def test_onpolicy_kl_scores_each_models_own_answers_against_the_teacher(tiny_model_dir, tokenizer):
    """Zero for the teacher's own answers; for another model, torch's KL(model || teacher) on the tokens it wrote."""
    from potstill.evaluation.metrics import answer_prompts, hf_generate_fn, hf_logits_fn, intervals, onpolicy_kl
    from potstill.models import tiny_llama

    teacher = load_checked(tiny_model_dir)
    prompts = [(q, tokenizer(q, add_special_tokens=False)["input_ids"]) for q in ("The sky is", "Two plus two")]
    own = answer_prompts(hf_generate_fn(teacher, tokenizer), tokenizer, prompts, max_new_tokens=6)
    assert onpolicy_kl(hf_logits_fn(teacher), hf_logits_fn(teacher), prompts, own)["onpolicy_kl"] == pytest.approx(
        0.0, abs=1e-5)
    student = tiny_llama(tokenizer, seed=7).eval()
    answers = answer_prompts(hf_generate_fn(student, tokenizer), tokenizer, prompts, max_new_tokens=6)
    figures = onpolicy_kl(hf_logits_fn(student), hf_logits_fn(teacher), prompts, answers)
    total, tokens = 0.0, 0
    for (_, ids), answer in zip(prompts, answers, strict=True):
        sequence = torch.tensor([ids + answer["ids"]])
        with torch.no_grad():
            s_log = torch.log_softmax(student(sequence).logits[0, len(ids) - 1:-1], -1)
            t_log = torch.log_softmax(teacher(sequence).logits[0, len(ids) - 1:-1], -1)
        total += float(torch.nn.functional.kl_div(t_log, s_log, log_target=True, reduction="sum"))
        tokens += len(answer["ids"])
    assert tokens == 12 and figures["onpolicy_kl"] == pytest.approx(total / tokens, rel=1e-4)
    low, high = intervals(figures)["onpolicy_kl"]
    assert low <= figures["onpolicy_kl"] <= high


def write_mc_task(folder: Path, name: str, data_path: str, rows: int = 3) -> Path:
    """A multiple-choice task YAML in `folder` whose data_files entry is `data_path`, as written; data beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    items = [{"q": f"Item {i} is", "choices": ["blue", "loud"], "label": i % 2} for i in range(rows)]
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data_path}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: label\nmetric_list:\n  - metric: acc\nmetadata:\n  version: 1.0\n")
    return folder / f"{name}.yaml"


def test_several_task_folders_and_data_files_beside_their_yaml(tiny_model_dir, tokenizer, tmp_path):
    """evaluate.task_dir as a list (the shipped folder and the user's); the user's data path is relative to its YAML."""
    from lm_eval.models.huggingface import HFLM

    from potstill.evaluation.lm_eval import lm_eval_results
    from potstill.tasks import task_specs

    mine = tmp_path / "team_tasks"
    write_mc_task(mine, "team_mc", "team_mc.jsonl")
    folders, tasks = ["data/eval_tasks", str(mine)], ["potstill_mc", "team_mc"]
    assert shipped("evaluate", task_dir=folders, tasks=tasks).task_dir == folders
    manager = task_manager(folders, tasks)
    specs = task_specs(manager, tasks)
    # the shipped task reads its data from the working directory, as lm-eval does: left by name
    assert specs[0] == "potstill_mc"
    assert specs[1]["task"] == "team_mc"
    assert specs[1]["dataset_kwargs"]["data_files"] == {"test": str((mine / "team_mc.jsonl").resolve())}
    lm = HFLM(pretrained=load_checked(tiny_model_dir), tokenizer=tokenizer, batch_size=3, device="cpu")
    scores, items, *_ = lm_eval_results(lm, specs, manager, limit=2)
    assert set(scores) == set(tasks) and len(items["team_mc"]["acc"]) == len(items["potstill_mc"]["acc"]) == 2


def test_a_missing_data_file_and_a_gate_on_a_task_not_run_are_refused_before_any_model_loads(tmp_path):
    import yaml

    from potstill.errors import ParamsError
    from potstill.evaluation.run import run_evaluate
    from potstill.tasks import task_specs

    task_yaml = write_mc_task(tmp_path / "tasks", "team_mc", "elsewhere/team_mc.jsonl")
    with pytest.raises(InputError, match=rf"{task_yaml}: a task's data file was not found: elsewhere/team_mc.jsonl "
                                         r".*next to the YAML\); fix dataset_kwargs.data_files there"):
        task_specs(task_manager(tmp_path / "tasks", ["team_mc"]), ["team_mc"])

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"].update(tasks=["potstill_mc"], gates=[
        {"name": "gen_kept", "metric": "potstill_gen.exact_match", "model": "merged", "min": 0.1}])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"gen_kept\): metric 'potstill_gen.exact_match' is a score of task "
                                          r"'potstill_gen', which evaluate.tasks does not run \(potstill_mc\)"):
        run_evaluate(tmp_path / "params.yaml", {"merged": ("hf", tmp_path / "no-model-here", None)},
                     tmp_path / "no-test.jsonl")
