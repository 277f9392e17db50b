"""Load: the generate stage at concurrency 64 against a fast OpenAI-style server on loopback.

    python bench/load_bench.py                      # 3000 requests, concurrency 64
    python bench/load_bench.py --requests 500 --delay-s 0.05

The server is tests/fake_endpoint.py FakeOpenAI in its own process (so it does not share this
process's GIL, memory or file descriptors), answering after `--delay-s`. Side by side, in one run:
a bare `openai.AsyncOpenAI` loop holding `--concurrency` requests in flight (the ceiling), and
`stages/generate.py`'s `run_generate` (prompt file, cache, dispatcher, ledger, outputs: the
stage's code path) with generate.concurrency and teacher.max_concurrency_per_endpoint at the same
value. Each side runs a warm-up round first. It prints requests/s and their ratio, lost rows and
duplicate ids in responses.jsonl (both must be 0), and this process's open fds and RSS after the
warm-up and at the end (flat = no leak).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVER = """
import sys, time
sys.path.insert(0, "tests")  # the fake server is a test double: it lives with the tests
from fake_endpoint import FakeOpenAI
with FakeOpenAI(delay_s=float(sys.argv[1]), completion_tokens=4, max_handlers=256, lifetime_s=3600) as server:
    print(server.base_url, flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin
"""


def open_fds() -> int:
    """Return how many file descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


def rss_mib() -> float:
    """Return this process's resident set size now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def settled() -> tuple[int, float]:
    """Return (open fds, RSS MiB) after finished threads and sockets have had a moment to go."""
    gc.collect()
    time.sleep(0.3)
    gc.collect()
    return open_fds(), rss_mib()


async def bare_client(base_url: str, n: int, concurrency: int, tag: str) -> float:
    """Return the wall seconds a bare AsyncOpenAI loop takes for n requests, `concurrency` in flight."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=60)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with gate:
            reply = await client.chat.completions.create(
                model="teacher", messages=[{"role": "user", "content": f"{tag} question {i}"}],
                max_tokens=4, temperature=0.7, top_p=0.95, seed=0)
            return reply.choices[0].message.content

    started = time.perf_counter()
    answers = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - started
    await client.close()
    assert len(answers) == n and all(answers), "the bare client lost answers"
    return wall


def stage_run(work: Path, base_url: str, n: int, concurrency: int, tag: str) -> tuple[float, dict, list[str]]:
    """Return (wall seconds, stats, response ids) of run_generate answering n fresh prompts."""
    from stages.generate import run_generate

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["teacher"].update({"base_url": base_url, "max_tokens": 4, "logprobs": 0, "timeout_s": 60,
                              "max_concurrency_per_endpoint": concurrency, "max_retries": 3})
    params["generate"].update({"n_examples": 0, "concurrency": concurrency, "synthesize": 0, "reasoning": False})
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    prompts = work / f"{tag}.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"{tag}-{i}", "prompt": f"{tag} question {i}"}) + "\n"
                               for i in range(n)))
    out = work / f"{tag}-generated"
    started = time.perf_counter()
    stats = run_generate(work / "params.yaml", prompts, out, progress=False)
    wall = time.perf_counter() - started
    ids = [json.loads(line)["id"] for line in (out / "responses.jsonl").read_text().splitlines()]
    return wall, stats, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests in each measured run")
    parser.add_argument("--warmup", type=int, default=200, help="requests in each warm-up run")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--delay-s", type=float, default=0.02, help="the fake server's time per answer")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="potstill-load-"))
    os.environ["POTSTILL_STATE_DIR"] = str(work / "state")  # a fresh cache: every prompt is asked
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.delay_s)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        base_url = server.stdout.readline().strip()
        asyncio.run(bare_client(base_url, args.warmup, args.concurrency, "bare-warmup"))
        stage_run(work, base_url, args.warmup, args.concurrency, "stage-warmup")
        fds_warm, rss_warm = settled()
        bare_wall = asyncio.run(bare_client(base_url, args.requests, args.concurrency, "bare"))
        stage_wall, stats, ids = stage_run(work, base_url, args.requests, args.concurrency, "stage")
        fds_end, rss_end = settled()
    finally:
        server.stdin.close()
        server.wait(timeout=30)

    ledger = stats["ledger"]
    bare_rate, stage_rate = args.requests / bare_wall, args.requests / stage_wall
    print(f"load: {args.requests} requests, concurrency {args.concurrency}, fake server delay {args.delay_s}s, "
          f"{os.cpu_count()} CPUs")
    print(f"  bare AsyncOpenAI loop : {bare_wall:7.2f}s  {bare_rate:8.1f} req/s")
    print(f"  generate stage        : {stage_wall:7.2f}s  {stage_rate:8.1f} req/s  "
          f"(ratio {stage_rate / bare_rate:.2f}x the bare client)")
    print(f"  stage requests {ledger['requests']} (retries {ledger['retries']}, errors "
          f"{sum(ledger['errors'].values())}), rows {len(ids)}: lost rows {args.requests - len(set(ids))}, "
          f"duplicate ids {len(ids) - len(set(ids))}")
    print(f"  open fds: {fds_warm} after warm-up, {fds_end} at the end ({fds_end - fds_warm:+d})")
    print(f"  RSS: {rss_warm:.1f} MiB after warm-up, {rss_end:.1f} MiB at the end ({rss_end - rss_warm:+.1f} MiB)")


if __name__ == "__main__":
    main()
