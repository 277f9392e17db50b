"""Training throughput (non-padding tokens/s) of our train path vs TRL's SFTTrainer, side by side.

    nice -n 10 .venv/bin/python bench/trl_throughput.py                      # tiny student, CPU, ~minutes
    nice -n 10 .venv/bin/python bench/trl_throughput.py --student models/student-base --steps 20
    python bench/trl_throughput.py --rows 243 --steps 40 --device cuda    # on a GPU machine

Five trainers fit the same student (fresh copies), on the same rows, with the same LoRA config
(r 16, alpha 32, all-linear), batch and gradient accumulation, at the same precision:

- ours-kd: potstill's DistillTrainer + DistillCollator on build_dataset rows, KD on (kd alpha 0.5,
  T 2, top-k 64 soft targets), `train_sampling_strategy="group_by_length"` as stages/train.py sets it;
- ours-sft: the same with kd.source none (no soft targets, alpha 0): CE only;
- trl: trl.SFTTrainer with its defaults (random order, packing off, gradient checkpointing on)
  on a `messages` dataset, which it renders with the chat template;
- trl-no-gc: the same with gradient checkpointing off, since ours runs without it;
- trl-compl: TRL's defaults on the same rows as prompt-completion pairs, so that it trains on the
  reply alone, like ours (not a target: the issue names the defaults on chat messages).

Both sides truncate to --max-seq-len and run at our precision (TRL's default bf16=True is
replaced by ours: fp32 on a CPU, bf16 on a CUDA GPU). What each trains on: ours puts CE on the
assistant tokens only (KD on the same tokens); TRL, given a conversational dataset, trains on the
whole sequence (completion_only_loss applies to prompt-completion data only; assistant_only_loss
defaults to off), about twice the tokens; trl-compl does not. The "labelled" column shows it.
Without Triton (a CPU) TRL's fused LM head scores every position, padding included, in fp32 vocab
tiles; on a CUDA GPU only the labelled ones. The issue's targets are against `trl`.

The trainers run in threads that take turns, one optimizer step each, so load from other
processes on a shared machine hits them alike. A step is timed from the moment its trainer gets
its turn (data loading, forward, backward, optimizer, logging) to its `on_step_end`; the first
--warmup-steps steps of each are left out. Tokens are the attention-mask sum of the step's batches.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import torch
from transformers import TrainerCallback

from potstill.device import describe, resolve_device, resolve_dtype
from potstill.distill.data import DistillCollator, build_dataset
from potstill.distill.trainer import DistillTrainer
from potstill.errors import InputError
from potstill.models import tiny_llama
from potstill.params import load_params

ROOT = Path(__file__).resolve().parents[1]


class TakeTurns:
    """Round-robin baton: the trainer whose turn it is runs one step, then hands over."""

    def __init__(self, names: list[str]):
        self.order, self.turn = list(names), names[0]
        self.condition = threading.Condition()

    def wait(self, name: str) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.turn == name)

    def hand_over(self, name: str, leaving: bool = False) -> None:
        with self.condition:
            position = self.order.index(name)
            if leaving:
                self.order.remove(name)
            if self.order:
                self.turn = self.order[(position + (0 if leaving else 1)) % len(self.order)]
            self.condition.notify_all()


class TimedTurn(TrainerCallback):
    """Waits for this trainer's turn before each step and records how long the step took."""

    def __init__(self, name: str, turns: TakeTurns, seconds: list[float]):
        self.name, self.turns, self.seconds = name, turns, seconds

    def on_train_begin(self, args, state, control, **kwargs):
        self.turns.wait(self.name)
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self.started)
        self.turns.hand_over(self.name)
        self.turns.wait(self.name)
        self.started = time.perf_counter()


def counting(trainer_class, batches: list[tuple[int, int, int]]):
    """Return a subclass of `trainer_class` that records (non-padding, padded, labelled) tokens per batch."""

    class Counted(trainer_class):
        def training_step(self, model, inputs, *args, **kwargs):
            labels = inputs["labels"]
            batches.append((int(inputs["attention_mask"].sum()), inputs["input_ids"].numel(),
                            int((labels != -100).sum())))
            return super().training_step(model, inputs, *args, **kwargs)

    return Counted


