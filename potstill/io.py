"""File helpers shared by the stages: atomic writes, JSONL with line-numbered errors, state dir."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from potstill.errors import InputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; outputs are read by other users of a shared DVC cache.
FILE_MODE = 0o666 & ~_current_umask()



def state_dir() -> Path:
    """Return the directory for state that must outlive a stage run (request cache, checkpoints).

    DVC deletes a stage's outputs before rerunning it and queued experiments run in temporary
    copies of the workspace, so this lives outside the repository: $POTSTILL_STATE_DIR, else
    $XDG_CACHE_HOME/potstill, else ~/.cache/potstill.
    """
    explicit = os.environ.get("POTSTILL_STATE_DIR")
    if explicit:
        root = Path(explicit)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "potstill"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator:
    """Yield a text handle to a temporary sibling that replaces `path` only if the block succeeds.

    Readers see the old file or the new one, never a torn one, whatever the moment of a kill.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(fd, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically (see atomic_file)."""
    with atomic_file(path) as handle:
        handle.write(text)


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as pretty JSON, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows as JSONL atomically; returns the number of rows written."""
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return len(lines)


def scan_jsonl(path: str | Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """Yield (line, object, None) for each good non-blank line and (line, None, problem) for junk.

    Streams one line at a time. Callers decide whether a bad line stops them (read_jsonl) or is
    skipped and reported (prompts with generate.on_bad_prompt: skip).
    """
    try:
        handle = Path(path).open("rb")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield number, None, f"not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8"
            except json.JSONDecodeError as exc:
                yield number, None, (f"not valid JSON ({exc.msg} at column {exc.colno}); "
                                     "each line must be one JSON object")
            else:
                if isinstance(obj, dict):
                    yield number, obj, None
                else:
                    yield number, None, f"expected a JSON object, got {type(obj).__name__}"


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line; InputError names file:line on junk."""
    for number, obj, problem in scan_jsonl(path):
        if problem:
            raise InputError(f"{path}:{number}: {problem}")
        yield number, obj


@contextlib.contextmanager
def jsonl_writer(path: str | Path) -> Iterator[Callable[[dict], None]]:
    """Yield a function that appends one row to `path`; the file appears only if the block succeeds.

    Rows stream to a temporary sibling (nothing is held in memory), which replaces `path` at the end.
    """
    with atomic_file(path) as handle:
        yield lambda row: handle.write(json.dumps(row, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `final` only if the block succeeds.

    A model folder is therefore either absent or complete: a crash mid-save leaves only a
    `.tmp-*` sibling, which the next run removes.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    tmp.chmod(0o777 & ~_current_umask())  # mkdtemp makes it 0700
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def folder_digest(folder: str | Path) -> str:
    """Return a content hash of every file in a folder (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
