"""Distillation, calibration and cost metrics, for any model that gives logits for a list of token ids.

Every model is reached through two callables, so a transformers model and a GGUF file under
llama.cpp are measured by the same code:
  logits_fn(input_ids) -> (len, vocab) raw logits, row t predicting token t + 1
  generate_fn(input_ids, max_new_tokens) -> the new token ids, greedy
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from potstill.chat import tokenize_chat
from potstill.errors import InputError
from potstill.io import read_jsonl

LogitsFn = Callable[[list[int]], torch.Tensor]
GenerateFn = Callable[[list[int], int], list[int]]


def heldout_rows(tokenizer, test_file: Path, max_seq_len: int = 512) -> list[dict]:
    """Return the held-out rows tokenized as in training: input_ids, labels (assistant tokens only)."""
    rows = [tokenize_chat(tokenizer, row["messages"], max_seq_len) for _, row in read_jsonl(test_file)]
    if not any(label != -100 for row in rows for label in row["labels"]):
        raise InputError(f"{test_file}: no held-out responses; raise curate.test_fraction")
    return rows


def _scored_positions(row: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (positions whose logits predict an assistant token, those tokens)."""
    labels = torch.tensor(row["labels"][1:])
    positions = torch.nonzero(labels != -100).flatten()
    return positions, labels[positions]


def hf_logits_fn(model) -> LogitsFn:
    """Return logits_fn for a transformers causal LM (on the model's device, results on CPU)."""
    device = next(model.parameters()).device

    def logits(input_ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return model(torch.tensor([input_ids], device=device)).logits[0].float().cpu()

    return logits


def hf_generate_fn(model, tokenizer) -> GenerateFn:
    """Return generate_fn for a transformers causal LM: greedy, exactly max_new_tokens (no early stop)."""
    device = next(model.parameters()).device

    def generate(input_ids: list[int], max_new_tokens: int) -> list[int]:
        ids = torch.tensor([input_ids], device=device)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 min_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        return out[0, len(input_ids):].tolist()

    return generate


def teacher_logprobs(logits_fn: LogitsFn, rows: list[dict]) -> list[torch.Tensor]:
    """Return per row the teacher's log-probabilities (T = 1, full vocabulary) at the scored positions.

    30 held-out rows of ~60 assistant tokens x 49,152 x 4 bytes: ~350 MB, held once for all models.
    """
    kept = []
    for row in rows:
        positions, _ = _scored_positions(row)
        kept.append(torch.log_softmax(logits_fn(row["input_ids"])[positions], dim=-1))
    return kept


def distill_metrics(logits_fn: LogitsFn, rows: list[dict], teacher_lp: list[torch.Tensor] | None) -> dict:
    """Return heldout_nll, kl_vs_teacher, top1_vs_teacher (means over assistant tokens) and the argmax ids.

    kl_vs_teacher = KL(teacher || model) at T = 1 over the full vocabulary; top1_vs_teacher = share
    of tokens where both pick the same next token. `argmax` (per row) lets gates compare two models.
    Without teacher log-probs only heldout_nll and argmax are computed.
    """
    nll, kl, agree, count, argmax = 0.0, 0.0, 0, 0, []
    for index, row in enumerate(rows):
        positions, labels = _scored_positions(row)
        logprobs = torch.log_softmax(logits_fn(row["input_ids"])[positions].float(), dim=-1)
        nll -= float(logprobs.gather(1, labels[:, None]).sum())
        picks = logprobs.argmax(dim=-1)
        argmax.append(picks.tolist())
        if teacher_lp is not None:
            teacher = teacher_lp[index]
            kl += float((teacher.exp() * (teacher - logprobs)).sum())
            agree += int((picks == teacher.argmax(dim=-1)).sum())
        count += len(labels)
    figures = {"heldout_nll": nll / count, "argmax": argmax}
    if teacher_lp is not None:
        figures.update(kl_vs_teacher=kl / count, top1_vs_teacher=agree / count)
    return figures


def top1_agreement(argmax: list[list[int]], reference: list[list[int]]) -> float:
    """Return the share of held-out positions where two models' argmax tokens agree."""
    pairs = [(a, b) for row, ref in zip(argmax, reference, strict=True) for a, b in zip(row, ref, strict=True)]
    return sum(a == b for a, b in pairs) / len(pairs)


def expected_calibration_error(confidences: list[float], correct: list[bool], bins: int = 10) -> float:
    """Return ECE: the |accuracy - confidence| of equal-width confidence bins, weighted by their share."""
    if not confidences:
        return math.nan
    total, error = len(confidences), 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidences) if (low < c <= high) or (b == 0 and c == 0.0)]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            confidence = sum(confidences[i] for i in members) / len(members)
            error += len(members) / total * abs(accuracy - confidence)
    return error


def mc_confidences(samples: list[dict]) -> tuple[list[float], list[bool]]:
    """Return (confidence, correct) per multiple-choice item from lm-eval's logged samples.

    Softmax over the choices' log-likelihoods: confidence = the top choice's probability,
    correct = the top choice is the gold one.
    """
    confidences, correct = [], []
    for sample in samples:
        loglikelihoods = torch.tensor([float(resp[0]) for resp in sample["filtered_resps"]])
        probs = torch.softmax(loglikelihoods, dim=0)
        target = sample["target"]
        gold = int(target) if not isinstance(target, list) else int(target[0])
        confidences.append(float(probs.max()))
        correct.append(int(probs.argmax()) == gold)
    return confidences, correct


def count_parameters(model) -> int:
    """Return the number of distinct parameters (a tied embedding and LM head count once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def sample_answers(generate_fn: GenerateFn, tokenizer, test_file: Path, n_prompts: int,
                   new_tokens: int) -> dict:
    """Return greedy answers to the first `n_prompts` held-out prompts and the CPU cost of producing them.

    One short warm-up generation first (lazy initialisation, caches); then each prompt generates
    `new_tokens` tokens and ms_per_token = wall time / tokens generated (prompt processing
    included, prompts are short). The answer text stops at the first end-of-turn token.
    """
    prompts = []
    for _, row in read_jsonl(test_file):
        if len(prompts) == max(n_prompts, 1):
            break
        text = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
        prompts.append((row["messages"][-2]["content"], tokenizer(text, add_special_tokens=False)["input_ids"]))
    if not prompts:
        raise InputError(f"{test_file}: no held-out rows to answer")
    generate_fn(prompts[0][1], 2)  # warm-up
    answers, tokens, seconds = [], 0, 0.0
    for question, ids in prompts[:n_prompts] if n_prompts else prompts:
        start = time.perf_counter()
        new = generate_fn(ids, new_tokens)
        seconds += time.perf_counter() - start
        tokens += len(new)
        stop = new.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in new else len(new)
        answers.append({"prompt": question, "answer": tokenizer.decode(new[:stop], skip_special_tokens=True)})
    return {"samples": answers if n_prompts else [], "ms_per_token": 1000 * seconds / max(tokens, 1),
            "tokens_per_s": tokens / seconds if seconds else math.nan}
