"""Curate stage at scale: rows/s, memory growth, bytes per row, near-duplicate precision/recall.

    .venv/bin/python bench/curate_bench.py                 # 10k and 100k rows
    .venv/bin/python bench/curate_bench.py --rows 10000    # one size

Run from the repository root (the shipped eval task YAMLs name their data files relative to it).
Each size runs the real stage function (`run_curate`: both streaming passes, decontamination
against the shipped tasks, files written) in a fresh subprocess on synthetic rows with planted
exact duplicates (case/whitespace changed) and near-duplicates (a few words substituted, inserted
or deleted, about one edit per 12 words, in prompt and reply alike). Hard negatives are planted
too: prompts asked twice with an independent reply, which share words but are not copies.
Memory: peak RSS over the RSS after imports and eval-item loading (growth), and, in a second
run under tracemalloc, the bytes still held per row by the curation state after the first pass.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXACT_SHARE, NEAR_SHARE, REASK_SHARE = 0.05, 0.10, 0.05
EDITS_PER_WORD = 1 / 12
DOMAINS = ("coding", "math", "science", "writing", "advice", "factual", "reasoning")


def vocabulary(rng: random.Random, size: int = 20000) -> list[str]:
    """Return `size` distinct pseudo-words built from syllables (a stand-in for English)."""
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "st", "er", "an", "in"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
    return sorted(words)


def text(rng: random.Random, vocab: list[str], weights: list[float], n_words: int) -> str:
    """Return `n_words` Zipf-distributed words as sentences (common words recur, as in prose)."""
    picked = rng.choices(vocab, weights=weights, k=n_words)
    sentences, i = [], 0
    while i < len(picked):
        length = rng.randint(6, 16)
        sentences.append(" ".join(picked[i:i + length]).capitalize() + ".")
        i += length
    return " ".join(sentences)


def edit(rng: random.Random, vocab: list[str], content: str) -> str:
    """Return `content` with about one word in 12 substituted, inserted or deleted (a paraphrase)."""
    tokens = content.split(" ")
    for _ in range(max(1, round(len(tokens) * EDITS_PER_WORD))):
        at = rng.randrange(len(tokens))
        kind = rng.choice(("sub", "ins", "del"))
        if kind == "sub":
            tokens[at] = rng.choice(vocab)
        elif kind == "ins":
            tokens.insert(at, rng.choice(vocab))
        elif len(tokens) > 3:
            del tokens[at]
    return " ".join(tokens)


def make_rows(n: int, seed: int = 0):
    """Yield (row, planted) for n synthetic rows; planted is None, ("exact", id) or ("near", id)."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    weights = [1 / (rank + 10) for rank in range(len(vocab))]
    originals: list[dict] = []
    for i in range(n):
        roll = rng.random()
        row_id = f"syn-{i:07d}"
        if originals and roll < EXACT_SHARE:
            source = rng.choice(originals)
            messages = [dict(m, content="  " + m["content"].upper() + " ") for m in source["messages"]]
            planted = ("exact", source["id"])
        elif originals and roll < EXACT_SHARE + NEAR_SHARE:
            source = rng.choice(originals)
            messages = [dict(m, content=edit(rng, vocab, m["content"])) for m in source["messages"]]
            planted = ("near", source["id"])
        else:
            reask = originals and roll < EXACT_SHARE + NEAR_SHARE + REASK_SHARE
            prompt = (rng.choice(originals)["messages"][0]["content"] if reask
                      else text(rng, vocab, weights, rng.randint(8, 20)))
            reply = text(rng, vocab, weights, min(400, int(rng.lognormvariate(3.6, 0.6)) + 8))
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
            planted = None
        row = {"id": row_id, "domain": DOMAINS[i % len(DOMAINS)], "messages": messages,
               "teacher": {"model": "synthetic"}, "usage": {}, "finish_reason": "stop"}
        if planted is None and len(originals) < 50000:
            originals.append(row)
        yield row, planted


