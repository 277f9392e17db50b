"""Quantized exports of the merged student, saved so they reload, and loaded so they cannot lie.

Formats (quantize.formats): optimum-quanto int8/int4 and torchao int8 weight-only (transformers
checkpoints in safetensors; Linear layers only, so the tied embedding stays fp32), and GGUF
f16/q8_0/q8_0-gptq/q4_k_m for llama.cpp and ollama (potstill.export.gguf_writer). Each folder records its format in
potstill_quantization.json; `load_quantized` reads that and checks that every weight loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from potstill.errors import InputError
from potstill.io import atomic_dir
from potstill.models import load_checked

PROBE = "The quick brown fox jumps over the lazy dog."


TRANSFORMERS_FORMATS = ("quanto-int8", "quanto-int4", "torchao-int8")
QUANTIZATION_FILE = "potstill_quantization.json"


def weight_bytes(folder: Path) -> int:
    """Return the bytes of a model folder's weight files (safetensors, GGUF), tokenizer excluded (0: no weights)."""
    from potstill.weights import weights_dir

    folder = weights_dir(folder)  # a prepare pointer: the folder it points to
    if folder is None:
        return 0
    return sum(path.stat().st_size for path in Path(folder).iterdir()
               if path.is_file() and path.suffix in (".safetensors", ".gguf"))


def quantize_format(model_dir: Path, out_dir: Path, fmt: str, calibration: Path | None = None) -> dict:
    """Return the figures of one quantize.formats entry after writing it to `out_dir` and verifying it.

    Figures: size_bytes and fp32_size_bytes (weight files only), size_ratio, and the format's own
    fidelity figures (logit change vs fp32, reload drift; GGUF: top-1 agreement and KL vs merged).
    calibration: training chats (JSONL) for the calibrated formats (gguf-q8_0-gptq).
    """
    if fmt.startswith("quanto-"):
        figures = quantize_model(model_dir, out_dir, fmt.removeprefix("quanto-"))
    elif fmt == "torchao-int8":
        figures = quantize_torchao(model_dir, out_dir)
    elif fmt.startswith("gguf-"):
        from potstill.export.gguf_writer import build_gguf  # llama.cpp tooling: imported only when a GGUF is asked for

        figures = build_gguf(Path(model_dir), Path(out_dir), fmt.removeprefix("gguf-"), calibration=calibration)
    else:
        raise InputError(f"quantize.formats: unknown format {fmt!r}")
    figures = {**figures, "format": fmt, "size_bytes": weight_bytes(out_dir),
               "fp32_size_bytes": weight_bytes(model_dir)}
    figures["size_ratio"] = figures["size_bytes"] / figures["fp32_size_bytes"]
    return figures


def _weights_dtype(name: str):
    from optimum.quanto import qint4, qint8

    return {"int8": qint8, "int4": qint4}[name]


def _probe_logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer(PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits


def quantize_model(model_dir: Path, out_dir: Path, weights: str) -> dict:
    """Quantize a merged checkpoint's linear weights; save; reload and check it is the same model."""
    from optimum.quanto import QuantizedModelForCausalLM
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_checked(model_dir)
    reference = _probe_logits(model, tokenizer)
    # The LM head shares its matrix with the embedding (tied): quantizing it would untie them.
    qmodel = QuantizedModelForCausalLM.quantize(model, weights=_weights_dtype(weights), exclude="lm_head")
    quantized = _probe_logits(qmodel._wrapped, tokenizer)
    with atomic_dir(out_dir) as tmp:
        qmodel.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / QUANTIZATION_FILE).write_text(json.dumps({"library": "optimum-quanto", "weights": weights}) + "\n")
    reloaded = _probe_logits(load_quantized(out_dir), tokenizer)
    reload_drift = float((reloaded - quantized).abs().max())
    if reload_drift > 1e-4:
        raise RuntimeError(f"{out_dir}: reloaded quantized model differs from the one saved "
                           f"(max logit difference {reload_drift:.3g})")
    return {
        "weights": weights,
        "max_logit_change_vs_fp32": float((quantized - reference).abs().max()),
        "reload_drift": reload_drift,
        "size_bytes": weight_bytes(out_dir),
        "fp32_size_bytes": weight_bytes(model_dir),
    }


