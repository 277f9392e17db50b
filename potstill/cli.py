"""What every stage script shares: offline HF settings and turning known errors into exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps

# Set before any HF library is imported: otherwise datasets/lm-eval make (swallowed) network calls.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

EXIT_BAD_INPUT = 2


def user_errors() -> tuple[type[BaseException], ...]:
    """Return the exception types that mean 'the user must fix something', not 'we crashed'."""
    from potstill.io import InputError
    from potstill.params import ParamsError
    from potstill.server import ServerError
    from potstill.teacher import TeacherError

    return (InputError, ParamsError, ServerError, TeacherError)


def friendly_errors(fn: Callable) -> Callable:
    """Wrap a stage command: known user errors print one clear message and exit 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except user_errors() as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_BAD_INPUT) from None

    return wrapper
