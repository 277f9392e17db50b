"""Teacher throughput side by side: a naive loop, a bare concurrent client, and potstill's generate.

    .venv/bin/python bench/generate_bench.py           # llama.cpp (12 prompts) + transformers serve (32 prompts)
    .venv/bin/python bench/generate_bench.py --fake    # and a fake fast server (the client's own overhead)
    .venv/bin/python bench/generate_bench.py --servers 1 2 --prompts 40   # generate with 1 vs 2 llama.cpp servers

The transformers side serves models/teacher (the teacher as a safetensors checkpoint, made by
`dvc repro prepare`) with `transformers serve --continuous-batching` on the CPU.

Prints completion tokens/s for, on the same prompts and sampling params:
  naive     one request after another with time.sleep(0.5) between them (the hand-written loop)
  bare      the openai client in `concurrency` threads: no retries, cache, pacing or ledger
  generate  potstill.teacher.generate through the dispatcher (retries, pacing, budget, ledger)
            with a fresh, empty cache, so every prompt is really asked
against the embedded llama.cpp server (one request at a time, as it serves them), against
`transformers serve --continuous-batching` (a concurrent server that batches requests in flight,
the loopback stand-in for vLLM) at --serve-concurrency, and with --fake also against an
in-process fake server that answers after --fake-delay-s (where the client's own overhead shows).
Run from the repository root; timings move with other load on the machine, so compare rows of
one run only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fake server lives with the tests

from fake_endpoint import FakeOpenAI

from potstill.models import find_teacher_gguf
from potstill.params import load_params
from potstill.teacher.cache import ResponseCache
from potstill.teacher.client import Sampling, make_client
from potstill.teacher.dispatch import build_dispatcher
from potstill.teacher.endpoints import start_endpoints
from potstill.teacher.generate import generate
from potstill.teacher.ledger import Ledger
from potstill.teacher.prompts import build_messages, load_prompts
from potstill.teacher.server import llama_cpp_server, transformers_server

NAIVE_PAUSE_S = 0.5


def create(client, messages: list[dict], sampling: Sampling) -> int:
    """Send one chat completion; return its completion tokens."""
    reply = client.chat.completions.create(
        model=sampling.model, messages=messages, temperature=sampling.temperature, top_p=sampling.top_p,
        max_tokens=sampling.max_tokens, seed=sampling.seed, stream=False)
    return reply.usage.completion_tokens


def naive(url: str, all_messages: list[list[dict]], sampling: Sampling, concurrency: int) -> tuple[int, float]:
    """Return (completion tokens, wall seconds) of a sequential loop that sleeps between requests."""
    client = make_client(url, None, 120)
    started, tokens = time.monotonic(), 0
    for i, messages in enumerate(all_messages):
        if i:
            time.sleep(NAIVE_PAUSE_S)
        tokens += create(client, messages, sampling)
    return tokens, time.monotonic() - started


def bare(url: str, all_messages: list[list[dict]], sampling: Sampling, concurrency: int) -> tuple[int, float]:
    """Return (completion tokens, wall seconds) of the bare client in `concurrency` threads."""
    client = make_client(url, None, 120)
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(lambda messages: create(client, messages, sampling), all_messages))
    return tokens, time.monotonic() - started


def machinery(url: str, rows: list[dict], sampling: Sampling, concurrency: int, teacher, system) -> tuple[int, float]:
    """Return (completion tokens, wall seconds) of potstill's generate with an empty cache."""
    tokens, wall, _ = generate_run([url], None, rows, sampling, concurrency, concurrency, teacher, system)
    return tokens, wall


def generate_run(urls: list[str], labels: list[str] | None, rows: list[dict], sampling: Sampling, concurrency: int,
                 per_endpoint: int, teacher, system) -> tuple[int, float, list[str]]:
    """Return (completion tokens, wall seconds, answers) of potstill's generate over `urls`, empty cache."""
    teacher = teacher.model_copy(update={"max_concurrency_per_endpoint": per_endpoint, "api_key_env": None})
    dispatcher = build_dispatcher(urls, teacher, sampling, Ledger(), labels)
    with tempfile.TemporaryDirectory() as cache_dir:
        started = time.monotonic()
        results, stats = generate(rows, dispatcher, sampling, ResponseCache(Path(cache_dir)), concurrency=concurrency,
                                  progress=False, default_system=system, ledger=dispatcher.ledger,
                                  cancel=dispatcher.cancel)
        wall = time.monotonic() - started
    assert stats["requested"] == len(rows), stats
    return stats["ledger"]["completion_tokens"], wall, [item["record"]["content"] for item in results]