def soft_targets_for_rows(args, tokenizer, rows: list[dict]) -> tuple[dict, str]:
    """Return ({row id: {kd_ids, kd_logprobs}}, where they came from) covering `rows`."""
    from potstill.distill.score import score_rows
    from potstill.distill.soft_targets import load_soft_targets

    if (args.soft_targets / "manifest.json").is_file():
        try:
            targets, _ = load_soft_targets(args.soft_targets, tokenizer, args.top_k)
        except InputError as error:
            print(f"trl_throughput: not reusing {args.soft_targets}: {error}")
        else:
            if all(row["id"] in targets for row in rows):
                return targets, f"{args.soft_targets} (the score stage's teacher)"
    # Any teacher sharing the tokenizer gives soft targets of the same shape: enough for throughput.
    teacher = tiny_llama(tokenizer, layers=2, hidden=128, seed=1)
    scored = score_rows(teacher, tokenizer, rows, args.top_k, args.max_seq_len, batch_size=8, progress=False)
    targets = {row_id: {"kd_ids": ids.tolist(), "kd_logprobs": logprobs.tolist()}
               for row_id, (ids, logprobs) in scored.items()}
    return targets, "a random tiny_llama(layers=2, hidden=128, seed=1) teacher (same tokenizer)"


def build_trainers(args, tokenizer, rows, train_file: Path, out: Path, bf16: bool, cpu: bool, record):
    """Return {name: trainer} for ours-kd, ours-sft, trl, trl-no-gc and trl-compl."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, TrainingArguments

    params = load_params(args.params, "kd", "train", "lora")
    kd, train, lora = params["kd"], params["train"], params["lora"]

    def student():
        if args.student is None:
            return tiny_llama(tokenizer, layers=4, hidden=256)
        return AutoModelForCausalLM.from_pretrained(args.student, dtype=torch.float32, use_safetensors=True)

    def lora_config():
        return LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=lora.dropout,
                          target_modules="all-linear", task_type="CAUSAL_LM")

    max_steps = args.warmup_steps + args.steps
    common = dict(max_steps=max_steps, per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
                  bf16=bf16, use_cpu=cpu, save_strategy="no", report_to=[], seed=train.seed)
    soft_targets, source = soft_targets_for_rows(args, tokenizer, rows)
    print(f"soft targets: top-{args.top_k} from {source}")
    trainers = {}
    for name, alpha, targets, k in (("ours-kd", args.kd_alpha, soft_targets, args.top_k), ("ours-sft", 0.0, {}, 1)):
        # As stages/train.py builds them (kd.source none is its SFT-only path: no targets, k 1, alpha 0).
        ours = TrainingArguments(
            output_dir=str(out / name), learning_rate=train.learning_rate, lr_scheduler_type=train.lr_scheduler,
            warmup_steps=train.warmup_steps, train_sampling_strategy="group_by_length",
            logging_steps=train.logging_steps, remove_unused_columns=False, data_seed=train.seed,
            dataloader_num_workers=0, **common)
        data = build_dataset(tokenizer, {"train": train_file}, targets, k, args.max_seq_len)["train"]
        trainers[name] = counting(DistillTrainer, record[name]["batches"])(
            model=get_peft_model(student(), lora_config()), args=ours, train_dataset=data,
            data_collator=DistillCollator(tokenizer.pad_token_id, k), kd_alpha=alpha,
            kd_temperature=args.kd_temperature, capture_temperature=1.0, kd_tail=kd.tail, kd_loss=kd.loss,
            jsd_beta=kd.jsd_beta, kd_chunk_rows=kd.chunk_rows)

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    messages = Dataset.from_list([{"messages": row["messages"]} for row in rows])
    # Prompt-completion rows: TRL's default completion_only_loss then trains on the reply alone, as ours does.
    completions = Dataset.from_list([{"prompt": row["messages"][:-1], "completion": row["messages"][-1:]}
                                     for row in rows])
    for name, data, checkpointing in (("trl", messages, True), ("trl-no-gc", messages, False),
                                      ("trl-compl", completions, True)):
        config = SFTConfig(output_dir=str(out / name), max_length=args.max_seq_len,
                           gradient_checkpointing=checkpointing, **common)
        trainers[name] = counting(SFTTrainer, record[name]["batches"])(
            model=student(), args=config, train_dataset=data, processing_class=tokenizer,
            peft_config=lora_config())
    return trainers


def run(args) -> dict:
    """Return {name: {batches, seconds}} after training all variants in turns."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    print(f"device: {describe(device, dtype)}, torch threads {torch.get_num_threads()}")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    with open(args.data, encoding="utf-8") as lines:
        rows = [json.loads(line) for _, line in zip(range(args.rows), lines, strict=False)]
    record = defaultdict(lambda: {"batches": [], "seconds": []})
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.jsonl"
        train_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
        trainers = build_trainers(args, tokenizer, rows, train_file, Path(tmp), dtype == torch.bfloat16,
                                  device.type == "cpu", record)
        turns = TakeTurns(list(trainers))
        errors: dict[str, BaseException] = {}

        def train(name: str, trainer) -> None:
            try:
                trainer.add_callback(TimedTurn(name, turns, record[name]["seconds"]))
                trainer.train()
            except BaseException as error:  # re-raised below; the baton must still move on
                errors[name] = error
            finally:
                turns.hand_over(name, leaving=True)

        threads = [threading.Thread(target=train, args=item) for item in trainers.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            name, error = next(iter(errors.items()))
            raise RuntimeError(f"{name} failed: {error!r}") from error
    return {name: record[name] for name in trainers}


def report(args, record: dict) -> None:
    """Print the table and the ratios against TRL, with the issue's targets."""
    print(f"\n{args.rows} rows, batch {args.batch_size}, grad accum 1, max length {args.max_seq_len}, "
          f"{args.steps} timed steps each after {args.warmup_steps} warm-up steps")
    print(f"{'trainer':<10} {'non-pad tok':>11} {'labelled':>9} {'padding':>8} {'seconds':>8} {'tok/s':>8}")
    rates = {}
    for name, result in record.items():
        timed = result["batches"][args.warmup_steps:]
        seconds = sum(result["seconds"][args.warmup_steps:])
        tokens, padded, labelled = (sum(column) for column in zip(*timed, strict=True))
        rates[name] = tokens / seconds
        print(f"{name:<10} {tokens:>11,} {labelled:>9,} {1 - tokens / padded:>8.1%} {seconds:>8.2f} "
              f"{rates[name]:>8.1f}")
    baselines = [name for name in rates if name.startswith("trl")]
    print(f"\n{'ratio':<10} " + " ".join(f"{'/ ' + name:>12}" for name in baselines) + "   target (vs trl)")
    for ours, target in (("ours-kd", 1.0), ("ours-sft", 1.2)):
        ratios = [rates[ours] / rates[name] for name in baselines]
        verdict = "met" if ratios[0] >= target else "MISSED"
        print(f"{ours:<10} " + " ".join(f"{ratio:>11.2f}x" for ratio in ratios) + f"   >= {target:.1f}x: {verdict}")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", type=Path, default=None,
                        help="student checkpoint folder (default: tiny_llama(layers=4, hidden=256), random)")
    parser.add_argument("--tokenizer", type=Path, default=ROOT / "models" / "teacher")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "curated" / "train.jsonl")
    parser.add_argument("--soft-targets", type=Path, default=ROOT / "data" / "soft-targets",
                        help="score stage output to reuse; without it a random tiny teacher scores the rows")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml",
                        help="kd.tail/loss/chunk_rows, lora.dropout, train.lr/scheduler/seed")
    parser.add_argument("--rows", type=int, default=96, help="first N rows of --data")
    parser.add_argument("--steps", type=int, default=12, help="timed optimizer steps per trainer")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=256)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)  # alpha = 2 * r
    parser.add_argument("--kd-alpha", type=float, default=0.5)
    parser.add_argument("--kd-temperature", type=float, default=2.0)
    parser.add_argument("--top-k", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    args = parser.parse_args()
    steps_available = args.rows // args.batch_size
    if args.warmup_steps + args.steps > steps_available:
        # A second epoch would re-shuffle: keep every trainer inside one pass over the rows.
        raise SystemExit(f"--rows {args.rows} gives {steps_available} batches; raise --rows or lower --steps")
    report(args, run(args))


if __name__ == "__main__":
    main()
