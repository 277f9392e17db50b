"""Train: LoRA (or full) on the student with the HF Trainer; loss = CE on teacher tokens + KD.

    python stages/train.py --params params.yaml --student models/student-base \
        --teacher models/teacher --curated data/curated --generated data/generated \
        --soft-targets data/soft-targets --out models/adapter

Distributed: `train.launcher: ddp | fsdp | deepspeed` makes this script re-run itself under
`accelerate launch --config_file configs/accelerate/<config>.yaml` (ddp without a GPU: 2 CPU
processes over gloo); the same command also works by hand:

    accelerate launch --config_file configs/accelerate/ddp_cpu.yaml stages/train.py --params ...

With onpolicy.steps > 0 an on-policy phase follows (potstill/distill/onpolicy.py): the student's
own samples, scored by the teacher; they are written to --rollouts for inspection.

Only the main process writes the adapter, the DVCLive metrics and removes the checkpoints.
Loss curves and the CE and KD terms (logged apart, so a mis-scaled KD term shows) go to
metrics/train through DVCLive. Checkpoints go to the state directory, keyed by params and inputs:
a run killed mid-way resumes from its last one on the next `dvc repro`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from potstill.cli import friendly_errors
from potstill.distill.run import accelerate_command, run_train
from potstill.params import load_params

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    student: Annotated[Path, typer.Option(help="student checkpoint")] = Path("models/student-base"),
    teacher: Annotated[Path, typer.Option(help="local teacher checkpoint (kd.source local)")] = Path("models/teacher"),
    curated: Annotated[Path, typer.Option(help="curate stage output")] = Path("data/curated"),
    generated: Annotated[Path, typer.Option(help="generate stage output")] = Path("data/generated"),
    soft_targets: Annotated[Path, typer.Option(help="score stage output")] = Path("data/soft-targets"),
    out: Annotated[Path, typer.Option(help="adapter output folder")] = Path("models/adapter"),
    live: Annotated[Path, typer.Option(help="DVCLive folder")] = Path("metrics/train"),
    rollouts: Annotated[Path | None, typer.Option(
        help="on-policy rollouts (JSONL; empty when the phase is off); not written if not given")] = None,
) -> None:
    """Distil the teacher into a LoRA adapter on the student."""
    launcher = load_params(params, "train")["train"].launcher
    # LOCAL_RANK is set by accelerate/torchrun: this process is already one of the launched ones.
    if launcher != "single" and "LOCAL_RANK" not in os.environ:
        script_args = ["--params", params, "--student", student, "--teacher", teacher, "--curated", curated,
                       "--generated", generated, "--soft-targets", soft_targets, "--out", out, "--live", live,
                       *(["--rollouts", rollouts] if rollouts else [])]
        command = accelerate_command(launcher, Path(__file__), [str(arg) for arg in script_args])
        typer.echo(f"train: {launcher}: {' '.join(command)}")
        raise SystemExit(subprocess.run(command).returncode)
    final = run_train(params, student, curated, generated, soft_targets, out, live, teacher, rollouts)
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"train: {final}")


if __name__ == "__main__":
    app()
