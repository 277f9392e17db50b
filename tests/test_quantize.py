"""Quantize formats: torchao and GGUF round trips on a tiny model, loaders that refuse a broken folder."""

import json
import shutil

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from potstill.errors import InputError
from potstill.evaluation.metrics import hf_logits_fn
from potstill.export.quantize import load_quantized, quantize_format
from potstill.models import load_checked


def test_torchao_int8_saves_safetensors_reloads_and_refuses_a_missing_weight(tiny_model_dir, tmp_path):
    figures = quantize_format(tiny_model_dir, tmp_path / "ao", "torchao-int8")
    assert figures["reload_drift"] == 0.0 and figures["format"] == "torchao-int8"
    assert figures["size_ratio"] == figures["size_bytes"] / figures["fp32_size_bytes"] < 1
    files = sorted(p.name for p in (tmp_path / "ao").iterdir())
    assert "model.safetensors" in files and not [f for f in files if f.endswith((".bin", ".pt"))]
    model = load_quantized(tmp_path / "ao")
    assert type(model.model.layers[0].mlp.up_proj.weight).__module__.startswith("torchao")

    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "ao", broken)
    with safe_open(broken / "model.safetensors", "pt") as handle:
        metadata, tensors = handle.metadata(), {key: handle.get_tensor(key) for key in handle.keys()}
    del tensors[next(key for key in tensors if key.startswith("model.layers.0.self_attn.q_proj"))]
    save_file(tensors, broken / "model.safetensors", metadata=metadata)
    with pytest.raises(InputError, match=r"model.layers.0.self_attn.q_proj"):
        load_quantized(broken)


def test_gguf_q8_0_is_smaller_and_agrees_with_its_source(tiny_model_dir, tmp_path):
    figures = quantize_format(tiny_model_dir, tmp_path / "g", "gguf-q8_0")
    assert figures["size_ratio"] < 0.5 and figures["top1_agreement_vs_source"] >= 0.95
    assert json.loads((tmp_path / "g" / "potstill_quantization.json").read_text())["library"] == "gguf"
    model = load_quantized(tmp_path / "g")
    ids = model.tokenizer("The quick brown fox", add_special_tokens=False)["input_ids"]
    reference = hf_logits_fn(load_checked(tiny_model_dir))(ids)
    logits = model.logits(ids)
    assert logits.shape == reference.shape
    assert (logits.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.75
    assert len(model.generate(ids, 4)) <= 4


def test_quantize_stage_writes_one_format_with_its_card(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from stages.quantize import app

    out, metrics = tmp_path / "quantized" / "quanto-int4", tmp_path / "metrics" / "quanto-int4.json"
    result = CliRunner().invoke(app, ["--params", "params.yaml", "--format", "quanto-int4", "--merged",
                                      str(tiny_model_dir), "--out", str(out), "--metrics", str(metrics)])
    assert result.exit_code == 0, result.output
    figures = json.loads(metrics.read_text())
    assert figures["format"] == "quanto-int4" and 0 < figures["size_ratio"] < 1
    card = (out / "README.md").read_text()
    assert "Apache-2.0" in card and "quanto-int4" in card and "tied embedding" in card
    reloaded = load_quantized(out)
    ids = [1, 2, 3, 4, 5]
    reference = hf_logits_fn(load_checked(tiny_model_dir))(ids)
    drift = (hf_logits_fn(reloaded)(ids) - reference).abs().max()
    assert 0 < drift < 0.5 * reference.abs().max()  # int4-rounded: close to the source, not equal to it


def test_a_format_not_listed_is_refused_by_name(tiny_model_dir):
    with pytest.raises(InputError, match="unknown format 'int3'"):
        quantize_format(tiny_model_dir, tiny_model_dir.parent / "x", "int3")


def test_model_card_says_how_the_student_was_trained_and_built():
    from potstill.export.model_card import card
    from potstill.params import load_params

    sections = load_params("params.yaml", "teacher", "train")
    full = card("gguf-q8_0-gptq", sections, {"format": "gguf-q8_0-gptq"})
    assert "fine-tuned in full" in full and "LoRA" not in full.split("##")[0]
    assert "rounded by GPTQ" in full and "llama.cpp / ollama" in full
    lora = sections["train"].model_copy(update={"method": "lora"})
    assert "trained with LoRA adapters" in card("gguf-q8_0", {**sections, "train": lora}, {"format": "gguf-q8_0"})
    assert "GPTQ" not in card("gguf-q8_0", sections, {"format": "gguf-q8_0"})
