"""What every stage script shares: offline HF settings and turning user errors into exit codes."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from functools import wraps

from potstill.errors import UserError

# Set before any HF library is imported: otherwise datasets/lm-eval make (swallowed) network calls.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# datasets draws a "Generating <split> split" bar for every tiny JSON file lm-eval and curate read;
# the stages' long work has its own bars (generate, score, train, evaluate).
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def quiet_known_noise() -> None:
    """Silence log lines known to be harmless on every stage run, and only those.

    - torchao: transformers imports it whenever it is installed (transformers/quantizers/
      quantizer_torchao.py), and torchao logs "Failed to load ..._C_*.so" for its CUDA-only kernels.
    - torch.utils._pytree: torchao registers enums as pytree constants, which torch 2.13 logs as
      deprecated ("... is an Enum subclass and is now natively supported by torch.compile").
    - transformers 5 warns that `is_gradient_checkpointing` is deprecated when peft or the Trainer
      asks for it: nothing to do on our side.
    """
    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


quiet_known_noise()

EXIT_BAD_INPUT = 2


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def friendly_errors(fn: Callable) -> Callable:
    """Wrap a stage command: a UserError prints one clear message and exits 2; anything else is a bug.

    SIGTERM (a CI job cancelled, `kill`, a queue worker stopped) becomes SystemExit, so `finally`
    blocks run as they do on Ctrl-C: teacher servers are stopped, not left behind, and partial
    outputs are cleaned up.
    """

    @wraps(fn)
    def wrapper(*args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_BAD_INPUT) from None

    return wrapper