def quantize_torchao(model_dir: Path, out_dir: Path) -> dict:
    """Quantize Linear weights to int8 with torchao (weight-only, per row); save as safetensors; verify.

    torchao saves its tensor subclasses into safetensors (qdata/scale/zero_point plus metadata),
    so the folder loads with use_safetensors=True like every other model of the pipeline.
    """
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    reference = _probe_logits(load_checked(model_dir), tokenizer)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True,
                                                 quantization_config=TorchAoConfig(Int8WeightOnlyConfig())).eval()
    quantized = _probe_logits(model, tokenizer)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / QUANTIZATION_FILE).write_text(json.dumps({"library": "torchao", "weights": "int8"}) + "\n")
    reloaded = _probe_logits(load_quantized(out_dir), tokenizer)
    reload_drift = float((reloaded - quantized).abs().max())
    if reload_drift > 1e-4:
        raise RuntimeError(f"{out_dir}: reloaded torchao model differs from the one saved "
                           f"(max logit difference {reload_drift:.3g})")
    return {"weights": "int8", "max_logit_change_vs_fp32": float((quantized - reference).abs().max()),
            "reload_drift": reload_drift}


def quantization_info(model_dir: Path) -> dict:
    """Return potstill_quantization.json of a quantized folder; InputError for any other folder."""
    marker = Path(model_dir) / QUANTIZATION_FILE
    if not marker.exists():
        raise InputError(f"{model_dir}: not a quantized model folder written by the quantize stage")
    return json.loads(marker.read_text())


def load_quantized(model_dir: Path):
    """Return the model inside a quantized folder, every weight checked (GGUF: a GGUFModel on llama.cpp)."""
    info = quantization_info(model_dir)
    if info.get("library") == "torchao":
        return _load_torchao(Path(model_dir))
    if info.get("library") == "gguf":
        from potstill.export.gguf_runtime import GGUFModel

        return GGUFModel(Path(model_dir))
    return _load_quanto(Path(model_dir))


def _load_torchao(model_dir: Path):
    """Return a torchao-quantized model; refuse one whose Linear weights did not load quantized.

    transformers raises when a quantized tensor's parts are missing; on top of that, every tensor
    the file lists must be in the model, and every Linear (LM head aside: tied) must hold torchao's
    int8 tensor, not a freshly initialised float one.
    """
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    with safe_open(model_dir / "model.safetensors", "pt") as handle:
        listed = set(json.loads((handle.metadata() or {}).get("tensor_names", "[]")))
        stored = set(handle.keys())
    try:
        model, info = AutoModelForCausalLM.from_pretrained(model_dir, output_loading_info=True, use_safetensors=True)
    except RuntimeError as exc:  # transformers could not rebuild a quantized tensor from its parts
        raise InputError(f"{model_dir}: torchao weights did not load ({str(exc).splitlines()[0]}); incomplete: "
                         f"{_incomplete_torchao_tensors(listed, stored)[:5] or 'see the report above'}. "
                         "Rerun the quantize stage for this format") from exc
    problems = {kind: list(keys) for kind, keys in info.items() if keys}
    float_linears = [name for name, module in model.named_modules()
                     if isinstance(module, torch.nn.Linear) and name != "lm_head"
                     and type(module.weight).__module__.split(".")[0] != "torchao"]
    expected = set(model.state_dict().keys())
    if problems or float_linears or (listed and expected - listed):
        raise InputError(f"{model_dir}: torchao weights did not load cleanly: {problems}, "
                         f"not quantized: {float_linears[:5]}, missing: {sorted(expected - listed)[:5]}")
    return model.eval()


def _incomplete_torchao_tensors(listed: set[str], stored: set[str]) -> list[str]:
    """Return the listed tensors missing a stored part: torchao saves `m.weight` as `m._weight_<part>` keys."""
    parts: dict[str, set[str]] = {}
    for name in listed:
        module, attribute = name.rsplit(".", 1)
        prefix = f"{module}._{attribute}_"
        parts[name] = {key.removeprefix(prefix) for key in stored if key.startswith(prefix)}
    expected = set().union(*parts.values()) if parts else set()
    return sorted(name for name, have in parts.items() if have and have != expected or not have and name not in stored)


def _load_quanto(model_dir: Path):
    """Return the transformers model inside a quanto-saved folder, checking every weight loaded.

    `lm_eval --model hf` on such a folder loads random weights without failing; here each
    tensor in the saved files must land in the model and each model tensor must come from them.
    """
    from optimum.quanto import QuantizedModelForCausalLM
    from safetensors import safe_open

    saved: set[str] = set()
    for shard in model_dir.glob("*.safetensors"):
        with safe_open(shard, "pt") as handle:
            saved.update(handle.keys())
    model = QuantizedModelForCausalLM.from_pretrained(str(model_dir))._wrapped.eval()
    expected = set(model.state_dict().keys())
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    missing, unexpected = expected - saved - tied, saved - expected
    if missing or unexpected:
        raise InputError(f"{model_dir}: quantized weights do not match the model: "
                         f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    return model
