"""A lock file in the state directory, so two runs that share it take turns instead of colliding.

    with exclusive_lock(state_dir() / "generate.lock", "generate"):
        ...  # only one generate run per state dir gets here; a second one waits its turn

Waiting (not failing) is what `dvc queue start -j 2` needs: the second experiment's generate
starts when the first one's ends, and then finds the shared answers in the cache.

`fcntl.flock` is released by the kernel when the holder exits, SIGKILL included, so a crashed
run never leaves a stale lock behind; the file itself stays (deleting a lock file while another
process waits on it is how two holders happen).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from potstill.errors import LockHeld


def _holder(path: Path) -> str:
    """Return the PID written in a lock file, or "unknown" (the holder may not have written it yet)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def exclusive_lock(path: str | Path, what: str, wait_s: float | None = None) -> Iterator[Path]:
    """Hold an exclusive flock on `path` for the block, waiting up to `wait_s` seconds (None: as long as it takes).

    The holder's PID is written into the file so that the messages can say who holds it. Raises
    LockHeld when the wait runs out (wait_s=0: at once).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline, told = None if wait_s is None else time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                held = (f"{path}: another {what} run (PID {_holder(path)}) holds this lock: it uses the same state "
                        f"directory ({path.parent})")
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockHeld(f"{held}, and two runs would ask the teacher for the same answers twice. Wait "
                                   f"for it to finish, or give this run its own POTSTILL_STATE_DIR") from None
                if not told:
                    print(f"{held}; waiting for it to finish, then this run reuses its cached answers "
                          f"(Ctrl-C to stop)", file=sys.stderr, flush=True)
                    told = True
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # the next holder writes its own PID; an empty file names nobody
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
