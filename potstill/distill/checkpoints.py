"""Training checkpoints in the state dir, keyed by params and inputs, so a killed run resumes safely."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from potstill.io import folder_digest, state_dir


def checkpoint_dir(settings: dict, inputs: list[Path]) -> Path:
    """Return the state-dir folder for this run's checkpoints, keyed by its settings and inputs.

    DVC deletes the stage's outputs before a rerun, so checkpoints live outside them; the key
    makes sure a run with other params or data never resumes from them.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in inputs:
        if path.is_dir():
            digest.update(folder_digest(path).encode())
        elif path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode())
    return state_dir() / "checkpoints" / digest.hexdigest()[:20]


def last_complete_checkpoint(folder: Path) -> str | None:
    """Return the newest checkpoint in `folder` that finished writing, removing torn ones.

    The Trainer writes trainer_state.json last; a SIGKILL while it saves leaves a numbered
    folder without it, which `get_last_checkpoint` would pick and fail to resume from.
    """
    if not folder.is_dir():
        return None
    complete = []
    for candidate in folder.glob("checkpoint-*"):
        if (candidate / "trainer_state.json").is_file():
            complete.append(candidate)
        else:
            shutil.rmtree(candidate, ignore_errors=True)
    if not complete:
        return None
    return str(max(complete, key=lambda path: int(path.name.rsplit("-", 1)[-1])))
