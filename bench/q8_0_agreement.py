"""Where GGUF q8_0 loses top-1 agreement with the merged fp32 student, side by side in one run.

    .venv/bin/python bench/q8_0_agreement.py                     # models/merged, data/curated splits

Every row scores the same held-out positions (assistant tokens of data/curated/test.jsonl) and
counts how often its argmax differs from transformers running models/merged in fp32, and the mean
KL(fp32 || variant) over the full vocabulary:

  llama.cpp f16            our GGUF writer at f16: the converter and llama.cpp's scoring alone
  weights RTN              PyTorch, weights rounded to q8_0 blocks to nearest (llama.cpp's quantizer)
  weights GPTQ             PyTorch, weights rounded to q8_0 blocks by GPTQ on the training split
  activations q8_0         PyTorch, fp32 weights, every Linear's input rounded to q8_0 blocks per
                           token, as llama.cpp's CPU kernels do for q8_0 weights
  weights RTN + act q8_0   both roundings: what llama.cpp q8_0 should give
  GPTQ + act q8_0 head     GPTQ weights, only the LM head's input rounded: the best any fix of the
                           layers' activations (SmoothQuant-style scaling folded into the norms)
                           could reach, since the tied head cannot be rescaled without untying it
  llama.cpp q8_0           the gguf-q8_0 format (llama.cpp's quantizer)
  llama.cpp q8_0-gptq      the gguf-q8_0-gptq format

"near ties" counts the flips at positions where the merged model's top two logits are within
0.1: those flip under almost any rounding.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from potstill.evaluation.metrics import _scored_positions, heldout_rows, hf_logits_fn
from potstill.export.gguf_runtime import GGUFModel
from potstill.export.gguf_writer import _gptq_tensors, _write_gguf, build_gguf
from potstill.export.gptq import dequantize_q8_0
from potstill.models import load_checked

NEAR_TIE = 0.1


def q8_0_round(x: torch.Tensor) -> torch.Tensor:
    """Return x rounded to q8_0 blocks of 32 along its last dimension (fp16 scale = absmax / 127)."""
    blocks = x.reshape(-1, 32)
    scale = blocks.abs().amax(-1, keepdim=True) / 127
    inverse = torch.where(scale == 0, torch.zeros_like(scale), 1 / scale)
    return (torch.round(blocks * inverse).clamp(-127, 127) * scale.half().float()).reshape(x.shape)


def scores(logits_fn, rows: list[dict], reference: list[torch.Tensor] | None = None):
    """Return (argmax per position, mean KL(reference || model) per position or None, log-probs per row)."""
    logprobs = [torch.log_softmax(logits_fn(row["input_ids"])[_scored_positions(row)[0]].float(), -1) for row in rows]
    picks = torch.cat([lp.argmax(-1) for lp in logprobs])
    if reference is None:
        return picks, None, logprobs
    kl = sum(float((ref.exp() * (ref - lp)).sum()) for ref, lp in zip(reference, logprobs, strict=True))
    return picks, kl / len(picks), logprobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merged", type=Path, default=Path("models/merged"))
    parser.add_argument("--test", type=Path, default=Path("data/curated/test.jsonl"))
    parser.add_argument("--train", type=Path, default=Path("data/curated/train.jsonl"))
    args = parser.parse_args()

    model = load_checked(args.merged)
    tokenizer = AutoTokenizer.from_pretrained(args.merged)
    rows = heldout_rows(tokenizer, args.test)
    reference_fn = hf_logits_fn(model)
    reference, _, reference_lp = scores(reference_fn, rows)
    # log_softmax shifts a row by a constant, so log-prob gaps are logit gaps.
    top2 = torch.cat([lp.topk(2, dim=-1).values for lp in reference_lp])
    near_tie = (top2[:, 0] - top2[:, 1]) < NEAR_TIE
    print(f"{args.merged}: {len(reference)} held-out positions, {int(near_tie.sum())} near ties "
          f"(top-2 logit gap < {NEAR_TIE})\n")
    print(f"  {'variant':<26}{'top-1 agree':>12}{'flips':>7}{'near ties':>11}{'KL vs fp32':>12}{'MiB':>8}")

    def show(name: str, logits_fn, size: int | None = None) -> None:
        picks, kl, _ = scores(logits_fn, rows, reference_lp)
        flips = picks != reference
        mib = f"{size / 2**20:.1f}" if size else ""
        print(f"  {name:<26}{1 - flips.float().mean():>12.4f}{int(flips.sum()):>7}{int((flips & near_tie).sum()):>11}"
              f"{kl:>12.5f}{mib:>8}", flush=True)

    original = {name: p.detach().clone() for name, p in model.named_parameters() if p.ndim == 2}
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}

    def set_weights(rounded: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if parameter.ndim == 2:
                    parameter.copy_(rounded[name])

    @contextlib.contextmanager
    def q8_0_activations(only: str | None = None):
        handles = [m.register_forward_pre_hook(lambda _, inputs: (q8_0_round(inputs[0]),))
                   for name, m in linears.items() if only in (None, name)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        report = build_gguf(args.merged, tmp / "f16", "f16")
        with contextlib.closing(GGUFModel(tmp / "f16")) as gguf_model:
            show("llama.cpp f16", gguf_model.logits, report["size_bytes"])

        rtn = {name: q8_0_round(weight) for name, weight in original.items()}
        set_weights(rtn)
        show("weights RTN", reference_fn)

        # What build_gguf(..., "q8_0-gptq") writes, computed once for the PyTorch row and the file.
        rounded = _gptq_tensors(args.merged, args.train)
        gptq = {**original, **{key: torch.from_numpy(dequantize_q8_0(*q)) for key, q in rounded.items()}}
        set_weights(gptq)
        show("weights GPTQ", reference_fn)
        with q8_0_activations(only="lm_head"):
            show("GPTQ + act q8_0 head", reference_fn)

        set_weights(original)
        with q8_0_activations():
            show("activations q8_0", reference_fn)
        set_weights(rtn)
        with q8_0_activations():
            show("weights RTN + act q8_0", reference_fn)

        report = build_gguf(args.merged, tmp / "rtn", "q8_0")
        with contextlib.closing(GGUFModel(tmp / "rtn")) as gguf_model:
            show("llama.cpp q8_0", gguf_model.logits, report["size_bytes"])
        (tmp / "gptq").mkdir()
        _write_gguf(args.merged, tmp / "gptq" / "model.gguf", np.float32, q8_0=rounded)
        tokenizer.save_pretrained(tmp / "gptq")
        with contextlib.closing(GGUFModel(tmp / "gptq")) as gguf_model:
            show("llama.cpp q8_0-gptq", gguf_model.logits, (tmp / "gptq" / "model.gguf").stat().st_size)


if __name__ == "__main__":
    main()