def compare(name: str, url: str, rows: list[dict], sampling: Sampling, concurrency: int, teacher, system) -> None:
    """Print one table: each client's completion tokens/s against the server at `url`."""
    all_messages = [build_messages(row, system) for row in rows]
    create(make_client(url, None, 120), all_messages[0], sampling)  # warm-up: load, first-prompt cost
    print(f"\n{name}: {len(rows)} prompts, max_tokens {sampling.max_tokens}, concurrency {concurrency}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  {'client':<10}{'tokens':>8}{'wall s':>9}{'tok/s':>9}{'x naive':>9}{'x bare':>8}")
    rates: dict[str, float] = {}
    for label, run in (("naive", lambda: naive(url, all_messages, sampling, concurrency)),
                       ("bare", lambda: bare(url, all_messages, sampling, concurrency)),
                       ("generate", lambda: machinery(url, rows, sampling, concurrency, teacher, system))):
        tokens, wall = run()
        rates[label] = rate = tokens / wall
        versus_bare = f"{rate / rates['bare']:>8.2f}" if "bare" in rates else ""
        print(f"  {label:<10}{tokens:>8}{wall:>9.2f}{rate:>9.1f}{rate / rates['naive']:>9.2f}{versus_bare}")


def servers(teacher, rows: list[dict], sampling: Sampling, system, counts: list[int]) -> None:
    """Print generate's tokens/s with 1, 2... embedded llama.cpp servers side by side, same prompts.

    The generate stage's own path (start_endpoints, the dispatcher, an empty cache) at concurrency =
    servers; answers must come out identical (the seed is per request, each server has one thread),
    or the teacher cache would depend on the server count.
    """
    print(f"\ngenerate.teacher_servers: {len(rows)} prompts, max_tokens {sampling.max_tokens}, "
          f"logprobs {sampling.logprobs}, load average {os.getloadavg()[0]:.1f}")
    print(f"  {'servers':<10}{'tokens':>8}{'wall s':>9}{'tok/s':>9}{'x 1':>8}  answers")
    first: tuple[float, list[str]] | None = None
    for count in counts:
        with contextlib.ExitStack() as stack:
            urls, labels, _ = start_endpoints(teacher, stack, servers=count)
            for url in urls:   # warm-up: load, first-prompt cost
                create(make_client(url, None, 120), build_messages(rows[0], system), sampling)
            tokens, wall, answers = generate_run(urls, labels, rows, sampling, count, 1, teacher, system)
        rate = tokens / wall
        first = first or (rate, answers)
        same = sum(a == b for a, b in zip(answers, first[1], strict=True))
        print(f"  {count:<10}{tokens:>8}{wall:>9.1f}{rate:>9.1f}{rate / first[0]:>8.2f}  {same}/{len(rows)} as with 1",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prompts", type=int, default=12, help="prompts taken from data/prompts.jsonl")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--fake", action="store_true", help="also bench against a fake fast server")
    parser.add_argument("--fake-concurrency", type=int, default=8)
    parser.add_argument("--fake-delay-s", type=float, default=0.05, help="the fake server's time per request")
    parser.add_argument("--no-llama", action="store_true", help="skip the embedded llama.cpp server")
    parser.add_argument("--no-serve", action="store_true", help="skip the transformers serve server")
    parser.add_argument("--serve-model", default="models/teacher", help="checkpoint for transformers serve")
    parser.add_argument("--serve-prompts", type=int, default=32)
    parser.add_argument("--serve-concurrency", type=int, default=32)
    parser.add_argument("--servers", type=int, nargs="*", default=None,
                        help="only compare generate with these numbers of llama.cpp servers (e.g. 1 2), "
                             "at the run's own max_tokens and logprobs")
    args = parser.parse_args()

    params = load_params(args.params, "teacher", "generate")
    teacher, gen = params["teacher"], params["generate"]
    sampling = Sampling(model=teacher.model, temperature=teacher.temperature, top_p=teacher.top_p,
                        max_tokens=args.max_tokens, logprobs=0, seed=gen.seed)
    rows = load_prompts("data/prompts.jsonl", limit=args.prompts)
    if args.servers:
        real = replace(sampling, max_tokens=teacher.max_tokens, logprobs=teacher.logprobs)
        servers(teacher, rows, real, gen.system_prompt, args.servers)
        return
    if not args.no_serve:
        model_dir = Path(args.serve_model)
        if not (model_dir / "config.json").exists():
            parser.error(f"{model_dir} has no config.json: run `dvc repro prepare` first, or pass --serve-model")
        served = replace(sampling, model=str(model_dir))  # transformers serve names it by path
        with transformers_server(model_dir) as url:
            compare("transformers serve --continuous-batching (CPU)", url,
                    load_prompts("data/prompts.jsonl", limit=args.serve_prompts), served, args.serve_concurrency,
                    teacher.model_copy(update={"model": str(model_dir)}), gen.system_prompt)
    if not args.no_llama:
        gguf, _ = find_teacher_gguf(teacher.gguf_package)
        with llama_cpp_server(gguf, teacher.model) as url:
            compare("embedded llama.cpp (serves one request at a time)", url, rows, sampling, 1, teacher,
                    gen.system_prompt)
    if args.fake:
        with FakeOpenAI(delay_s=args.fake_delay_s, completion_tokens=args.max_tokens, model=teacher.model) as fake:
            compare(f"fake server ({args.fake_delay_s * 1000:.0f} ms a request)", fake.base_url, rows, sampling,
                    args.fake_concurrency, teacher, gen.system_prompt)


if __name__ == "__main__":
    main()
