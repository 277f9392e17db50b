"""GPTQ rounding into q8_0 blocks: the bytes are q8_0 as gguf reads them, a zero Hessian is
round-to-nearest, real Hessians lower the layer's output error, and llama.cpp runs the result."""

import json

import gguf
import numpy as np
import pytest
import torch

from potstill.errors import InputError
from potstill.export.gguf_runtime import GGUFModel
from potstill.export.gguf_writer import build_gguf
from potstill.export.gptq import collect_hessians, dequantize_q8_0, gptq_q8_0, q8_0_bytes
from potstill.models import load_checked


def round_to_nearest(weight: torch.Tensor) -> np.ndarray:
    blocks = weight.double().reshape(weight.shape[0], -1, 32)
    scale = (blocks.abs().amax(-1, keepdim=True) / 127).half().double()
    return (torch.round(blocks / scale).clamp(-127, 127) * scale).reshape(weight.shape).float().numpy()


def test_q8_0_bytes_are_what_gguf_decodes():
    rng = np.random.default_rng(0)
    ints = rng.integers(-127, 128, size=(5, 96), dtype=np.int8)
    scales = rng.uniform(1e-4, 1e-1, size=(5, 3)).astype(np.float16)
    raw = q8_0_bytes(ints, scales)
    assert raw.dtype == np.uint8 and raw.shape == (5, 3 * 34)
    decoded = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0)
    np.testing.assert_array_equal(decoded, dequantize_q8_0(ints, scales))


def test_zero_hessian_is_round_to_nearest():
    weight = torch.randn(16, 64)
    ints, scales = gptq_q8_0(weight, torch.zeros(64, 64))
    np.testing.assert_allclose(dequantize_q8_0(ints, scales), round_to_nearest(weight), rtol=0, atol=1e-7)
    assert np.abs(ints).max() == 127  # each block's largest weight sets its scale


def test_gptq_lowers_the_output_error_on_correlated_inputs():
    torch.manual_seed(0)
    weight = torch.randn(64, 128)
    inputs = torch.randn(2048, 16) @ torch.randn(16, 128) + 0.1 * torch.randn(2048, 128)  # low-rank, as activations are
    hessian = 2 * inputs.T @ inputs / len(inputs)
    gptq = dequantize_q8_0(*gptq_q8_0(weight, hessian))

    def output_error(rounded: np.ndarray) -> float:
        return float(((weight - torch.from_numpy(rounded)) @ inputs.T).norm())

    assert output_error(gptq) < 0.5 * output_error(round_to_nearest(weight))


def test_collect_hessians_covers_every_linear_with_their_inputs(tiny_model_dir, tokenizer):
    model = load_checked(tiny_model_dir)
    rows = [{"input_ids": tokenizer("a short calibration text").input_ids}, {"input_ids": [1, 2, 3, 4, 5]}]
    hessians = collect_hessians(model, rows)
    linears = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(hessians) == sorted(linears) and "lm_head" in hessians
    first = model.model.layers[0].self_attn.q_proj
    assert hessians["model.layers.0.self_attn.q_proj"].shape == (first.in_features, first.in_features)
    h = hessians["lm_head"]
    assert torch.allclose(h, h.T) and torch.linalg.eigvalsh(h).min() > -1e-6 and h.trace() > 0


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "train.jsonl"
    chats = [[{"role": "user", "content": f"Question {i}: what is {i} plus {i}?"},
              {"role": "assistant", "content": f"{i} plus {i} is {2 * i}. Adding a number to itself doubles it."}]
             for i in range(12)]
    path.write_text("".join(json.dumps({"messages": chat}) + "\n" for chat in chats))
    return path


def test_gptq_gguf_is_q8_0_that_llama_cpp_runs(tiny_model_dir, calibration, tmp_path):
    out = tmp_path / "gptq"
    report = build_gguf(tiny_model_dir, out, "q8_0-gptq", calibration=calibration)
    reader = gguf.GGUFReader(out / "model.gguf")
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["token_embd.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    rtn = build_gguf(tiny_model_dir, tmp_path / "rtn", "q8_0")
    assert abs(report["size_bytes"] - rtn["size_bytes"]) < 1024  # same format, other rounding (metadata aside)
    # llama.cpp reads the blocks as written: it agrees with transformers on the fp32 source.
    assert report["top1_agreement_vs_source"] >= 0.9 and report["mean_kl_vs_source"] < 0.05
    model = GGUFModel(out, n_ctx=128)
    try:
        assert len(model.generate(model.tokenizer("Hello").input_ids, 3)) <= 3
    finally:
        model.close()


def test_gptq_without_calibration_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(InputError, match="needs calibration chats"):
        build_gguf(tiny_model_dir, tmp_path / "out", "q8_0-gptq", calibration=tmp_path / "missing.jsonl")
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="empty.jsonl: no chats to calibrate"):
        build_gguf(tiny_model_dir, tmp_path / "out", "q8_0-gptq", calibration=tmp_path / "empty.jsonl")
    assert not (tmp_path / "out").exists()
