"""The content-addressed request cache: one answer per (model, messages, sampling), never paid twice."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from potstill.io import write_text_atomic
from potstill.teacher.client import Sampling


def request_key(messages: list[dict], sampling: Sampling) -> str:
    """Return the content address of a request: same model (and served weights), messages and sampling, same key."""
    fields = asdict(sampling)
    if fields["weights"] is None:
        del fields["weights"]  # keys of endpoint models and the embedded teacher as they always were
    blob = json.dumps({"messages": messages, **fields}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """One JSON file per request key; written atomically so a kill never leaves a torn entry."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            path.unlink(missing_ok=True)  # only possible if the disk lied; ask again
            return None

    def put(self, key: str, record: dict) -> None:
        write_text_atomic(self._path(key), json.dumps(record, ensure_ascii=False))