def rss_bytes() -> int:
    """Return this process's current resident set size in bytes (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_bytes() -> int:
    """Return this process's peak resident set size in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def state_bytes(cur, items, responses: Path, n: int) -> dict:
    """Return bytes held per row after flagging n rows: Curator state (hashes, MinHash LSH) and kept ids.

    Mirrors stages/curate.flag_pass, but measures while the Curator is still alive.
    """
    import datasketch  # noqa: F401  (its import, scipy included, is not per-row state)

    from potstill.curate.curator import Curator
    from potstill.io import read_jsonl

    tracemalloc.start()
    curator = Curator(cur, items)
    empty = tracemalloc.get_traced_memory()[0]
    kept = []
    for line, row in read_jsonl(responses):
        if not curator.flag(row):
            kept.append({"line": line, "id": row["id"], "domain": row.get("domain", "general")})
    held = tracemalloc.get_traced_memory()[0] - empty
    del kept
    curator_only = tracemalloc.get_traced_memory()[0] - empty
    tracemalloc.stop()
    return {"state_bytes_per_row": round(held / n), "curator_bytes_per_row": round(curator_only / n),
            "near_dup_bands": curator.near.bands if curator.near else 0,
            "near_dup_rows_per_band": curator.near.rows_per_band if curator.near else 0}


def measure(n: int, work: Path, trace: bool, overrides: dict) -> dict:
    """Run the curate stage on n synthetic rows in this process; return speed, memory, accuracy."""
    import stages.curate as stage
    from potstill.params import load_params
    from potstill.tasks import eval_items

    generated, out = work / "generated", work / "curated"
    generated.mkdir(parents=True, exist_ok=True)
    planted: dict[str, tuple[str, str]] = {}
    with (generated / "responses.jsonl").open("w", encoding="utf-8") as handle:
        for row, plant in make_rows(n):
            handle.write(json.dumps(row) + "\n")
            if plant:
                planted[row["id"]] = plant
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["curate"].update(overrides)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    cur = load_params(work / "params.yaml", "curate")["curate"]
    items = list(eval_items(cur.decontam_task_dir, cur.decontam_tasks, "curate"))  # warm lm-eval
    figures: dict = {"rows": n, "eval_items": len(items), **overrides}
    baseline = rss_bytes()
    if trace:
        return {**figures, **state_bytes(cur, items, generated / "responses.jsonl", n)}
    start = time.perf_counter()
    result = stage.run_curate(work / "params.yaml", generated, out)
    seconds = time.perf_counter() - start
    flagged = {}
    with (out / "flagged.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            flagged[entry["id"]] = entry["reasons"]
    near_planted = {i for i, (kind, _) in planted.items() if kind == "near"}
    exact_planted = {i for i, (kind, _) in planted.items() if kind == "exact"}
    near_flagged = {i for i, why in flagged.items() if "near_duplicate" in why}
    exact_caught = {i for i in exact_planted if "duplicate" in flagged.get(i, ())}
    caught = {i for i in near_planted if {"near_duplicate", "duplicate"} & set(flagged.get(i, ()))}
    growth = peak_rss_bytes() - baseline
    return {
        **figures,
        "seconds": round(seconds, 1),
        "rows_per_s": round(n / seconds),
        "rss_baseline_mb": round(baseline / 2**20, 1),
        "rss_growth_mb": round(growth / 2**20, 1),
        "rss_growth_bytes_per_row": round(growth / n),
        "kept": result["kept"],
        "dropped": result["dropped"],
        "exact_planted": len(exact_planted),
        "exact_recall": round(len(exact_caught) / max(1, len(exact_planted)), 4),
        "near_planted": len(near_planted),
        "near_recall": round(len(caught) / max(1, len(near_planted)), 4),
        "near_precision": round(len(near_flagged & near_planted) / max(1, len(near_flagged)), 4),
        "false_drops_of_unplanted_rows": sum(1 for i in flagged if i not in planted),
    }


def main() -> None:
    """Run each size in a fresh interpreter (so peak RSS is per size) and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--trace-rows", type=int, default=10_000,
                        help="rows for the tracemalloc run (slower; 0 = skip)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override curate params, e.g. --set near_dup_threshold=0.7 shingle_size=3")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    if args.child:
        with tempfile.TemporaryDirectory(prefix="curate-bench-") as work:
            print(json.dumps(measure(args.child, Path(work), args.trace, overrides)))
        return
    runs = [(n, False) for n in args.rows] + ([(args.trace_rows, True)] if args.trace_rows else [])
    for n, trace in runs:
        cmd = [sys.executable, __file__, "--child", str(n), "--set", *args.set] + (["--trace"] if trace else [])
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"{n} rows failed:\n{proc.stderr[-3000:]}")
        print(json.dumps(json.loads(proc.stdout.strip().splitlines()[-1]), indent=None))


if __name__ == "__main__":
    main()
