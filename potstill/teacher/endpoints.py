"""Which endpoints generate talks to: the user's OpenAI-compatible URLs, or the embedded teacher served for the run."""

from __future__ import annotations

import contextlib

from potstill.models import find_teacher_gguf
from potstill.teacher.server import llama_cpp_server

# llama-cpp-python computes logprobs from the raw logits whatever the sampling temperature
# (tests/test_teacher_server.py checks this against transformers).
EMBEDDED_LOGPROB_TEMPERATURE = 1.0
EMBEDDED_CONTEXT_TOKENS = 2048


def start_endpoints(teacher, stack: contextlib.ExitStack) -> tuple[list[str], list[str] | None, dict]:
    """Return (endpoint URLs, their labels for logs and metrics, the manifest's endpoint entry).

    With teacher.base_url null the embedded GGUF is served for as long as `stack` is open.
    """
    if teacher.base_url is None:
        gguf, version = find_teacher_gguf(teacher.gguf_package)
        url = stack.enter_context(llama_cpp_server(
            gguf, teacher.model, n_ctx=teacher.context_tokens or EMBEDDED_CONTEXT_TOKENS))
        # A fixed label: the port is random and would make every metrics file differ.
        return [url], ["embedded"], {
            "kind": "embedded-llama.cpp", "package": teacher.gguf_package, "package_version": version,
            "logprob_temperature": EMBEDDED_LOGPROB_TEMPERATURE}
    # OpenAI and vLLM (default logprobs mode) report logprobs of the unscaled model.
    return teacher.endpoints, None, {"kind": "openai-compatible", "logprob_temperature": 1.0}
