"""Typed, validated view of params.yaml: one pydantic model per section.

params.yaml is the one source of defaults: every knob is stated there, with its reason, and these
models hold no default of their own (only the optional bounds of a gate, which are structure, not
knobs). Each stage calls `load_params(path, "teacher", "generate", ...)` before it touches any
output, so a typo or an out-of-range value stops the stage at once with a message that names the
key, the value and what is allowed. Named profiles (configs/profiles/, potstill.profiles) change
params.yaml itself, so a stage never needs to know which profile is on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from potstill.errors import ParamsError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenPrice(_Section):
    prompt: float = Field(ge=0)  # dollars per 1,000 prompt tokens
    completion: float = Field(ge=0)  # dollars per 1,000 completion tokens


class TeacherParams(_Section):
    base_url: str | list[str] | None
    model: str = Field(min_length=1)
    api_key_env: str | None
    weights: str = Field(min_length=1)
    revision: str | None
    gguf_package: str
    gguf_version: str
    temperature: float = Field(ge=0.0, le=2.0)
    top_p: float = Field(gt=0.0, le=1.0)
    max_tokens: int = Field(ge=1, le=32768)
    logprobs: int = Field(ge=0, le=20)
    timeout_s: float = Field(gt=0)
    max_concurrency_per_endpoint: int = Field(ge=1, le=256)
    max_retries: int = Field(ge=0, le=100)
    backoff_base_s: float = Field(ge=0.0, le=600)
    backoff_max_s: float = Field(ge=0.0, le=3600)
    rpm: float | None = Field(gt=0)
    tpm: float | None = Field(gt=0)
    price_per_1k_tokens: Annotated[float, Field(ge=0)] | TokenPrice | None
    max_cost: float | None = Field(gt=0)
    max_tokens_total: int | None = Field(ge=1)
    max_prompt_chars: int | None = Field(ge=1)
    context_tokens: int | None = Field(ge=16)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | list[str] | None) -> str | list[str] | None:
        urls = [value] if isinstance(value, str) else (value or [])
        if isinstance(value, list) and not value:
            raise ValueError("an empty list; give one URL, a list of URLs, or null for the embedded teacher")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} must start with http:// or https:// (or be null for the embedded teacher)")
        if len(set(urls)) != len(urls):
            raise ValueError("lists the same URL twice; list each endpoint once")
        return value

    @field_validator("max_cost")
    @classmethod
    def _cost_needs_price(cls, value: float | None, info) -> float | None:
        if value is not None and info.data.get("price_per_1k_tokens") is None:
            raise ValueError("needs teacher.price_per_1k_tokens (dollars per 1,000 tokens) to count cost; set it")
        return value

    @model_validator(mode="after")
    def _known_weights(self) -> TeacherParams:
        _weights_source(self.weights, self.revision, "teacher.weights", ("embedded", "folder", "hub", "gguf", "none"))
        return self

    @property
    def endpoints(self) -> list[str] | None:
        """Return the endpoint URLs as a list, None for the embedded teacher."""
        return [self.base_url] if isinstance(self.base_url, str) else self.base_url


def _weights_source(value: str, revision: str | None, key: str, allowed: tuple[str, ...]) -> None:
    from potstill.errors import InputError
    from potstill.weights import WeightsSource

    try:
        source = WeightsSource.parse(value, revision, key)
    except InputError as exc:
        raise ValueError(str(exc)) from None
    if source.kind not in allowed:
        raise ValueError(f"{key}: {value!r} is not allowed here; use {', '.join(allowed)}")


class StudentParams(_Section):
    source: str = Field(min_length=1)
    revision: str | None
    keep_layers: list[int] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_source(self) -> StudentParams:
        _weights_source(self.source, self.revision, "student.source", ("prune", "folder", "hub"))
        return self

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
    system_prompt: str | None
    concurrency: int = Field(ge=1, le=256)
    teacher_servers: int = Field(ge=1, le=16)
    seed: int
    on_bad_prompt: Literal["error", "skip"]
    reasoning: bool
    reasoning_instruction: str = Field(min_length=1)
    synthesize: int = Field(ge=0)
    synthesis_instruction: str = Field(min_length=1)
    synthesis_per_request: int = Field(ge=1, le=50)
    synthesis_examples: int = Field(ge=0, le=20)
    synthesis_max_chars: int = Field(ge=10)
    synthesis_near_dup_threshold: float = Field(gt=0.0, le=1.0)

    @field_validator("synthesis_instruction")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            value.format(n=5, domain="math", examples="- an example")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"not a usable template ({type(exc).__name__}: {exc}); use only the placeholders "
                             "{n}, {domain} and {examples}, and write a literal brace as {{ or }}") from None
        return value


class CurateParams(_Section):
    min_response_chars: int = Field(ge=0)
    max_response_chars: int | None = Field(ge=1)
    drop_truncated: bool
    drop_refusals: bool
    max_repeated_ngram_ratio: float | None = Field(ge=0.0, lt=1.0)
    drop_encoding_junk: bool
    min_alnum_share: float = Field(ge=0.0, le=1.0)
    drop_endpoint_errors: bool
    check_answers: bool
    near_dup_threshold: float | None = Field(ge=0.5, le=1.0)
    num_perm: int = Field(ge=16, le=1024)
    shingle_size: int = Field(ge=1, le=16)
    decontam_tasks: list[str]
    decontam_task_dir: str | list[str] = Field(min_length=1)
    decontam_ngram: int = Field(ge=3, le=50)
    decontam_threshold: float = Field(ge=0.0, lt=1.0)
    decontam_key_words: bool
    min_examples: int = Field(ge=0)
    val_fraction: float = Field(ge=0.0, lt=0.5)
    test_fraction: float = Field(ge=0.0, lt=0.5)
    split: Literal["stratified", "hash"]
    seed: int

    @model_validator(mode="after")
    def _length_bounds(self) -> CurateParams:
        if self.max_response_chars is not None and self.max_response_chars <= self.min_response_chars:
            raise ValueError(f"max_response_chars ({self.max_response_chars}) must exceed min_response_chars "
                             f"({self.min_response_chars}); or set it to null to turn the check off")
        return self


class KDParams(_Section):
    source: Literal["local", "api", "none"]
    top_k: int = Field(ge=1, le=1024)
    score_batch_size: int = Field(ge=1)
    alpha: float = Field(ge=0.0, le=1.0)
    temperature: float = Field(gt=0.0, le=20.0)
    tail: Literal["bucket", "renorm"]
    loss: Literal["forward_kl", "reverse_kl", "jsd"]
    jsd_beta: float = Field(gt=0.0, lt=1.0)
    hidden_weight: float = Field(ge=0.0)
    hidden_loss: Literal["cosine", "mse"]
    hidden_layer_map: dict[int, int] | None
    chunk_rows: int = Field(ge=1)

    @model_validator(mode="after")
    def _hidden_needs_local_teacher(self) -> KDParams:
        if self.hidden_weight > 0 and self.source != "local":
            raise ValueError(f"hidden_weight ({self.hidden_weight}) needs kd.source: local (the teacher checkpoint "
                             f"runs during training), not {self.source!r}; or set kd.hidden_weight: 0")
        return self


class TrainParams(_Section):
    method: Literal["lora", "full"]
    max_steps: int = Field(ge=0)
    learning_rate: float = Field(gt=0.0, le=1.0)
    batch_size: int = Field(ge=1)
    grad_accum: int = Field(ge=1)
    max_seq_len: int = Field(ge=16)
    warmup_steps: int = Field(ge=0)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"]
    group_by_length: bool
    save_steps: int = Field(ge=1)
    select_best: bool
    logging_steps: int = Field(ge=1)
    seed: int
    launcher: Literal["single", "ddp", "fsdp", "deepspeed"]


class OnPolicyParams(_Section):
    steps: int = Field(ge=0)
    lmbda: float = Field(ge=0.0, le=1.0)
    loss: Literal["reverse_kl", "jsd", "forward_kl"]
    beta: float = Field(gt=0.0, lt=1.0)
    resample_every: int = Field(ge=1)
    max_new_tokens: int = Field(ge=1)
    sample_temperature: float = Field(ge=0.0, le=2.0)
    learning_rate: float = Field(gt=0.0, le=1.0)
    warmup_steps: int = Field(ge=0)
    scorer: Literal["local", "api"]
    top_k: int = Field(ge=1, le=1024)
    rollout_batch_size: int = Field(ge=1)


class LoraParams(_Section):
    r: int = Field(ge=1, le=1024)
    alpha: float = Field(gt=0)
    dropout: float = Field(ge=0.0, lt=1.0)
    target_modules: str | list[str]


QUANTIZE_FORMATS = ("quanto-int8", "quanto-int4", "torchao-int8", "gguf-f16", "gguf-q8_0",
                    "gguf-q8_0-gptq", "gguf-q4_k_m")


class QuantizeParams(_Section):
    formats: list[str] = Field(min_length=1)

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in QUANTIZE_FORMATS]
        if unknown:
            raise ValueError(f"unknown format(s) {unknown}; allowed: {', '.join(QUANTIZE_FORMATS)}")
        if len(set(value)) != len(value):
            raise ValueError("lists a format twice; list each once")
        return value


class GateParams(_Section):
    """One gate: `metric` of `model`, alone (min/max) or against `reference`.

    Its optional fields are structure, not knobs: a gate uses exactly one bound.
    """

    name: str = Field(min_length=1)
    # e.g. potstill_mc.acc, heldout_nll, kl_vs_teacher, degenerate_share, top1_vs_reference, kl_gap_closed
    metric: str = Field(min_length=1)
    model: str = Field(min_length=1)
    reference: str | None = None
    min_ratio: float | None = Field(default=None, gt=0)
    min_gain: float | None = None
    min: float | None = None
    max: float | None = None
    max_abs_diff: float | None = Field(default=None, ge=0)
    warn_only: bool = False  # a known shortfall: reported as a warning, never fails the stage
    lora_only: bool = False  # meaningful only with train.method lora (merge_exact)

    @model_validator(mode="after")
    def _one_bound_and_its_reference(self) -> GateParams:
        bounds = [key for key in ("min_ratio", "min_gain", "min", "max", "max_abs_diff")
                  if getattr(self, key) is not None]
        if len(bounds) != 1:
            raise ValueError(f"gate {self.name!r} needs exactly one of min_ratio, min_gain, min, max, max_abs_diff; "
                             f"got {bounds}")
        needs_reference = (bounds[0] in ("min_ratio", "min_gain", "max_abs_diff")
                           or self.metric in ("top1_vs_reference", "kl_gap_closed"))
        if needs_reference and not self.reference:
            raise ValueError(f"gate {self.name!r}: {bounds[0]} / {self.metric} compares with a reference model; "
                             "set reference (e.g. merged, or student_base for kl_gap_closed)")
        return self


class EvaluateParams(_Section):
    tasks: list[str] = Field(min_length=1)
    task_dir: str | list[str] = Field(min_length=1)
    limit: int | None = Field(ge=1)
    batch_size: int = Field(ge=1)
    sample_prompts: int = Field(ge=0, le=30)
    new_tokens: int = Field(ge=1, le=512)
    max_answer_tokens: int = Field(ge=1, le=4096)
    gates: list[GateParams]

    @field_validator("gates")
    @classmethod
    def _unique_gate_names(cls, value: list[GateParams]) -> list[GateParams]:
        names = [gate.name for gate in value]
        if len(set(names)) != len(names):
            raise ValueError(f"gate names must be unique; got {names}")
        return value


class HardwareParams(_Section):
    device: str = Field(pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    teacher_device_map: Literal["auto", "balanced", "balanced_low_0", "sequential"] | None


class ClassLabel(_Section):
    name: str = Field(pattern=r"^\S(.*\S)?$")  # what the teacher answers; no leading/trailing space
    description: str = Field(min_length=1)  # what belongs in it, shown to the teacher
    example: str = Field(min_length=1)  # one message of this class, the teacher's few-shot example


class ClassifyParams(_Section):
    labels: list[ClassLabel] = Field(min_length=2)
    instruction: str = Field(min_length=1)
    teacher_tokenizer: str | None
    top_logprobs: int = Field(ge=1, le=20)
    teacher_servers: int = Field(ge=1, le=16)
    min_label_mass: float = Field(ge=0, lt=1)
    val_fraction: float = Field(gt=0, lt=0.5)
    student_package: str = Field(min_length=1)
    student_version: str = Field(min_length=1)
    keep_layers: list[int] | None
    max_length: int = Field(ge=8, le=512)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    alpha: float = Field(ge=0, le=1)
    temperature: float = Field(gt=0)
    seed: int
    int8_per_channel: bool
    int8_reduce_range: bool
    speed_batch_size: int = Field(ge=1)
    teacher_speed_texts: int = Field(ge=1)
    gates: list[GateParams]

    @field_validator("labels", mode="before")
    @classmethod
    def _two_or_more(cls, value):
        if isinstance(value, list) and len(value) < 2:
            raise ValueError(f"a classifier needs at least two labels; got {len(value)}")
        return value

    @field_validator("labels")
    @classmethod
    def _unique_names(cls, value: list[ClassLabel]) -> list[ClassLabel]:
        names = [label.name for label in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"label names must be unique; {twice} appear twice")
        return value

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]


SECTIONS: dict[str, type[_Section]] = {
    "teacher": TeacherParams,
    "student": StudentParams,
    "generate": GenerateParams,
    "curate": CurateParams,
    "kd": KDParams,
    "train": TrainParams,
    "lora": LoraParams,
    "onpolicy": OnPolicyParams,
    "quantize": QuantizeParams,
    "evaluate": EvaluateParams,
    "hardware": HardwareParams,
    "classify": ClassifyParams,
}


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (value {error['input']!r}); remove it or fix its spelling"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {error['msg']} (got {error['input']!r})"


# Top-level keys that are not sections: the name of the last profile applied (potstill.profiles).
LABELS = ("profile",)


def _check(raw, path, sections) -> dict[str, _Section]:
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SECTIONS) - set(LABELS))
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


def load_params(path: str | Path, *sections: str) -> dict[str, _Section]:
    """Return the named sections of params.yaml as validated, frozen pydantic models."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the repository root") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return _check(raw, path, sections)


def validate_all(text: str, source: str = "params.yaml") -> dict[str, _Section]:
    """Return every section of a params.yaml text, validated; ParamsError names `source` and each problem."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{source}: not valid YAML: {exc}") from None
    return _check(raw, source, tuple(SECTIONS))
