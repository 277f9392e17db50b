"""Distillation, calibration and cost metrics, for any model that gives logits for a list of token ids.

Every model is reached through two callables, so a transformers model and a GGUF file under
llama.cpp are measured by the same code:
  logits_fn(input_ids) -> (len, vocab) raw logits, row t predicting token t + 1
  generate_fn(input_ids, max_new_tokens, stop_at_eos=True) -> the new token ids, greedy; every
    engine stops at end-of-turn as a user's would, unless stop_at_eos=False (timing only)

Figures a model is judged by come with 95% intervals from a bootstrap over held-out prompts.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch

from potstill.chat import chat_prompts, tokenize_chat
from potstill.errors import InputError
from potstill.io import read_jsonl
from potstill.text import is_degenerate, words

LogitsFn = Callable[[list[int]], torch.Tensor]
GenerateFn = Callable[..., list[int]]  # (input_ids, max_new_tokens, stop_at_eos=True) -> new ids
BOOTSTRAP_SAMPLES = 2000


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
    """Return generate_fn for a transformers causal LM: greedy, stopping at end-of-turn unless told not to."""
    device = next(model.parameters()).device

    def generate(input_ids: list[int], max_new_tokens: int, stop_at_eos: bool = True) -> list[int]:
        ids = torch.tensor([input_ids], device=device)
        forced = {} if stop_at_eos else {"min_new_tokens": max_new_tokens}
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **forced)
        new = out[0, len(input_ids):].tolist()
        if stop_at_eos and tokenizer.eos_token_id in new:  # the end-of-turn token ends the answer
            new = new[:new.index(tokenizer.eos_token_id)]
        return new

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
    per_row: dict[str, list[float]] = {"tokens": [], "nll": [], "kl": [], "agree": []}
    argmax = []
    for index, row in enumerate(rows):
        positions, labels = _scored_positions(row)
        logprobs = torch.log_softmax(logits_fn(row["input_ids"])[positions].float(), dim=-1)
        per_row["nll"].append(-float(logprobs.gather(1, labels[:, None]).sum()))
        picks = logprobs.argmax(dim=-1)
        argmax.append(picks.tolist())
        if teacher_lp is not None:
            teacher = teacher_lp[index]
            per_row["kl"].append(float((teacher.exp() * (teacher - logprobs)).sum()))
            per_row["agree"].append(int((picks == teacher.argmax(dim=-1)).sum()))
        per_row["tokens"].append(len(labels))
    count = sum(per_row["tokens"])
    figures = {"heldout_nll": sum(per_row["nll"]) / count, "argmax": argmax, "rows": per_row}
    if teacher_lp is not None:
        figures.update(kl_vs_teacher=sum(per_row["kl"]) / count, top1_vs_teacher=sum(per_row["agree"]) / count)
    return figures


def bootstrap_interval(numerators: list[float], denominators: list[float] | None = None,
                       samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """Return the 95% bootstrap interval of sum(numerators) / sum(denominators) over resampled prompts.

    Prompts, not tokens, are resampled: tokens of one answer are not independent. Without
    denominators it is the interval of a mean (each prompt counts 1).
    """
    denominators = denominators if denominators is not None else [1.0] * len(numerators)
    if not numerators:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    n, stats = len(numerators), []
    for _ in range(samples):
        picks = [rng.randrange(n) for _ in range(n)]
        total = sum(denominators[i] for i in picks)
        stats.append(sum(numerators[i] for i in picks) / total if total else math.nan)
    stats.sort()
    return (stats[int(0.025 * (samples - 1))], stats[int(0.975 * (samples - 1))])


def intervals(record: dict) -> dict[str, list[float]]:
    """Return {metric: [low, high]} 95% intervals for the per-prompt metrics a record holds."""
    rows, found = record.get("rows") or {}, {}
    if rows.get("tokens"):
        found["heldout_nll"] = bootstrap_interval(rows["nll"], rows["tokens"])
        if rows.get("kl"):
            found["kl_vs_teacher"] = bootstrap_interval(rows["kl"], rows["tokens"])
            found["top1_vs_teacher"] = bootstrap_interval(rows["agree"], rows["tokens"])
    onpolicy = record.get("onpolicy_rows") or {}
    if onpolicy.get("tokens"):
        found["onpolicy_kl"] = bootstrap_interval(onpolicy["kl"], onpolicy["tokens"])
    answers = record.get("answers") or []
    if answers:
        found["degenerate_share"] = bootstrap_interval([float(a["degenerate"]) for a in answers])
    return {name: [round(low, 6), round(high, 6)] for name, (low, high) in found.items()}


def top1_agreement(argmax: list[list[int]], reference: list[list[int]]) -> float:
    """Return the share of held-out positions where two models' argmax tokens agree."""
    pairs = [(a, b) for row, ref in zip(argmax, reference, strict=True) for a, b in zip(row, ref, strict=True)]
    return sum(a == b for a, b in pairs) / len(pairs)


def calibration_bins(confidences: list[float], correct: list[bool], bins: int = 10) -> list[tuple[float, float, int]]:
    """Return (mean confidence, accuracy, members) of each non-empty equal-width confidence bin, lowest first."""
    found = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidences) if (low < c <= high) or (b == 0 and c == 0.0)]
        if members:
            found.append((sum(confidences[i] for i in members) / len(members),
                          sum(correct[i] for i in members) / len(members), len(members)))
    return found


def expected_calibration_error(confidences: list[float], correct: list[bool], bins: int = 10) -> float:
    """Return ECE: the |accuracy - confidence| of equal-width confidence bins, weighted by their share."""
    if not confidences:
        return math.nan
    total, error = len(confidences), 0.0
    for confidence, accuracy, members in calibration_bins(confidences, correct, bins):
        error += members / total * abs(accuracy - confidence)
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


