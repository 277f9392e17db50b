"""Which endpoints generate talks to: the user's OpenAI-compatible URLs, or the teacher served for the run.

With `teacher.base_url: null` potstill serves the teacher itself, from `teacher.weights`:
- `embedded` or a `.gguf` file: llama-cpp-python's server (log-probs at T=1);
- a folder of HF weights or `hf:<org>/<name>`: `transformers serve --continuous-batching` (CPU or
  GPU), which returns no log-probs: answers only (kd.source local or none; prepare refuses api);
- `none`: refused, there is no teacher to ask.
"""

from __future__ import annotations

import contextlib
import json
import os

from potstill.models import find_teacher_gguf
from potstill.teacher.server import llama_cpp_server, transformers_server
from potstill.weights import WeightsSource, gguf_file, locate, teacher_source

# llama-cpp-python computes logprobs from the raw logits whatever the sampling temperature
# (tests/test_teacher_server.py checks this against transformers).
EMBEDDED_LOGPROB_TEMPERATURE = 1.0
EMBEDDED_CONTEXT_TOKENS = 2048
# What serves a HF-checkpoint teacher when teacher.base_url is null; it returns no log-probs.
TRANSFORMERS_SERVE = "transformers-serve"


def served_teacher(teacher) -> WeightsSource:
    """Return the weights potstill serves when teacher.base_url is null; InputError when there are none."""
    return teacher_source(teacher, served=True)


def served_weights(endpoint: dict) -> str | None:
    """Return what identifies the weights potstill serves for a user's GGUF file or checkpoint (None otherwise).

    It keys the request cache (Sampling.weights): another file or checkpoint under the same
    teacher.model is asked again, not answered from the cache.
    """
    if endpoint["kind"] not in (TRANSFORMERS_SERVE, "llama.cpp"):
        return None
    return json.dumps({key: value for key, value in endpoint.items() if key != "logprob_temperature"}, sort_keys=True)


def start_endpoints(teacher, stack: contextlib.ExitStack, servers: int = 1,
                    ) -> tuple[list[str], list[str] | None, dict]:
    """Return (endpoint URLs, their labels for logs and metrics, the manifest's endpoint entry).

    With teacher.base_url null the teacher is served for as long as `stack` is open. A GGUF runs
    in `servers` llama.cpp processes that share the cores (one thread each on 2 cores): each
    serves one request at a time, so several keep every core busy on short requests. A HF
    checkpoint runs in one `transformers serve`, which batches concurrent requests itself.
    Requests keep carrying teacher.model, so cached answers and manifests do not name a machine path.
    """
    if teacher.base_url is not None:
        # OpenAI and vLLM (default logprobs mode) report logprobs of the unscaled model.
        return teacher.endpoints, None, {"kind": "openai-compatible", "logprob_temperature": 1.0}
    source = served_teacher(teacher)
    if source.kind in ("folder", "hub"):
        folder, pointer = locate(source, "teacher.weights")
        url = stack.enter_context(transformers_server(folder, device="auto", served_name=teacher.model))
        return [url], [TRANSFORMERS_SERVE], {
            "kind": TRANSFORMERS_SERVE, "weights": teacher.weights, "revision": pointer.get("revision"),
            "digests": pointer["digests"], "logprob_temperature": None}
    if source.kind == "gguf":
        gguf = gguf_file(source)
        record = {"kind": "llama.cpp", "gguf_file": source.where, "bytes": gguf.stat().st_size}
    else:
        gguf, version = find_teacher_gguf(teacher.gguf_package)
        record = {"kind": "embedded-llama.cpp", "package": teacher.gguf_package, "package_version": version}
    threads = max(1, (os.cpu_count() or 2) // 2 // servers)
    urls = [stack.enter_context(llama_cpp_server(
        gguf, teacher.model, n_threads=threads if servers > 1 else None,
        n_ctx=teacher.context_tokens or EMBEDDED_CONTEXT_TOKENS)) for _ in range(servers)]
    # Fixed labels: the ports are random and would make every metrics file differ.
    labels = ["embedded"] if servers == 1 else [f"embedded-{i + 1}" for i in range(servers)]
    return urls, labels, {**record, "logprob_temperature": EMBEDDED_LOGPROB_TEMPERATURE}
