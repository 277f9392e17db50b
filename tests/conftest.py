"""Shared fixtures: the shipped tokenizer, tiny models built from config, and one tiny pipeline.

The `pipeline` fixture runs the real `dvc repro` once per session (real llama.cpp teacher, real
peft, real lm-eval) on a tiny configuration in a temporary git repo; end-to-end tests reuse it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# The pipeline runs with an API key set to this recognizable value (the embedded llama.cpp server
# ignores keys; the client still sends it): tests/test_reliability.py looks for it everywhere.
PIPELINE_KEY_ENV = "POTSTILL_PIPELINE_KEY"
PIPELINE_SECRET = "sk-potstill-PIPELINE-SECRET-0123456789"

# The tiny pipeline is configs/profiles/tiny.yaml, applied as a user applies a profile; the tests
# add only the API key variable they scan for.
TINY_PROFILE = "tiny"
TEST_OVERRIDES = {"teacher": {"api_key_env": PIPELINE_KEY_ENV}}


SHIPPED_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def shipped(section: str, **overrides):
    """Return a params.yaml section (the one source of defaults) with overrides, validated."""
    from potstill.params import SECTIONS

    return SECTIONS[section].model_validate({**SHIPPED_PARAMS[section], **overrides})


def pytest_collection_modifyitems(config, items):
    """POTSTILL_TEST_ORDER=reverse runs the collected tests last to first: a check that none needs another's state."""
    if os.environ.get("POTSTILL_TEST_ORDER") == "reverse":
        items.reverse()


def override_params(path: Path, overrides: dict) -> None:
    """Apply {section: {key: value}} overrides to a params.yaml in place."""
    params = yaml.safe_load(path.read_text())
    for section, values in overrides.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run(cmd: list[str], cwd: Path, check: bool = True, env_extra: dict | None = None,
        **kwargs) -> subprocess.CompletedProcess:
    """Run a command with the project's venv first on PATH; fail with its output on error."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **(env_extra or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session", autouse=True)
def state_dir(tmp_path_factory) -> Path:
    """Point the cross-run state (teacher cache, eval cache) at a per-session folder."""
    path = tmp_path_factory.mktemp("state")
    os.environ["POTSTILL_STATE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def teacher_gguf() -> Path:
    from potstill.models import find_teacher_gguf

    return find_teacher_gguf(SHIPPED_PARAMS["teacher"]["gguf_package"])[0]


@pytest.fixture(scope="session")
def tokenizer(teacher_gguf):
    """The shipped teacher's tokenizer (SmolLM2, 49,152 tokens, ChatML template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(teacher_gguf.parent, gguf_file=teacher_gguf.name)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A 2-layer, 64-wide llama with the shipped tokenizer, saved as safetensors."""
    from potstill.models import save_model, tiny_llama

    path = tmp_path_factory.mktemp("tiny") / "model"
    save_model(tiny_llama(tokenizer), tokenizer, path)
    return path


def make_project(dest: Path, profile: str, overrides: dict, extra: tuple[str, ...] = ()) -> Path:
    """Copy the project's pipeline into `dest` as a fresh git + DVC repo, `profile` applied, then `overrides`.

    `extra` names more paths to copy (the classifier pipeline's dvc.yaml and data).
    """
    for name in ("dvc.yaml", "params.yaml", "stages", "potstill", "data/prompts.jsonl",
                 "data/eval_tasks", "ci", ".github", "configs", "tools", *extra):
        src, dst = ROOT / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    run([sys.executable, "-m", "potstill.profiles", profile], dest)
    override_params(dest / "params.yaml", overrides)
    run(["git", "init", "-q"], dest)
    run(["git", "config", "user.email", "tests@potstill"], dest)
    run(["git", "config", "user.name", "potstill tests"], dest)
    run(["dvc", "init", "-q"], dest)
    run(["dvc", "config", "core.autostage", "true"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "tiny project"], dest)
    return dest


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Path:
    """A tiny project on which `dvc repro` has run once, committed.

    The repro runs with the API key set (and kept set for later runs in the project); its stdout
    and stderr are kept in `<project>/../repro-logs/`, and its temporary files (the llama.cpp
    server log among them) in `<project>/../repro-tmp/`, for the secrets scan.
    """
    project = make_project(tmp_path_factory.mktemp("pipeline") / "project", TINY_PROFILE, TEST_OVERRIDES)
    os.environ[PIPELINE_KEY_ENV] = PIPELINE_SECRET
    logs, tmp = project.parent / "repro-logs", project.parent / "repro-tmp"
    logs.mkdir()
    tmp.mkdir()
    proc = run(["dvc", "repro"], project, check=False, timeout=1800, env_extra={"TMPDIR": str(tmp)})
    (logs / "stdout.txt").write_text(proc.stdout)
    (logs / "stderr.txt").write_text(proc.stderr)
    if proc.returncode != 0:
        raise AssertionError(f"dvc repro exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "tiny pipeline run"], project)
    return project
