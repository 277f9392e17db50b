"""Which endpoints generate talks to: the user's OpenAI-compatible URLs, or the embedded teacher served for the run."""

from __future__ import annotations

import contextlib
import os

from potstill.models import find_teacher_gguf
from potstill.teacher.server import llama_cpp_server

# llama-cpp-python computes logprobs from the raw logits whatever the sampling temperature
# (tests/test_teacher_server.py checks this against transformers).
EMBEDDED_LOGPROB_TEMPERATURE = 1.0
EMBEDDED_CONTEXT_TOKENS = 2048


def start_endpoints(teacher, stack: contextlib.ExitStack, servers: int = 1,
                    ) -> tuple[list[str], list[str] | None, dict]:
    """Return (endpoint URLs, their labels for logs and metrics, the manifest's endpoint entry).

    With teacher.base_url null the embedded GGUF is served for as long as `stack` is open, by
    `servers` llama.cpp processes that share the cores (one thread each on 2 cores): each serves
    one request at a time, so several keep every core busy on short requests.
    """
    if teacher.base_url is None:
        gguf, version = find_teacher_gguf(teacher.gguf_package)
        threads = max(1, (os.cpu_count() or 2) // 2 // servers)
        urls = [stack.enter_context(llama_cpp_server(
            gguf, teacher.model, n_threads=threads if servers > 1 else None,
            n_ctx=teacher.context_tokens or EMBEDDED_CONTEXT_TOKENS)) for _ in range(servers)]
        # Fixed labels: the ports are random and would make every metrics file differ.
        labels = ["embedded"] if servers == 1 else [f"embedded-{i + 1}" for i in range(servers)]
        return urls, labels, {
            "kind": "embedded-llama.cpp", "package": teacher.gguf_package, "package_version": version,
            "logprob_temperature": EMBEDDED_LOGPROB_TEMPERATURE}
    # OpenAI and vLLM (default logprobs mode) report logprobs of the unscaled model.
    return teacher.endpoints, None, {"kind": "openai-compatible", "logprob_temperature": 1.0}
