"""Report the on-policy arm chosen on val once on the test split, paired against the off-policy default.

`distill_grid.py run-onpolicy` measures every arm on val and never opens the test split. This script
is the one place a chosen arm meets test prompts. The choice is made here from the val rows alone,
by a rule fixed before the test is read (`choose`): the lowest on-policy KL among the arms whose
answers are within +-30% of the teacher's length (the issue's guard against shorter answers faking
it). The result file is written once: the script refuses to run when it exists.

Measured on the test prompts this run shares with the reference run (both split by id hash, so a
shared id is a test prompt of both), with the same code for every model: the off-policy default
(the target's reference, e.g. the default run's models/merged), the arm's start (this run's
models/merged) and the chosen arm. Per model: teacher-forced KL, on-policy KL on its own greedy
answers (stopped at end-of-turn, cut at 128 tokens as in the grid), degenerate share and answer
length against the teacher's, with 95% bootstrap intervals over the prompts; and, paired over the
same prompts, each model's on-policy KL over the reference's and the chosen arm's over its start.

    .venv/bin/python bench/report_chosen.py --path bench/results/onpolicy_large_val.jsonl \
        --reference /work/main/models/merged --shared-with /work/main/data/curated/test.jsonl \
        --out bench/results/onpolicy_large_test.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from compare_runs import paired_ratio_interval  # noqa: E402

from potstill.io import read_jsonl  # noqa: E402

MAX_NEW_TOKENS = 128      # as distill_grid.py's val answers
LENGTH_BAND = (0.7, 1.3)  # answer length over the teacher's: the issue's +-30%

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def choose(rows: list[dict]) -> dict | None:
    """Return the on-policy arm with the lowest val on-policy KL among those within the length band.

    `rows` are `run-onpolicy` rows; the starting student's row (no `onpolicy_steps`) is not an arm.
    None when no arm's answers are within +-30% of the teacher's length.
    """
    arms = [row for row in rows if row.get("onpolicy_steps") and row.get("lmbda", 0) > 0
            and LENGTH_BAND[0] <= row["length_vs_teacher"] <= LENGTH_BAND[1]]
    return min(arms, key=lambda row: row["onpolicy_kl"], default=None)


def shared_rows(test: Path, shared_with: Path) -> list[dict]:
    """Return this run's test rows whose ids are also in the reference run's test split, in file order."""
    theirs = {row["id"] for _, row in read_jsonl(shared_with)}
    rows = [row for _, row in read_jsonl(test) if row["id"] in theirs]
    if not rows:
        raise SystemExit(f"{test} and {shared_with} share no id: were both runs split by id hash (curate.split: hash)?")
    return rows


def teacher_references(teacher, tokenizer, rows: list[dict]) -> tuple:
    """Return (prompts, scored rows, teacher logits_fn, teacher log-probs, teacher greedy answers) of rows."""
    from potstill.evaluation.metrics import (
        answer_prompts,
        held_out_prompts,
        heldout_rows,
        hf_generate_fn,
        hf_logits_fn,
        teacher_logprobs,
    )

    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "shared.jsonl"
        split.write_text("".join(json.dumps(row) + "\n" for row in rows))
        prompts, scored = held_out_prompts(tokenizer, split), heldout_rows(tokenizer, split)
    logits = hf_logits_fn(teacher)
    answers = answer_prompts(hf_generate_fn(teacher, tokenizer), tokenizer, prompts, MAX_NEW_TOKENS)
    return prompts, scored, logits, teacher_logprobs(logits, scored), answers


def measure(model, tokenizer, references) -> dict:
    """Return per-prompt KL, on-policy KL and answers of one model on the shared test prompts."""
    from potstill.evaluation.metrics import answer_record, intervals

    record = answer_record(model, tokenizer, references, MAX_NEW_TOKENS)
    if len(record["onpolicy_rows"]["kl"]) != len(references[0]):
        raise SystemExit("an empty greedy answer: the on-policy rows no longer pair with the prompts")
    return {"kl": record["kl_vs_teacher"], "onpolicy_kl": record["onpolicy_kl"],
            "degenerate": record["degenerate_share"], "length_vs_teacher": record["length_vs_teacher"],
            "ci95": intervals(record), "rows": record["rows"], "onpolicy_rows": record["onpolicy_rows"],
            "answers": [a["answer"] for a in record["answers"]]}


def paired(a: dict, b: dict) -> dict:
    """Return b's on-policy KL over a's on the same prompts, with its paired 95% interval."""
    ratio, ci = paired_ratio_interval((a["onpolicy_rows"]["kl"], a["onpolicy_rows"]["tokens"]),
                                      (b["onpolicy_rows"]["kl"], b["onpolicy_rows"]["tokens"]))
    return {"ratio": ratio, "ci95": ci}


@app.command()
def main(path: Annotated[Path, typer.Option(help="the val rows of `distill_grid.py run-onpolicy`")],
         reference: Annotated[Path, typer.Option(help="the off-policy default's model (the target's reference)")],
         shared_with: Annotated[Path, typer.Option(help="the reference run's test split (data/curated/test.jsonl)")],
         out: Annotated[Path, typer.Option(help="the result, written once")]) -> None:
    """Measure the arm chosen on val once on the shared test prompts, beside its start and the reference."""
    from transformers import AutoTokenizer

    from potstill.models import load_checked

    if out.exists():
        raise SystemExit(f"{out} exists: the test split is reported once (delete it only if the measure changed)")
    chosen = choose([row for _, row in read_jsonl(path)])
    if chosen is None:
        raise SystemExit(f"{path}: no on-policy arm answers within +-30% of the teacher's length; nothing to report")
    print(f"chosen on val: {chosen['key']} ({chosen['arm']}), on-policy KL {chosen['onpolicy_kl']:.3f}, "
          f"length x{chosen['length_vs_teacher']:.2f}", flush=True)
    rows = shared_rows(ROOT / "data/curated/test.jsonl", shared_with)
    tokenizer = AutoTokenizer.from_pretrained(ROOT / "models/teacher")
    references = teacher_references(load_checked(ROOT / "models/teacher"), tokenizer, rows)
    teacher_answers = references[-1]
    models = {"reference": reference, "start": ROOT / "models/merged",
              "chosen": ROOT / "bench/results/grid" / chosen["key"] / "adapter"}
    figures = {}
    for name, folder in models.items():
        print(f"{name}: {folder}", flush=True)
        figures[name] = measure(load_checked(folder), tokenizer, references)
    result = {"chosen": {k: chosen[k] for k in ("key", "arm", "onpolicy_kl", "length_vs_teacher")},
              "shared_prompts": len(rows), "ids": [row["id"] for row in rows],
              "models": {name: str(folder) for name, folder in models.items()}, **figures,
              "teacher_answers": [a["answer"] for a in teacher_answers],
              "start_over_reference": paired(figures["reference"], figures["start"]),
              "chosen_over_reference": paired(figures["reference"], figures["chosen"]),
              "chosen_over_start": paired(figures["start"], figures["chosen"])}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")

    print(f"\n{len(rows)} shared test prompts\n| model | KL | on-policy KL | degenerate | length / teacher |")
    print("|---|---|---|---|---|")
    for name in models:
        row, ci = figures[name], figures[name]["ci95"]
        print(f"| {name} | {row['kl']:.3g} {ci['kl_vs_teacher']} | {row['onpolicy_kl']:.3g} {ci['onpolicy_kl']} | "
              f"{row['degenerate']:.0%} {ci['degenerate_share']} | {row['length_vs_teacher']:.2f} |")
    for name in ("start_over_reference", "chosen_over_reference", "chosen_over_start"):
        low, high = result[name]["ci95"]
        print(f"on-policy KL, {name.replace('_', ' ')} (paired): {result[name]['ratio']:.3f} [{low:.3f}, {high:.3f}]")


if __name__ == "__main__":
    app()