def held_out_prompts(tokenizer, test_file: Path) -> list[tuple[str, list[int]]]:
    """Return (user prompt, chat-templated prompt ids) for every held-out row, in file order."""
    return [(question, ids) for _, question, ids in chat_prompts(tokenizer, test_file, "to answer")]


def answer_prompts(generate_fn: GenerateFn, tokenizer, prompts: list[tuple[str, list[int]]],
                   max_new_tokens: int) -> list[dict]:
    """Return the greedy answer to every prompt as a user would see it: stopped at end-of-turn.

    Each answer: {prompt, answer, tokens, cut_off (max_new_tokens reached first), degenerate
    (a repetition loop, potstill.text.is_degenerate), words}.
    """
    from tqdm.auto import tqdm

    answers = []
    for question, ids in tqdm(prompts, desc="greedy answers", unit="prompt", leave=False):
        new = generate_fn(ids, max_new_tokens)
        text = tokenizer.decode(new, skip_special_tokens=True)
        # The ids a user's reader saw, end-of-turn included when the answer stopped there (on-policy KL scores it).
        seen = new + ([tokenizer.eos_token_id] if len(new) < max_new_tokens else [])
        answers.append({"prompt": question, "answer": text, "tokens": len(new), "ids": seen,
                        "cut_off": len(new) >= max_new_tokens, "degenerate": is_degenerate(text),
                        "words": len(words(text))})
    return answers


def answer_figures(answers: list[dict]) -> dict:
    """Return the share of degenerate answers, of answers cut off by the token cap, and the mean length in words."""
    n = max(len(answers), 1)
    return {"degenerate_share": sum(a["degenerate"] for a in answers) / n,
            "cut_off_share": sum(a["cut_off"] for a in answers) / n,
            "answer_words": sum(a["words"] for a in answers) / n,
            "answer_tokens": sum(a["tokens"] for a in answers) / n}


def onpolicy_kl(logits_fn: LogitsFn, teacher_logits_fn: LogitsFn, prompts: list[tuple[str, list[int]]],
                answers: list[dict]) -> dict:
    """Return onpolicy_kl: KL(model || teacher) per token on the model's OWN greedy answers, full vocabulary.

    What a user experiences: the teacher-forced KL (kl_vs_teacher) is measured on the teacher's
    text, this one on the text the model actually writes (end-of-turn included where it stopped).
    Per-answer sums are kept (`onpolicy_rows`) for the bootstrap interval. Read it with the
    degenerate share and the answer length: a teacher shown a looping prefix predicts more of the
    loop, so loops can score well here (TRAPS.md).
    """
    rows: dict[str, list[float]] = {"kl": [], "tokens": []}
    for (_, ids), answer in zip(prompts, answers, strict=True):
        new = answer["ids"]
        if not new:
            continue
        sequence, start = ids + new, len(ids) - 1
        model_logits, teacher_logits = logits_fn(sequence), teacher_logits_fn(sequence)
        vocab = min(model_logits.shape[-1], teacher_logits.shape[-1])  # padded vocabularies: the shared ids
        mine = torch.log_softmax(model_logits[start:len(sequence) - 1, :vocab].float(), dim=-1)
        theirs = torch.log_softmax(teacher_logits[start:len(sequence) - 1, :vocab].float(), dim=-1)
        rows["kl"].append(float((mine.exp() * (mine - theirs)).sum()))
        rows["tokens"].append(len(new))
    return {"onpolicy_kl": sum(rows["kl"]) / max(sum(rows["tokens"]), 1), "onpolicy_rows": rows}


def time_generation(generate_fn: GenerateFn, prompts: list[tuple[str, list[int]]], new_tokens: int) -> dict:
    """Return ms_per_token and tokens_per_s of greedy decoding, every prompt made to generate exactly new_tokens.

    End-of-turn is ignored here (and only here) so every engine is timed on the same number of
    tokens. One short warm-up generation first (lazy initialisation, caches); prompt processing is
    included (prompts are short).
    """
    generate_fn(prompts[0][1], 2, stop_at_eos=False)  # warm-up
    tokens, seconds = 0, 0.0
    for _, ids in prompts:
        start = time.perf_counter()
        tokens += len(generate_fn(ids, new_tokens, stop_at_eos=False))
        seconds += time.perf_counter() - start
    return {"ms_per_token": 1000 * seconds / max(tokens, 1), "tokens_per_s": tokens / seconds if seconds else math.nan,
            "timed_tokens": tokens}


def answer_record(model, tokenizer, references: tuple, max_new_tokens: int) -> dict:
    """Return one HF model's figures against the teacher on held-out prompts, per prompt and in total.

    `references` = (prompts, scored rows, teacher logits_fn, teacher log-probs, teacher answers), as
    the bench scripts build them once. The record holds distill_metrics on the teacher's text, the
    model's greedy answers (stopped at end-of-turn, cut at max_new_tokens), the on-policy KL on them,
    answer_figures, and length_vs_teacher (mean answer tokens over the teacher's).
    """
    prompts, scored, teacher_logits, teacher_lp, teacher_answers = references
    record = distill_metrics(hf_logits_fn(model), scored, teacher_lp)
    answers = answer_prompts(hf_generate_fn(model, tokenizer), tokenizer, prompts, max_new_tokens)
    record.update(onpolicy_kl(hf_logits_fn(model), teacher_logits, prompts, answers), answers=answers,
                  **answer_figures(answers))
    record["length_vs_teacher"] = record["answer_tokens"] / answer_figures(teacher_answers)["answer_tokens"]
    return record

