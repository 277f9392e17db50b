"""Curate: flag bad, duplicate and contaminated responses; split the rest train/val/test; report why.

    python stages/curate.py --params params.yaml --generated data/generated --out data/curated

Two streaming passes over responses.jsonl, so memory stays flat however many rows there are:
the first flags every row (writing flagged.jsonl as it goes) and keeps only id and domain of the
kept ones; the split is decided from those; the second pass copies each kept row to its split.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from potstill.cli import friendly_errors
from potstill.curate.curator import Curator
from potstill.curate.report import CurationReport, report_markdown, size_warning
from potstill.curate.split import split_rows
from potstill.errors import InputError
from potstill.io import jsonl_writer, read_jsonl, write_json, write_text_atomic
from potstill.params import CurateParams, load_params
from potstill.tasks import eval_items

SPLITS = ("train", "val", "test")


def check_row(row: dict, path: Path, line: int, seen_ids: set[str]) -> None:
    """Raise InputError naming file:line when a row lacks what curation reads or reuses an id."""
    messages = row.get("messages")
    if not isinstance(row.get("id"), str) or not row["id"]:
        raise InputError(f"{path}:{line}: missing string \"id\"; rerun the generate stage")
    if (not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages)
            or not all(isinstance(m.get("content"), str) for m in messages)):
        raise InputError(f"{path}:{line}: \"messages\" must be a non-empty list of "
                         "{\"role\", \"content\"} objects; rerun the generate stage")
    if row["id"] in seen_ids:
        raise InputError(f"{path}:{line}: id {row['id']!r} appears twice; ids key the sidecars, "
                         "so each must be unique (check the prompts file)")


def flag_pass(cur: CurateParams, responses: Path, out_dir: Path, report: CurationReport) -> tuple[list[dict], list]:
    """Flag every row, writing flagged.jsonl as it goes; return ({line, id, domain} of the kept rows, near misses)."""
    items = eval_items(cur.decontam_task_dir, cur.decontam_tasks, "curate") if cur.decontam_tasks else ()
    curator = Curator(cur, items)
    kept: list[dict] = []
    seen_ids: set[str] = set()
    with jsonl_writer(out_dir / "flagged.jsonl") as write_flagged:
        for line, row in read_jsonl(responses):
            check_row(row, responses, line, seen_ids)
            seen_ids.add(row["id"])
            why = curator.flag(row)
            report.add(row, why)
            if why:
                write_flagged({"id": row["id"], "reasons": list(why), "details": why})
            else:
                kept.append({"line": line, "id": row["id"], "domain": row.get("domain", "general")})
    kept_ids = {row["id"] for row in kept}
    return kept, [miss for miss in curator.near_misses if miss["id"] in kept_ids]


def copy_pass(responses: Path, out_dir: Path, split_of_line: dict[int, str]) -> None:
    """Copy each kept row, unchanged and in file order, to the split file it was assigned to."""
    with contextlib.ExitStack() as stack:
        writers = {name: stack.enter_context(jsonl_writer(out_dir / f"{name}.jsonl")) for name in SPLITS}
        for line, row in read_jsonl(responses):
            if line in split_of_line:
                writers[split_of_line[line]](row)


def run_curate(params_path: Path, generated: Path, out_dir: Path) -> dict:
    """Flag, filter and split the generated rows; write splits, flags and report; return the figures."""
    cur = load_params(params_path, "curate")["curate"]
    responses = generated / "responses.jsonl"
    report = CurationReport()
    kept, near_misses = flag_pass(cur, responses, out_dir, report)
    if report.rows_in == 0:
        raise InputError(f"{responses}: no rows; rerun the generate stage")
    split = split_rows(kept, cur.val_fraction, cur.test_fraction, cur.seed, cur.split)
    warning = size_warning(len(kept))
    figures = report.figures({name: len(split[name]) for name in SPLITS}, [warning] if warning else [], near_misses)
    write_text_atomic(out_dir / "report.md", report_markdown(figures))
    if len(kept) < cur.min_examples:
        raise InputError(f"curate.min_examples: only {len(kept)} rows kept of {report.rows_in} "
                         f"(< {cur.min_examples}); see {out_dir / 'report.md'} for why rows went, then "
                         "generate more (generate.n_examples), loosen the filters, or lower "
                         "curate.min_examples in params.yaml (0 = warn only)")
    copy_pass(responses, out_dir, {r["line"]: name for name in SPLITS for r in split[name]})
    return figures


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    generated: Annotated[Path, typer.Option(help="generate stage output folder")] = Path("data/generated"),
    out: Annotated[Path, typer.Option(help="output folder")] = Path("data/curated"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/curate.json"),
) -> None:
    """Curate the generated rows into train/val/test splits."""
    figures = run_curate(params, generated, out)
    write_json(metrics, figures)
    for warning in figures["warnings"]:
        typer.echo(f"curate: warning: {warning}", err=True)
    typer.echo(f"curate: {figures['rows_in']} in, {figures['kept']} kept, dropped {figures['dropped']}")


if __name__ == "__main__":
    app()
