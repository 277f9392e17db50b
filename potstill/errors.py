"""Every error a user can fix, in one module that imports nothing else of potstill.

A stage wraps its command in `potstill.cli.friendly_errors`, which catches `UserError` alone: the
message (which file, which line, which value, what to do) is printed and the stage exits 2. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad params, bad input data, an endpoint that refuses, a busy lock."""


class InputError(UserError, ValueError):
    """A file or value the user supplied is unusable; the message names the file, line and fix."""


class ParamsError(UserError, ValueError):
    """params.yaml is missing, unparsable or holds an invalid value."""


class ServerError(UserError, RuntimeError):
    """A local server (llama.cpp, transformers serve) would not start or answer; its log is named."""


class TeacherError(UserError, RuntimeError):
    """The endpoint refused the request in a way retrying cannot fix, or the run must stop."""


class BudgetExceeded(TeacherError):
    """The next request could push spend past teacher.max_cost or teacher.max_tokens_total."""


class LockHeld(InputError):
    """Another run holds the state-dir lock this run needs."""
