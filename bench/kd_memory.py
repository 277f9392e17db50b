"""Peak memory and time of the KD loss (forward + backward), naive full-vocabulary vs chunked.

    nice -n 10 .venv/bin/python bench/kd_memory.py                 # SmolLM2 sizes, fp32, CPU
    nice -n 10 .venv/bin/python bench/kd_memory.py --chunk-rows 256 1024 --rounds 1
    python bench/kd_memory.py --device cuda                        # on a GPU machine

Given the student's final hidden states (batch x seq x hidden) and its LM head weight (vocab x
hidden), each variant computes loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE
on top-k soft targets and back-propagates into both. Variants:

- naive: full logits, the teacher's top-k scattered into a dense batch x seq x vocab
  distribution, a full-vocabulary log-softmax and KL (what a first implementation does);
- full-logits: potstill.distill.kd.distillation_loss on full logits (log-softmax on labelled rows only);
- chunked-N: potstill.distill.kd.chunked_distillation_loss, N rows of logits at a time.

Each variant runs in a fresh process. On CPU its peak is the rise of the process's maximum RSS
(ru_maxrss) over what it held once its inputs were allocated; on CUDA, torch.cuda.max_memory_allocated
over the memory allocated after the inputs. Each process runs one untimed warm-up step, then one
timed step; the variants take turns (--rounds rounds), so load from other processes on a shared
machine hits them alike. Time is the best timed step over the rounds, peak the largest.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
PROMPT_TOKENS = 128  # masked positions at the start of each row: no CE, no KD


def make_inputs(args, device: str):
    """Return hidden, head weight, labels, top-k ids and logprobs, and the KD mask, without any batch x vocab tensor."""
    generator = torch.Generator().manual_seed(0)
    batch, seq, vocab, k = args.batch, args.seq, args.vocab, args.top_k
    hidden = torch.randn(batch, seq, args.hidden, generator=generator).to(device).requires_grad_()
    weight = (torch.randn(vocab, args.hidden, generator=generator) * args.hidden**-0.5).to(device).requires_grad_()
    labels = torch.randint(0, vocab, (batch, seq), generator=generator)
    labels[:, :PROMPT_TOKENS] = -100
    # k distinct ids per position (a random start, a random odd stride), 90% of the mass on them.
    start = torch.randint(0, vocab, (batch, seq, 1), generator=generator)
    ids = (start + torch.arange(k) * 7919) % vocab
    logprobs = torch.log_softmax(torch.randn(batch, seq, k, generator=generator) * 2, -1) + math.log(0.9)
    kd_mask = labels != -100
    return hidden, weight, labels.to(device), ids.to(device), logprobs.to(device), kd_mask.to(device)


def naive_loss(hidden, weight, labels, ids, logprobs, kd_mask, alpha, temperature):
    """Return the KD + CE loss computed over the full vocabulary, teacher scattered dense."""
    logits = (hidden @ weight.T)[:, :-1]
    labels, ids, logprobs, kd_mask = labels[:, 1:], ids[:, 1:], logprobs[:, 1:], kd_mask[:, 1:]
    student_log = torch.log_softmax(logits / temperature, dim=-1)
    teacher = torch.zeros_like(logits).scatter_(-1, ids, torch.softmax(logprobs / temperature, dim=-1))
    kl = (teacher * (teacher.clamp_min(1e-30).log() - student_log)).sum(-1)
    kd = (kl * kd_mask).sum() / kd_mask.sum() * temperature**2
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    return alpha * kd + (1 - alpha) * ce


def run_variant(variant: str, args) -> dict:
    """Return peak memory (MiB) and best time (s) of one variant's forward + backward, in this process."""
    from potstill.distill.kd import chunked_distillation_loss, distillation_loss

    device = args.device
    inputs = make_inputs(args, device)
    hidden, weight = inputs[:2]
    settings = {"alpha": 0.5, "temperature": 2.0}

    def step():
        if variant == "naive":
            loss = naive_loss(*inputs, **settings)
        elif variant == "full-logits":
            loss = distillation_loss(hidden @ weight.T, *inputs[2:], tail="renorm", **settings)[0]
        else:
            loss = chunked_distillation_loss(*inputs, tail="renorm", chunk_rows=int(variant.split("-")[1]),
                                             **settings)[0]
        loss.backward()
        return float(loss)

    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(2):  # the first is a warm-up (CUDA kernels load, CPU thread pools start)
        hidden.grad = weight.grad = None
        started = time.perf_counter()
        loss = step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"variant": variant, "peak_mib": peak / 2**20, "seconds": times[-1], "loss": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--top-k", type=int, default=64)
    parser.add_argument("--chunk-rows", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--rounds", type=int, default=2, help="turns each variant takes; the best time counts")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(run_variant(args.worker, args)))
        return

    variants = ["naive", "full-logits", *[f"chunked-{rows}" for rows in args.chunk_rows]]
    print(f"vocab {args.vocab:,}, batch {args.batch}, seq {args.seq:,}, hidden {args.hidden}, top-k {args.top_k}, "
          f"fp32, {args.device}, {torch.get_num_threads()} threads, best of {args.rounds}; "
          f"first {PROMPT_TOKENS} tokens of each row are prompt")
    runs: dict[str, list[dict]] = {variant: [] for variant in variants}
    for _ in range(args.rounds):
        for variant in variants:
            command = [sys.executable, __file__, "--worker", variant, *sys.argv[1:]]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
            runs[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
    results = [{**tries[0], "peak_mib": max(t["peak_mib"] for t in tries),
                "seconds": min(t["seconds"] for t in tries)} for tries in runs.values()]
    naive = results[0]
    print(f"{'variant':<14}{'peak MiB':>10}{'vs naive':>10}{'seconds':>10}{'vs naive':>10}{'loss':>10}")
    for row in results:
        print(f"{row['variant']:<14}{row['peak_mib']:>10.0f}{row['peak_mib'] / naive['peak_mib']:>9.1%} "
              f"{row['seconds']:>10.2f}{row['seconds'] / naive['seconds']:>9.2f}x{row['loss']:>10.4f}")


if __name__ == "__main__":
    main()
