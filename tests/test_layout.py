"""The house keeps its shape: every stage's deps cover the code it runs, and imports run one way.

A stage whose `deps` miss a module it runs is a build-system bug: editing that module would not
rerun the stage, and `dvc repro` would serve results built by old code. The checks walk the
import graph with `ast` (imports inside functions count: they run too) from each stage script of
every dvc.yaml in the repository.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "potstill"
FAMILIES = ("teacher", "curate", "distill", "export", "evaluation", "classify")


def module_file(name: str) -> Path | None:
    """Return the file of a project module (`potstill.x.y` or `stages.z`), None if it is not ours."""
    if name.split(".")[0] not in ("potstill", "stages"):
        return None
    base = ROOT.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def imported_files(path: Path) -> set[Path]:
    """Return the project files `path` imports, at module level or inside functions."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from potstill.teacher import server` imports a submodule; `from potstill.io import x` a name.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            for depth in range(2, len(parts) + 1):  # importing a.b.c runs a/b/__init__.py too
                file = module_file(".".join(parts[:depth]))
                if file is not None:
                    found.add(file)
    return found


def import_closure(script: Path) -> set[Path]:
    """Return every project file that running `script` may import, `script` included."""
    seen, todo = set(), [script]
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        todo += imported_files(file) - seen
    # Empty package markers hold no code: a change to one cannot change a result.
    return {file for file in seen if not (file.name == "__init__.py" and not file.read_text().strip())}


def stage_entries(dvc_yaml: Path, spec: dict | None = None):
    """Yield (stage name, cmd, deps, working directory) for each stage of a dvc.yaml (or of `spec` read from it)."""
    spec = spec if spec is not None else yaml.safe_load(dvc_yaml.read_text())
    for name, stage in (spec.get("stages") or {}).items():
        stage = stage.get("do", stage)  # foreach stages: deps do not depend on the item here
        wdir = (dvc_yaml.parent / stage.get("wdir", ".")).resolve()
        yield name, stage["cmd"], stage.get("deps", []), wdir


def scripts_of(cmd: str, wdir: Path) -> list[Path]:
    """Return the project Python files a stage command runs (`python x.py` or `python -m pkg.mod`)."""
    words = shlex.split(cmd.replace("${", "{"))
    scripts = [(wdir / word).resolve() for word in words if word.endswith(".py")]
    scripts += [module_file(words[i + 1]) for i, word in enumerate(words[:-1]) if word == "-m"]
    return [script for script in scripts if script is not None and script.is_file()]


def uncovered(dvc_yaml: Path, spec: dict | None = None) -> list[str]:
    """Return a line naming stage and module for every module a stage runs that its deps do not cover."""
    problems = []
    for name, cmd, deps, wdir in stage_entries(dvc_yaml, spec):
        covered = [(wdir / str(dep)).resolve() for dep in deps]
        for script in scripts_of(cmd, wdir):
            for file in sorted(import_closure(script)):
                if not any(file == dep or dep in file.parents for dep in covered):
                    problems.append(f"{dvc_yaml.relative_to(ROOT)}: stage {name!r} runs "
                                    f"{file.relative_to(ROOT)} but its deps do not list it (or its folder)")
    return problems


def dvc_yamls() -> list[Path]:
    return sorted(path for path in ROOT.rglob("dvc.yaml") if ".venv" not in path.parts and ".dvc" not in path.parts)


@pytest.mark.parametrize("dvc_yaml", dvc_yamls(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_stage_lists_every_module_it_runs(dvc_yaml):
    assert list(stage_entries(dvc_yaml)), f"{dvc_yaml}: no stages"
    assert uncovered(dvc_yaml) == []


def test_the_deps_check_names_the_stage_and_the_module_when_a_dep_line_is_deleted():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    spec["stages"]["merge"]["deps"].remove("potstill/models.py")
    assert uncovered(ROOT / "dvc.yaml", spec) == [
        "dvc.yaml: stage 'merge' runs potstill/models.py but its deps do not list it (or its folder)"]


def test_every_stage_script_is_found_and_walked():
    for name, cmd, _, wdir in stage_entries(ROOT / "dvc.yaml"):
        scripts = scripts_of(cmd, wdir)
        assert scripts, f"stage {name}: no project script in {cmd!r}"
        assert len(import_closure(scripts[0])) > 2, name  # the script, the cli module, a library module


def graph() -> dict[Path, set[Path]]:
    files = sorted(PACKAGE.rglob("*.py"))
    return {file: imported_files(file) - {file} for file in files}


def test_no_import_circles():
    edges = graph()
    cycles = []
    for start in edges:
        stack = [(start, [start])]
        while stack:
            file, trail = stack.pop()
            for nxt in edges.get(file, ()):
                if nxt == start:
                    cycles.append(" -> ".join(str(f.relative_to(ROOT)) for f in [*trail, start]))
                elif nxt not in trail and nxt in edges:
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == []


def test_imports_run_one_way_shared_modules_never_import_a_stage_family():
    for file, imports in graph().items():
        if file.parent == PACKAGE:  # a shared module
            families = {imp.relative_to(PACKAGE).parts[0] for imp in imports if imp.parent != PACKAGE}
            assert not families, f"{file.relative_to(ROOT)} imports stage families {sorted(families)}"
    assert imported_files(PACKAGE / "errors.py") == set()


def test_every_user_error_has_one_base():
    import inspect

    import potstill.errors as errors

    classes = [obj for _, obj in inspect.getmembers(errors, inspect.isclass) if obj.__module__ == errors.__name__]
    assert all(issubclass(cls, errors.UserError) for cls in classes)
    # No error class a user can fix is defined anywhere else.
    for file in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                assert file.name == "errors.py" or node.name == "TransientError", f"{file}: {node.name}"
