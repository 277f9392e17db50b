"""Scale check: teacher scoring and KD training at real model shapes, ours beside TRL's trainers.

    python bench/gpu_scale.py                 # CUDA: Llama-3.2-1B-shaped student, Llama-3.1-8B-shaped teacher, bf16
    python bench/gpu_scale.py --shape small   # the CPU path: the same code at a small shape (what runs here)
    python bench/gpu_scale.py --variants score,ours-lora,trl-gkd-lora   # a subset

The models are built from config with random weights: throughput and memory do not need trained
weights, and nothing is fetched. Both have Llama 3's 128,256-row vocabulary; the text is tokenized
with the shipped SmolLM2 tokenizer (49,152 ids: the rows past it are padding, as in a padded
vocabulary, and the KD loss leaves them out through `vocab_limit`, as train does). Rows are
synthetic chat turns of about --seq-len tokens, the same for every variant.

Variants, each in its own subprocess so that its peak memory is its own (CUDA:
`max_memory_allocated`; CPU: the process's peak RSS, Python and torch included):

- score: the score stage's `score_rows` on the teacher shape, top-k 64: teacher tokens/s.
- ours-{lora,full}: potstill's DistillTrainer on the score variant's stored top-k (forward KL,
  alpha 0.9, T 1, chunked loss), as stages/train.py builds it.
- trl-sft-{lora,full}: trl.SFTTrainer on the same rows as chat messages (no teacher).
- trl-gkd-{lora,full}: trl's GKDTrainer with lmbda 0 (off-policy: the teacher scores every batch
  online instead of reading stored top-k), beta 0 (forward KL).
- each training variant with -gc: gradient checkpointing on (off otherwise).

Training tokens/s counts non-padding tokens of the timed steps (after --warmup-steps). LoRA is r 16,
alpha 32, all linear layers. Figures go to bench/results/gpu_scale_<shape>.json and a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

LLAMA3_VOCAB = 128_256
SHAPES = {
    # Llama-3.2-1B and Llama-3.1-8B (their config.json), for a GPU.
    "real": {"student": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
                         "num_key_value_heads": 8, "intermediate_size": 8192, "tie_word_embeddings": True},
             "teacher": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                         "num_key_value_heads": 8, "intermediate_size": 14336, "tie_word_embeddings": False},
             "batch_size": 4, "seq_len": 1024, "rows": 96, "steps": 8, "warmup_steps": 2},
    # The CPU path: the same vocabulary, tiny layers.
    "small": {"student": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                          "num_key_value_heads": 2, "intermediate_size": 512, "tie_word_embeddings": True},
              "teacher": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
                          "num_key_value_heads": 2, "intermediate_size": 1024, "tie_word_embeddings": False},
              "batch_size": 2, "seq_len": 128, "rows": 16, "steps": 4, "warmup_steps": 1},
    # tests/test_bench.py: every code path, in seconds.
    "micro": {"student": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "num_key_value_heads": 1, "intermediate_size": 64, "tie_word_embeddings": True},
              "teacher": {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "num_key_value_heads": 1, "intermediate_size": 128, "tie_word_embeddings": False},
              "batch_size": 2, "seq_len": 48, "rows": 4, "steps": 1, "warmup_steps": 1},
}
TRAINING = [f"{kind}-{method}{gc}" for kind in ("ours", "trl-sft", "trl-gkd") for method in ("lora", "full")
            for gc in ("", "-gc")]
VARIANTS = ["score", *TRAINING]
TOP_K = 64
WORDS = ("river stone light paper market engine garden letter winter signal harbor pattern orbit "
         "lantern meadow circuit island thunder canvas ladder compass velvet anchor").split()


def device_and_dtype() -> tuple[torch.device, torch.dtype]:
    from potstill.device import resolve_device, resolve_dtype

    device = resolve_device("auto")
    return device, resolve_dtype("auto", device)


def build_model(shape: dict, tokenizer, dtype: torch.dtype, device: torch.device):
    """A llama of `shape` (random weights) with Llama 3's vocabulary, in `dtype` on `device`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=LLAMA3_VOCAB, max_position_embeddings=8192, rope_theta=500000.0,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **shape)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return model


