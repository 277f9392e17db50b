"""Compare experiments in a table that fits a terminal: changed params and headline metrics, one row per run.

    make compare                              # every experiment of the workspace's baseline
    make compare PLOT=reports/compare.png     # and a PNG: loss curves and headline bars side by side
    .venv/bin/python tools/compare.py --model gguf-q8_0 --width 100
    dvc exp show --only-changed               # the full view, every column
    dvc plots diff EXP_A EXP_B                # DVC's own HTML plots (loads vega from a CDN: needs a network)

Reads `dvc exp show --json` (params.yaml and metrics/summary.json of each run); the table itself
is potstill.evaluation.compare.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from potstill.evaluation.compare import compare_plot, compare_table, flatten  # noqa: E402
from potstill.evaluation.report import read_curve  # noqa: E402

SUMMARY = "metrics/summary.json"
LOSS_CURVE = "metrics/train/plots/metrics/loss.tsv"


def loss_curve(rev: str) -> tuple[list[float], list[float]] | None:
    """Return a run's DVCLive train loss curve: from the workspace, or from the git commit of an experiment."""
    import tempfile

    if rev == "workspace":
        return read_curve(Path(LOSS_CURVE)) if Path(LOSS_CURVE).is_file() else None
    proc = subprocess.run(["git", "show", f"{rev}:{LOSS_CURVE}"], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as handle:
        handle.write(proc.stdout)
    return read_curve(Path(handle.name))


def runs(shown: list[dict]) -> list[dict]:
    """Return [{name, params, summary}] for the baselines and experiments of `dvc exp show --json`."""
    rows = []
    for baseline in shown:
        for entry in [baseline, *(baseline.get("experiments") or [])]:
            for revision in entry.get("revs", [entry]):
                data = revision.get("data") or {}
                params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
                summary = ((data.get("metrics") or {}).get(SUMMARY) or {}).get("data") or {}
                name = revision.get("name") or (revision.get("rev") or "")[:7] or "workspace"
                if params or summary:
                    rows.append({"name": name, "params": flatten(params), "summary": summary,
                                 "rev": revision.get("rev") or "workspace"})
    return rows


def main(model: Annotated[str, typer.Option(help="whose headline metrics: merged or a quantize.formats entry")]
         = "merged",
         width: Annotated[int, typer.Option(help="widest line")] = 120,
         plot: Annotated[Path | None, typer.Option(help="also draw a PNG of loss curves and headline bars")]
         = None) -> None:
    """Print experiments as rows, changed params and headline metrics as columns."""
    proc = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        typer.echo(f"error: dvc exp show failed: {proc.stderr.strip()}", err=True)
        raise typer.Exit(2)
    rows = runs(json.loads(proc.stdout))
    if not rows:
        typer.echo("no experiments with metrics yet: run `dvc repro` or `dvc exp run` first", err=True)
        raise typer.Exit(2)
    typer.echo(compare_table(rows, model, width))
    if plot is not None:
        curves = {row["name"]: curve for row in rows if (curve := loss_curve(row["rev"])) is not None}
        compare_plot(rows, curves, model, plot)
        typer.echo(f"compare: {plot}")


if __name__ == "__main__":
    typer.run(main)
