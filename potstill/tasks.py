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


def task_dirs(task_dir: str | Path | list[str | Path]) -> list[Path]:
    """Return the task folders of a `task_dir` param: one folder, or a list of them."""
    return [Path(d) for d in (task_dir if isinstance(task_dir, list | tuple) else [task_dir])]


def task_manager(task_dir: str | Path | list[str | Path], tasks: list[str], param: str = "evaluate"):
    """Return an lm-eval TaskManager over one or several task folders, refusing task names none defines.

    Like lm-eval's `include_path`: the folders are scanned in order (a later one overrides a task of
    the same name). `param` names the params section whose keys chose the folders and the names
    (`evaluate` or `curate.decontam_*`), so the error says which line of params.yaml to fix.
    """
    from lm_eval.tasks import TaskManager

    folders = task_dirs(task_dir)
    dir_key, tasks_key = (("task_dir", "tasks") if param == "evaluate"
                          else ("decontam_task_dir", "decontam_tasks"))
    for folder in folders:
        if not folder.is_dir():
            raise InputError(f"{param}.{dir_key}: {folder} is not a folder of lm-eval task YAMLs; "
                             f"fix {param}.{dir_key} in params.yaml")
    manager = TaskManager(include_path=[str(folder) for folder in folders], include_defaults=False)
    unknown = [task for task in tasks if task not in manager.all_tasks]
    if unknown:
        broken = "".join(f"; {problem}" for folder in folders for problem in _unparsable_yamls(folder))
        where = ", ".join(str(folder) for folder in folders)
        raise InputError(f"{param}.{tasks_key}: {unknown} not defined in {where}; "
                         f"available: {sorted(manager.all_tasks)}{broken}")
    return manager


def task_specs(manager, tasks: list[str]) -> list[str | dict]:
    """Return what lm-eval should load for each task, its data files checked before any model loads.

    A task YAML's local `dataset_kwargs.data_files` are read from the working directory (lm-eval's
    rule, which the shipped tasks follow) or, failing that, next to the YAML (where a user's task
    folder keeps them): such a task is returned as its full config with the paths made absolute;
    the others by name. A data file found in neither place is an InputError naming the YAML.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    specs: list[str | dict] = []
    for name in tasks:
        entry = manager.task_index[name]
        if entry.yaml_path is None:
            specs.append(name)
            continue
        config = load_yaml(entry.yaml_path, resolve_func=True)
        files = (config.get("dataset_kwargs") or {}).get("data_files")
        resolved = _resolve_data_files(files, Path(entry.yaml_path))
        if resolved == files:
            specs.append(name)
        else:
            specs.append({**config, "dataset_kwargs": {**config["dataset_kwargs"], "data_files": resolved}})
    return specs


def task_name(spec: str | dict) -> str:
    return spec if isinstance(spec, str) else spec["task"]


def _resolve_data_files(files, yaml_path: Path):
    """Return `files` (a path, a list, or {split: path or list}), paths found only beside the YAML made absolute."""
    if isinstance(files, dict):
        return {split: _resolve_data_files(value, yaml_path) for split, value in files.items()}
    if isinstance(files, list):
        return [_resolve_data_files(value, yaml_path) for value in files]
    if not isinstance(files, str) or "://" in files:
        return files  # none, or remote (never fetched here: the run is offline)
    if _exists(Path(files)):
        return files
    beside = yaml_path.parent / files
    if not Path(files).is_absolute() and _exists(beside):
        return str(beside.resolve())
    raise InputError(f"{yaml_path}: a task's data file was not found: {files} (a relative path is read from the "
                     f"working directory {Path.cwd()}, then next to the YAML); fix dataset_kwargs.data_files there")


def _exists(path: Path) -> bool:
    """Whether a data_files entry names something: a file, or a glob pattern that matches one."""
    import glob

    return path.exists() or bool(glob.has_magic(str(path)) and glob.glob(str(path)))


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


def load_tasks(task_dir: str | Path | list[str | Path], tasks: list[str], param: str = "evaluate") -> dict:
    """Return {task name: lm-eval Task} for `tasks` defined in the task folder(s); InputError if unknown."""
    manager = task_manager(task_dir, tasks, param)
    return manager.load(task_specs(manager, list(tasks)))["tasks"]


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