def synthetic_rows(tokenizer, rows: int, seq_len: int) -> list[dict]:
    """Chat rows whose templated length is about seq_len tokens: a quarter prompt, the rest answer."""
    import random

    generator = random.Random(0)
    words_per_token = len(WORDS) / len(tokenizer(" ".join(WORDS), add_special_tokens=False)["input_ids"])
    out = []
    for index in range(rows):
        prompt_words = int(seq_len / 4 * words_per_token)
        answer_words = int(seq_len * 3 / 4 * words_per_token) - 8
        out.append({"id": f"row-{index}", "messages": [
            {"role": "user", "content": " ".join(generator.choices(WORDS, k=prompt_words))},
            {"role": "assistant", "content": " ".join(generator.choices(WORDS, k=answer_words))}]})
    return out


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_score(shape: dict, tokenizer, rows: list[dict], work: Path) -> dict:
    from potstill.chat import tokenize_chat
    from potstill.distill.score import score_rows

    device, dtype = device_and_dtype()
    teacher = build_model(shape["teacher"], tokenizer, dtype, device)
    score_rows(teacher, tokenizer, rows[:shape["batch_size"]], TOP_K, shape["seq_len"], shape["batch_size"],
               progress=False)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    scored = score_rows(teacher, tokenizer, rows, TOP_K, shape["seq_len"], shape["batch_size"], progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = sum(len(tokenize_chat(tokenizer, row["messages"], shape["seq_len"])["input_ids"]) for row in rows)
    torch.save({row_id: {"kd_ids": ids.tolist(), "kd_logprobs": lps.tolist()} for row_id, (ids, lps) in scored.items()},
               work / "soft_targets.pt")
    return {"tokens_per_s": tokens / seconds, "tokens": tokens, "seconds": seconds,
            "peak_gib": peak_memory_gib(device), "what": f"teacher forward + top-{TOP_K}, batch {shape['batch_size']}"}


class StepTimer:
    """A TrainerCallback timing each optimizer step (CUDA synchronised)."""

    def __init__(self):
        self.seconds: list[float] = []

    def callback(self):
        from transformers import TrainerCallback

        timer = self

        class Timed(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timer.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timer.seconds.append(time.perf_counter() - timer.started)

        return Timed()


def run_training(variant: str, shape: dict, tokenizer, rows: list[dict], work: Path) -> dict:
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import TrainingArguments
    from trl_throughput import counting

    from potstill.distill.data import DistillCollator, build_dataset
    from potstill.distill.trainer import DistillTrainer

    checkpointing = variant.endswith("-gc")
    kind, method = variant.removesuffix("-gc").rsplit("-", 1)
    device, dtype = device_and_dtype()
    bf16, cpu = dtype == torch.bfloat16, device.type == "cpu"
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    common = dict(output_dir=str(work / variant), max_steps=shape["warmup_steps"] + shape["steps"],
                  per_device_train_batch_size=shape["batch_size"], gradient_accumulation_steps=1,
                  learning_rate=1e-5, bf16=bf16, use_cpu=cpu, save_strategy="no", report_to=[], seed=0,
                  logging_steps=1000, gradient_checkpointing=checkpointing,
                  gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None)
    # Full fine-tuning keeps fp32 master weights (bf16 autocast on a GPU); LoRA's frozen base is in `dtype`.
    student = build_model(shape["student"], tokenizer, torch.float32 if method == "full" else dtype, device)
    batches: list[tuple[int, int, int]] = []
    timer = StepTimer()
    if kind == "ours":
        train_file = work / "train.jsonl"
        train_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
        targets = torch.load(work / "soft_targets.pt")
        data = build_dataset(tokenizer, {"train": train_file}, targets, TOP_K, shape["seq_len"])["train"]
        trainer = counting(DistillTrainer, batches)(
            model=get_peft_model(student, lora) if method == "lora" else student,
            args=TrainingArguments(remove_unused_columns=False, dataloader_num_workers=0, **common),
            train_dataset=data, data_collator=DistillCollator(tokenizer.pad_token_id, TOP_K), kd_alpha=0.9,
            kd_temperature=1.0, capture_temperature=1.0, kd_tail="bucket", kd_loss="forward_kl", jsd_beta=0.5,
            kd_chunk_rows=1024, vocab_limit=len(tokenizer))
    else:
        messages = Dataset.from_list([{"messages": row["messages"]} for row in rows])
        peft = lora if method == "lora" else None
        if kind == "trl-sft":
            from trl import SFTConfig, SFTTrainer

            trainer = counting(SFTTrainer, batches)(
                model=student, args=SFTConfig(max_length=shape["seq_len"], packing=False, **common),
                train_dataset=messages, processing_class=tokenizer, peft_config=peft)
        else:
            from trl.experimental.gkd import GKDConfig, GKDTrainer

            teacher = build_model(shape["teacher"], tokenizer, dtype, device)
            trainer = counting(GKDTrainer, batches)(
                model=student, teacher_model=teacher,
                args=GKDConfig(max_length=shape["seq_len"], lmbda=0.0, beta=0.0, seq_kd=False, **common),
                train_dataset=messages, processing_class=tokenizer, peft_config=peft)
    trainer.add_callback(timer.callback())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    warm = shape["warmup_steps"]
    tokens = sum(batch[0] for batch in batches[warm:])
    seconds = sum(timer.seconds[warm:])
    return {"tokens_per_s": tokens / seconds, "tokens": tokens, "seconds": seconds,
            "labelled": sum(batch[2] for batch in batches[warm:]), "peak_gib": peak_memory_gib(device),
            "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)}


def run_one(variant: str, shape_name: str, work: Path) -> dict:
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from potstill.models import find_teacher_gguf
    from potstill.params import load_params

    hf_logging.set_verbosity_error()
    teacher = load_params(ROOT / "params.yaml", "teacher")["teacher"]
    gguf, _ = find_teacher_gguf(teacher.gguf_package)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    shape = SHAPES[shape_name]
    rows = synthetic_rows(tokenizer, shape["rows"], shape["seq_len"])
    if variant == "score":
        return run_score(shape, tokenizer, rows, work)
    return run_training(variant, shape, tokenizer, rows, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None,
                        help="real on a CUDA GPU, small elsewhere (default: by device)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)   # a single variant, in this process
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON results (default bench/results/gpu_scale_<shape>.json)")
    args = parser.parse_args()
    shape = args.shape or ("real" if torch.cuda.is_available() else "small")
    if args.one:
        print(json.dumps(run_one(args.one, shape, args.work)))
        return
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {VARIANTS}")
    if any(v.startswith("ours") for v in variants) and "score" not in variants:
        variants.insert(0, "score")  # ours trains on the teacher's stored top-k
    device, dtype = device_and_dtype()
    print(f"shape {shape} on {device} ({dtype}); {SHAPES[shape]['rows']} rows of ~{SHAPES[shape]['seq_len']} tokens, "
          f"batch {SHAPES[shape]['batch_size']}, {SHAPES[shape]['steps']} timed steps", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="gpu-scale-") as work:
        for variant in sorted(variants, key=VARIANTS.index):
            proc = subprocess.run([sys.executable, __file__, "--one", variant, "--shape", shape, "--work", work],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                results[variant] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            else:
                results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{variant}: {results[variant]}", flush=True)
    out = args.out or ROOT / "bench" / "results" / f"gpu_scale_{shape}.json"
    out.write_text(json.dumps({"shape": shape, "device": str(device), "dtype": str(dtype), "results": results},
                              indent=2) + "\n")
    print("\n| variant | tokens/s | peak GiB | trainable params | vs trl-sft, same method |\n|---|---|---|---|---|")
    for variant, record in results.items():
        if "error" in record:
            print(f"| {variant} | failed: {record['error'][:80]} | | | |")
            continue
        base = results.get(variant.replace("ours", "trl-sft").replace("trl-gkd", "trl-sft"), {})
        ratio = (f"{record['tokens_per_s'] / base['tokens_per_s']:.2f}x" if "tokens_per_s" in base
                 and variant != "score" else "")
        print(f"| {variant} | {record['tokens_per_s']:,.0f} | {record['peak_gib']:.2f} | "
              f"{record.get('trainable', '')} | {ratio} |")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
