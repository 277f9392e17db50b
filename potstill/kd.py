"""Knowledge-distillation loss on a teacher's stored top-k log-probabilities.

The teacher is never run during training: for each target token we hold the ids and log-probs
of its top-k candidates, captured at some temperature (llama.cpp: T=1). The loss is

    alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, teacher tokens)

on assistant tokens only. Only rows x k values are ever materialised for the teacher; the student's
full-vocabulary log-softmax is computed on the masked positions only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Log-prob used to pad a top-k slot that holds no candidate.
MISSING_LOGPROB = -1.0e4


def teacher_distribution(
    teacher_logprobs: torch.Tensor, temperature: float, capture_temperature: float, tail: str
) -> torch.Tensor:
    """Return teacher log-probs at `temperature` over the top-k (+1 tail bucket if tail="bucket").

    Log-probs captured at temperature Tc are logits/Tc up to a constant, so re-tempering to T
    scales them by Tc/T before normalising. With tail="bucket" the mass outside the top-k becomes
    one extra class, tempered like a single token; `student_distribution` builds the student's
    side the same way, so both are compared on the same k+1 classes.
    """
    valid = teacher_logprobs > MISSING_LOGPROB / 2
    scaled = torch.where(valid, teacher_logprobs * (capture_temperature / temperature),
                         torch.full_like(teacher_logprobs, float("-inf")))
    if tail == "renorm":
        return torch.log_softmax(scaled, dim=-1)
    kept_mass = torch.where(valid, teacher_logprobs.exp(), torch.zeros_like(teacher_logprobs)).sum(-1)
    tail_logprob = torch.log1p(-kept_mass.clamp(max=1 - 1e-6)) * (capture_temperature / temperature)
    return torch.log_softmax(torch.cat([scaled, tail_logprob.unsqueeze(-1)], dim=-1), dim=-1)


def student_distribution(
    student_logits: torch.Tensor, teacher_ids: torch.Tensor, valid: torch.Tensor,
    temperature: float, tail: str,
) -> torch.Tensor:
    """Return student log-probs at `temperature` on the teacher's top-k ids (+ tail bucket).

    The student goes through the same transform as the teacher: its T=1 probabilities on the
    k ids plus the rest as one bucket, then tempered. Both sides are then k+1 classes built the
    same way, so the KL is zero exactly when the student matches the teacher on them.
    """
    full = torch.log_softmax(student_logits.float(), dim=-1)
    on_topk = full.gather(-1, teacher_ids)
    on_topk = torch.where(valid, on_topk, torch.full_like(on_topk, float("-inf")))
    if tail == "renorm":
        return torch.log_softmax(on_topk / temperature, dim=-1)
    tail_logprob = torch.log1p(-on_topk.exp().sum(-1).clamp(max=1 - 1e-6))
    return torch.log_softmax(torch.cat([on_topk, tail_logprob.unsqueeze(-1)], dim=-1) / temperature, dim=-1)


def kl_per_token(teacher_log: torch.Tensor, student_log: torch.Tensor) -> torch.Tensor:
    """Return forward KL(teacher || student) per row, ignoring classes with zero teacher mass."""
    teacher_p = teacher_log.exp()
    terms = torch.where(teacher_p > 0, teacher_p * (teacher_log - student_log), torch.zeros_like(teacher_p))
    return terms.sum(-1)


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    kd_ids: torch.Tensor,
    kd_logprobs: torch.Tensor,
    kd_mask: torch.Tensor,
    alpha: float,
    temperature: float,
    capture_temperature: float = 1.0,
    tail: str = "bucket",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Return (total loss, CE term, KD term or None) for a batch of causal-LM logits.

    `labels`, `kd_ids`, `kd_logprobs` and `kd_mask` are aligned with the input tokens (the
    target of position t is predicted by logits at t-1); this function applies that shift.
    """
    logits, labels = logits[:, :-1], labels[:, 1:]
    kd_ids, kd_logprobs, kd_mask = kd_ids[:, 1:], kd_logprobs[:, 1:], kd_mask[:, 1:]
    ce_mask = labels != -100
    ce = F.cross_entropy(logits[ce_mask].float(), labels[ce_mask])
    kd_mask = kd_mask & ce_mask
    if alpha == 0 or not bool(kd_mask.any()):
        return ce, ce.detach(), None
    rows_logits = logits[kd_mask]  # (N, V): only the positions that carry soft targets
    ids, logprobs = kd_ids[kd_mask], kd_logprobs[kd_mask]
    valid = logprobs > MISSING_LOGPROB / 2
    teacher_log = teacher_distribution(logprobs, temperature, capture_temperature, tail)
    student_log = student_distribution(rows_logits, ids, valid, temperature, tail)
    kd = kl_per_token(teacher_log, student_log).mean() * temperature**2
    return alpha * kd + (1 - alpha) * ce, ce.detach(), kd.detach()
