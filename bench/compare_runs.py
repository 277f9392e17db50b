"""Compare the distilled students of two pipeline runs on the test prompts they share, paired.

Two runs with different data (the default and the `large` profile) have different test splits, so
their `reports/eval.md` figures are not comparable. With `curate.split: hash` a row's split is
fixed by its id, so the rows both runs hold are in the same split in both: their shared test
prompts are one held-out set both students were measured on. This script reads each run's own
evaluate records (the score cache in its state directory: nothing is re-measured, and it fails if
a run's `dvc repro` has not evaluated its current models) and reports, on the shared prompts:

- per run: KL(teacher || student) on the teacher's text, on-policy KL on the student's own greedy
  answers, degenerate share, answer length over the teacher's, each with a 95% bootstrap interval;
- B against A, paired: the on-policy KL ratio (paired bootstrap over the shared prompts), and
  `potstill_mc` accuracy (same items in both runs; gain with a 95% interval);
- with `--answers N`, the greedy answers of the teacher and both students to N shared prompts, as
  evaluate recorded them (stopped at end-of-turn, capped at `evaluate.max_answer_tokens`).

    .venv/bin/python bench/compare_runs.py . /path/to/large --state-b /path/to/large-state
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Annotated

import typer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from potstill.evaluation.gates import paired_gain  # noqa: E402
from potstill.evaluation.metrics import BOOTSTRAP_SAMPLES, bootstrap_interval  # noqa: E402
from potstill.io import read_jsonl  # noqa: E402

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def cached_records(project: Path, state: Path | None, models: tuple[str, ...] = ("teacher", "merged")) -> dict:
    """Return {model: evaluate's cached record} of a run, read from the score cache its evaluate wrote."""
    from potstill.evaluation.score_cache import ScoreCache
    from potstill.params import load_params
    from potstill.tasks import task_dirs, task_manager, task_specs

    here, saved = Path.cwd(), os.environ.get("POTSTILL_STATE_DIR")
    os.chdir(project)   # the run's params name its task folders relative to its root
    try:
        if state is not None:
            os.environ["POTSTILL_STATE_DIR"] = str(state)
        ev = load_params(Path("params.yaml"), "evaluate")["evaluate"]
        # The key evaluate's run_evaluate (potstill/evaluation/run.py) builds; the scoring code is in it,
        # so records made by other code are not found.
        cache = ScoreCache({"tasks": ev.tasks, "limit": ev.limit, "sample_prompts": ev.sample_prompts,
                            "new_tokens": ev.new_tokens, "max_answer_tokens": ev.max_answer_tokens},
                           task_dirs(ev.task_dir), Path("data/curated/test.jsonl"), reference=Path("models/teacher"),
                           task_specs=task_specs(task_manager(ev.task_dir, ev.tasks), ev.tasks))
        records = {name: cache.get(Path("models") / name) for name in models}
    finally:
        os.chdir(here)
        if saved is None:
            os.environ.pop("POTSTILL_STATE_DIR", None)
        else:
            os.environ["POTSTILL_STATE_DIR"] = saved
    missing = [name for name, record in records.items() if record is None]
    if missing:
        raise SystemExit(f"{project}: no evaluate record of {missing} for the current models and test split; "
                         f"run `dvc repro` there first (with POTSTILL_STATE_DIR={state} if it has its own)")
    return records


def test_ids(project: Path) -> list[str]:
    """Return the ids of a run's test rows, in file order (the order evaluate measured them in)."""
    return [row["id"] for _, row in read_jsonl(project / "data/curated/test.jsonl")]


def figures(record: dict, teacher: dict, picked: list[int]) -> dict:
    """Return a student's figures on the picked prompts (indexes into its test split), 95% intervals."""
    rows, onpolicy, answers = record["rows"], record["onpolicy_rows"], record["answers"]
    if not len(rows["kl"]) == len(onpolicy["kl"]) == len(answers) == len(teacher["answers"]):
        raise ValueError("a record's per-prompt lists differ in length: it was not made on this test split")

    def ratio(values, weights):
        top, bottom = [values[i] for i in picked], [weights[i] for i in picked]
        return sum(top) / sum(bottom), list(bootstrap_interval(top, bottom))

    ones = [1.0] * len(answers)
    out = {"prompts": len(picked)}
    for name, values, weights in (
            ("kl", rows["kl"], rows["tokens"]),
            ("onpolicy_kl", onpolicy["kl"], onpolicy["tokens"]),
            ("degenerate", [float(a["degenerate"]) for a in answers], ones),
            ("length_vs_teacher", [a["tokens"] for a in answers], [a["tokens"] for a in teacher["answers"]])):
        out[name], out[f"{name}_ci95"] = ratio(values, weights)
    return out


def paired_ratio_interval(a: tuple[list[float], list[float]], b: tuple[list[float], list[float]],
                          samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, list[float]]:
    """Return (sum b / sum b_w) / (sum a / sum a_w) and its 95% paired bootstrap interval.

    `a` and `b` = (per-prompt values, per-prompt weights) on the same prompts in the same order;
    each resample draws the same prompts for both.
    """
    (av, aw), (bv, bw) = a, b
    n = len(av)
    if not n == len(aw) == len(bv) == len(bw):
        raise ValueError("paired lists differ in length")

    def value(index):
        return (sum(bv[i] for i in index) / sum(bw[i] for i in index)) / (
            sum(av[i] for i in index) / sum(aw[i] for i in index))

    rng = random.Random(seed)
    draws = sorted(value([rng.randrange(n) for _ in range(n)]) for _ in range(samples))
    return value(range(n)), [draws[int(0.025 * samples)], draws[int(0.975 * samples) - 1]]


def compare(a: dict, b: dict, ids_a: list[str], ids_b: list[str]) -> dict:
    """Return both students' figures on their shared test prompts, and B against A paired.

    `a`, `b` = {model: evaluate record} with "teacher" and "merged"; `ids_*` = each run's test ids.
    """
    shared = sorted(set(ids_a) & set(ids_b))
    if not shared:
        raise ValueError("the runs share no test prompt: were both split by id hash (curate.split: hash)?")
    pick_a, pick_b = [ids_a.index(i) for i in shared], [ids_b.index(i) for i in shared]
    out = {"shared_prompts": len(shared), "test_prompts": [len(ids_a), len(ids_b)],
           "a": figures(a["merged"], a["teacher"], pick_a), "b": figures(b["merged"], b["teacher"], pick_b)}
    on_a, on_b = a["merged"]["onpolicy_rows"], b["merged"]["onpolicy_rows"]
    ratio, ci = paired_ratio_interval(([on_a["kl"][i] for i in pick_a], [on_a["tokens"][i] for i in pick_a]),
                                      ([on_b["kl"][i] for i in pick_b], [on_b["tokens"][i] for i in pick_b]))
    out["onpolicy_kl_b_over_a"], out["onpolicy_kl_b_over_a_ci95"] = ratio, ci
    teacher_a, merged_a, merged_b = a["teacher"]["answers"], a["merged"]["answers"], b["merged"]["answers"]
    out["answers"] = [{"id": i, "prompt": teacher_a[ia]["prompt"], "teacher": teacher_a[ia]["answer"],
                       "a": merged_a[ia]["answer"], "b": merged_b[ib]["answer"]}
                      for i, ia, ib in zip(shared, pick_a, pick_b, strict=True)]
    mc_a, mc_b = a["merged"]["items"]["potstill_mc"]["acc"], b["merged"]["items"]["potstill_mc"]["acc"]
    gain = paired_gain(mc_b, mc_a)
    out["potstill_mc"] = {"a": sum(mc_a) / len(mc_a), "b": sum(mc_b) / len(mc_b), **gain}
    return out


@app.command()
def main(a: Annotated[Path, typer.Argument(help="project A (e.g. the default run)")],
         b: Annotated[Path, typer.Argument(help="project B (e.g. a large-profile run)")],
         state_a: Annotated[Path | None, typer.Option(help="A's POTSTILL_STATE_DIR, if it has its own")] = None,
         state_b: Annotated[Path | None, typer.Option(help="B's POTSTILL_STATE_DIR, if it has its own")] = None,
         out: Annotated[Path | None, typer.Option(help="also write the figures here as JSON")] = None,
         answers: Annotated[int, typer.Option(help="print this many shared prompts' greedy answers side by side")] = 0,
         ) -> None:
    """Print both runs' students on their shared test prompts, and B against A, paired."""
    result = compare(cached_records(a, state_a), cached_records(b, state_b), test_ids(a), test_ids(b))
    if out is not None:
        out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"shared test prompts: {result['shared_prompts']} (A has {result['test_prompts'][0]}, "
          f"B {result['test_prompts'][1]})")
    print("| run | KL (teacher's text) | on-policy KL (own answers) | degenerate | length / teacher |")
    print("|---|---|---|---|---|")
    for name in ("a", "b"):
        row = result[name]
        print(f"| {name.upper()} | " + " | ".join(
            f"{row[k]:.3g} [{row[k + '_ci95'][0]:.3g}, {row[k + '_ci95'][1]:.3g}]"
            for k in ("kl", "onpolicy_kl", "degenerate", "length_vs_teacher")) + " |")
    ci = result["onpolicy_kl_b_over_a_ci95"]
    print(f"on-policy KL, B / A (paired): {result['onpolicy_kl_b_over_a']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
    mc = result["potstill_mc"]
    print(f"potstill_mc: A {mc['a']:.3f}, B {mc['b']:.3f}; B - A {mc['gain']:+.3f} "
          f"[{mc['ci_low']:+.3f}, {mc['ci_high']:+.3f}] over {mc['n']} paired items")
    if answers:
        print("\n| prompt | teacher | A | B |\n|---|---|---|---|")
        for row in result["answers"][:answers]:
            print("| " + " | ".join(" ".join(row[k].split()).replace("|", "\\|")
                                    for k in ("prompt", "teacher", "a", "b")) + " |")


if __name__ == "__main__":
    app()
