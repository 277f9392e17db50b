"""Weight quantization with optimum-quanto, saved so it reloads, and loaded so it cannot lie."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from potstill.io import InputError, atomic_dir
from potstill.models import load_checked

PROBE = "The quick brown fox jumps over the lazy dog."


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
        (tmp / "potstill_quantization.json").write_text(json.dumps({"library": "optimum-quanto",
                                                                    "weights": weights}) + "\n")
    reloaded = _probe_logits(load_quantized(out_dir), tokenizer)
    reload_drift = float((reloaded - quantized).abs().max())
    if reload_drift > 1e-4:
        raise RuntimeError(f"{out_dir}: reloaded quantized model differs from the one saved "
                           f"(max logit difference {reload_drift:.3g})")
    return {
        "weights": weights,
        "max_logit_change_vs_fp32": float((quantized - reference).abs().max()),
        "reload_drift": reload_drift,
        "size_bytes": sum(f.stat().st_size for f in Path(out_dir).rglob("*") if f.is_file()),
        "fp32_size_bytes": sum(f.stat().st_size for f in Path(model_dir).rglob("*") if f.is_file()),
    }


def load_quantized(model_dir: Path):
    """Return the transformers model inside a quanto-saved folder, checking every weight loaded.

    `lm_eval --model hf` on such a folder loads random weights without failing; here each
    tensor in the saved files must land in the model and each model tensor must come from them.
    """
    from optimum.quanto import QuantizedModelForCausalLM
    from safetensors import safe_open

    model_dir = Path(model_dir)
    if not (model_dir / "potstill_quantization.json").exists():
        raise InputError(f"{model_dir}: not a quantized model folder written by the quantize stage")
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
