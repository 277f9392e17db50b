"""The shipped lm-eval tasks load offline and their items are well formed (no model needed)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
TASK_DIR = ROOT / "data" / "eval_tasks"
TASKS = ("potstill_mc", "potstill_gen")
MIN_ITEMS = 240


def read_jsonl(name: str) -> list[dict]:
    with (TASK_DIR / f"{name}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def task_dict():
    """Both tasks built by lm-eval's TaskManager, from the repo root as the stages run it."""
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    cwd = os.getcwd()
    os.chdir(ROOT)  # the YAMLs name their data files relative to the repo root
    try:
        tm = TaskManager(include_path=str(TASK_DIR), include_defaults=False)
        return tm.load(list(TASKS))["tasks"]
    finally:
        os.chdir(cwd)


def test_build_script_reproduces_shipped_jsonl(tmp_path):
    spec = importlib.util.spec_from_file_location("build_tasks", TASK_DIR / "build_tasks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert read_jsonl("potstill_mc") == mod.build_mc()
    assert read_jsonl("potstill_gen") == mod.build_gen()


def test_build_script_is_stdlib_only_and_deterministic(tmp_path):
    # Running it twice in a fresh interpreter writes byte-identical files.
    before = {n: (TASK_DIR / f"{n}.jsonl").read_bytes() for n in TASKS}
    src = (TASK_DIR / "build_tasks.py").read_text()
    for line in src.splitlines():
        if line.startswith(("import ", "from ")):
            mod = line.split()[1].split(".")[0]
            assert mod in sys.stdlib_module_names or mod == "__future__", line
    copy = tmp_path / "build_tasks.py"
    copy.write_text(src)
    subprocess.run([sys.executable, str(copy)], check=True, capture_output=True)
    for n in TASKS:
        assert (tmp_path / f"{n}.jsonl").read_bytes() == before[n]


@pytest.mark.parametrize("name", TASKS)
def test_tasks_load_through_task_manager(task_dict, name):
    task = task_dict[name]
    docs = list(task.test_docs())
    assert len(docs) >= MIN_ITEMS
    assert len(docs) == len(read_jsonl(name))
    assert task.config.metadata["version"] == 1.0
    text = task.doc_to_text(docs[0])
    assert isinstance(text, str) and text.strip()


def test_mc_task_config_and_golds(task_dict):
    task = task_dict["potstill_mc"]
    assert task.OUTPUT_TYPE == "multiple_choice"
    assert {m["metric"] for m in task.config.metric_list} >= {"acc"}
    for doc in task.test_docs():
        choices = task.doc_to_choice(doc)
        gold = task.doc_to_target(doc)
        assert len(choices) == 4 and len(set(choices)) == 4, doc
        assert isinstance(gold, int) and 0 <= gold < len(choices), doc
        assert choices[gold] == doc["answer"], doc
        assert all(c and c == c.strip() for c in choices), doc


def test_mc_gold_positions_balanced():
    labels = [r["label"] for r in read_jsonl("potstill_mc")]
    counts = [labels.count(k) for k in range(4)]
    assert max(counts) - min(counts) <= 1, counts


def test_gen_task_config(task_dict):
    task = task_dict["potstill_gen"]
    assert task.OUTPUT_TYPE == "generate_until"
    gen = task.config.generation_kwargs
    assert "\n" in gen["until"] and gen["max_gen_toks"] <= 16
    (em,) = [m for m in task.config.metric_list if m["metric"] == "exact_match"]
    assert em["ignore_case"] and em["ignore_punctuation"]
    for doc in task.test_docs():
        target = task.doc_to_target(doc)
        # generation stops at a newline or a comma, so no answer may contain one
        assert isinstance(target, str) and target, doc
        assert not any(stop in target for stop in gen["until"]), doc
        assert not task.doc_to_text(doc).endswith((" ", "\n")), doc


@pytest.mark.parametrize("name", TASKS)
def test_no_duplicate_items(name):
    rows = read_jsonl(name)
    ids = [r["id"] for r in rows]
    prompts = [r["prompt"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert len(set(prompts)) == len(prompts)


def test_tag_names_both_tasks():
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        tm = TaskManager(include_path=str(TASK_DIR), include_defaults=False)
        assert set(tm.load("potstill")["tasks"]) == set(TASKS)
    finally:
        os.chdir(cwd)


def test_gen_few_shot_examples_are_not_test_items():
    rows = read_jsonl("potstill_gen")
    for r in rows:
        shots = r["prompt"].split("\n")[2:-1]
        assert len(shots) == 3, r
        assert all(not s.startswith(r["query"] + " ") for s in shots), r
    queries = {(r["category"], r["query"]) for r in rows}
    for r in rows:
        for s in r["prompt"].split("\n")[2:-1]:
            q = s.rsplit(" -> ", 1)[0] if " -> " in s else s.rsplit(" ", 1)[0]
            assert (r["category"], q) not in queries, (r["id"], s)
