"""Evaluation items read through lm-eval's own task definitions, so curation and evaluation agree.

Decontamination (curate) and scoring (evaluate) must see the same prompt and target text: both
go through lm-eval's TaskManager and each task's `doc_to_text` / `doc_to_target`, never through
a second parser of the task files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Set before lm-eval (and with it datasets / huggingface_hub) is imported anywhere in this process:
# otherwise they make (swallowed) network calls. potstill.cli does the same for stage scripts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from potstill.errors import InputError  # noqa: E402


@dataclass(frozen=True)
class EvalItem:
    """One evaluation item as the model sees it: the prompt followed by the gold answer."""

    task: str
    item_id: str
    text: str
    answer: str = ""  # the gold answer alone (the end of `text`): what a contaminated row gives away


def task_manager(task_dir: str | Path, tasks: list[str], param: str = "evaluate"):
    """Return an lm-eval TaskManager for `task_dir`, refusing task names it does not define.

    `param` names the params section whose keys chose the folder and the names (`evaluate` or
    `curate.decontam_*`), so the error says which line of params.yaml to fix.
    """
    from lm_eval.tasks import TaskManager

    task_dir = Path(task_dir)
    dir_key, tasks_key = (("task_dir", "tasks") if param == "evaluate"
                          else ("decontam_task_dir", "decontam_tasks"))
    if not task_dir.is_dir():
        raise InputError(f"{param}.{dir_key}: {task_dir} is not a folder of lm-eval task YAMLs; "
                         f"fix {param}.{dir_key} in params.yaml")
    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    unknown = [task for task in tasks if task not in manager.all_tasks]
    if unknown:
        broken = "".join(f"; {problem}" for problem in _unparsable_yamls(task_dir))
        raise InputError(f"{param}.{tasks_key}: {unknown} not defined in {task_dir}; "
                         f"available: {sorted(manager.all_tasks)}{broken}")
    return manager


def _unparsable_yamls(task_dir: Path) -> list[str]:
    """Return 'FILE:LINE is not valid YAML (...)' for each task YAML in `task_dir` that does not parse.

    lm-eval skips such a file with a log line only, so its task then looks merely undefined.
    """
    import yaml

    class _TagTolerantLoader(yaml.SafeLoader):
        """SafeLoader that accepts lm-eval's `!function` tags (their value is irrelevant here)."""

    _TagTolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
    problems = []
    for path in sorted(task_dir.rglob("*.yaml")):
        try:
            yaml.load(path.read_text(encoding="utf-8"), Loader=_TagTolerantLoader)  # noqa: S506 (safe subclass)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problems.append(f"{where} is not valid YAML ({getattr(exc, 'problem', None) or exc}); fix that file")
    return problems


def load_tasks(task_dir: str | Path, tasks: list[str], param: str = "evaluate") -> dict:
    """Return {task name: lm-eval Task} for `tasks` defined in `task_dir`; InputError if unknown."""
    manager = task_manager(task_dir, tasks, param)
    try:
        return manager.load(list(tasks))["tasks"]
    except FileNotFoundError as exc:
        # Task YAMLs name their data files relative to the working directory, not the YAML.
        raise InputError(f"{task_dir}: a task's data file was not found ({exc}); run from the "
                         "repository root, or give an absolute path in the task's dataset_kwargs") from None


def _docs(task) -> Iterator[dict]:
    """Return the documents the task is scored on: test split, else validation (as lm-eval does)."""
    if task.has_test_docs():
        return iter(task.test_docs())
    if task.has_validation_docs():
        return iter(task.validation_docs())
    return iter(())


def _target_text(task, doc) -> str:
    """Return the gold answer as text: multiple-choice targets are indices into the choices."""
    target = task.doc_to_target(doc)
    if getattr(task, "OUTPUT_TYPE", None) == "multiple_choice":
        choices = task.doc_to_choice(doc)
        if isinstance(target, int) and 0 <= target < len(choices):
            return str(choices[target])
        if isinstance(target, list):  # several gold choices
            return " ".join(str(choices[t]) if isinstance(t, int) else str(t) for t in target)
    if isinstance(target, list):
        return " ".join(str(t) for t in target)
    return str(target)


def eval_items(task_dir: str | Path, tasks: list[str], param: str = "evaluate") -> Iterator[EvalItem]:
    """Yield every scored item of `tasks` as prompt + gold answer text, via lm-eval's task code."""
    for name, task in sorted(load_tasks(task_dir, tasks, param).items()):
        for index, doc in enumerate(_docs(task)):
            item_id = str(doc.get("id", index)) if isinstance(doc, dict) else str(index)
            answer = _target_text(task, doc)
            yield EvalItem(name, item_id, f"{task.doc_to_text(doc)} {answer}", str(answer))
