"""Measure how varied a prompt set is: per-domain counts, distinct 3-gram ratio, near-duplicates.

    .venv/bin/python bench/prompt_diversity.py            # the shipped data/prompts.jsonl
    .venv/bin/python bench/prompt_diversity.py my_prompts.jsonl --out /tmp/diversity.json

Exits with status 1 when any pair of prompts is a near-duplicate (word 3-shingle Jaccard >= 0.5
by default), so it can guard a hand-edited prompt set in CI.
"""

import json
from pathlib import Path
from typing import Annotated

import typer

from potstill.teacher.diversity import diversity_report


def read_prompt_rows(path: Path) -> list[dict]:
    """Return the rows of a prompts JSONL file; stop with file:line and the fix on a bad line."""
    rows = []
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{where}: not valid JSON ({error}); write one object a line"
                ) from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise ValueError(
                    f'{where}: expected an object with a string "prompt", got {line.strip()[:80]!r}'
                )
            row.setdefault("id", f"line-{line_number}")
            rows.append(row)
    return rows


def format_report(report: dict) -> str:
    """Return the report as a plain-text table."""
    lines = [f"{'prompts':<24}{report['n_prompts']:>8}"]
    for domain, count in report["domains"].items():
        share = count / report["n_prompts"]
        lines.append(f"  {domain:<22}{count:>8}  {share:6.1%}")
    lines.append(f"{'distinct 3-gram ratio':<24}{report['distinct_3gram_ratio']:>8.4f}")
    threshold = report["near_duplicate_threshold"]
    lines.append(f"{f'near-duplicates >= {threshold}':<24}{report['near_duplicate_pairs']:>8}")
    for pair in report["near_duplicates"]:
        lines.append(f"  {pair['a']} ~ {pair['b']}  jaccard {pair['jaccard']:.2f}")
    return "\n".join(lines)


def main(
    prompts: Annotated[Path, typer.Argument(help="Prompts JSONL file.")] = Path(
        "data/prompts.jsonl"
    ),
    out: Annotated[Path | None, typer.Option(help="Also write the report here as JSON.")] = None,
    threshold: Annotated[
        float, typer.Option(help="Word 3-shingle Jaccard at or above which two prompts clash.")
    ] = 0.5,
) -> None:
    """Print the diversity report of a prompt set; exit 1 if it has near-duplicate prompts."""
    report = diversity_report(read_prompt_rows(prompts), threshold=threshold)
    typer.echo(format_report(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if report["near_duplicate_pairs"]:
        typer.echo(
            f"{prompts}: {report['near_duplicate_pairs']} near-duplicate pair(s); "
            "reword or drop one prompt of each pair listed above",
            err=True,
        )
        raise typer.Exit(code=1)


if __name__ == "__main__":
    typer.run(main)
