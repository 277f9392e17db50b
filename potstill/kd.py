"""Knowledge-distillation loss on a teacher's stored top-k log-probabilities.

The teacher is never run during training: for each target token we hold the ids and log-probs
of its top-k candidates, captured at some temperature (llama.cpp: T=1). The loss is

    alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, teacher tokens)

on assistant tokens only. Only rows x k values are ever materialised for the teacher; the student's
full-vocabulary log-softmax is computed on the masked positions only.
"""

from __future__ import annotations

import math

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
    return _kl(teacher_log, student_log)


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    p = p_log.exp()
    return torch.where(p > 0, p * (p_log - q_log), torch.zeros_like(p)).sum(-1)


def divergence(teacher_log: torch.Tensor, student_log: torch.Tensor, kind: str = "forward_kl",
               beta: float = 0.5) -> torch.Tensor:
    """Return the per-row divergence between teacher and student log-distributions.

    forward_kl = KL(teacher || student): mass-covering, the classic Hinton loss.
    reverse_kl = KL(student || teacher): mode-seeking; the student may ignore unlikely tokens.
    jsd = generalized Jensen-Shannon with mixture M = beta * teacher + (1 - beta) * student:
    beta * KL(teacher || M) + (1 - beta) * KL(student || M), bounded, as in GKD.
    """
    if kind == "forward_kl":
        return _kl(teacher_log, student_log)
    if kind == "reverse_kl":
        return _kl(student_log, teacher_log)
    if kind == "jsd":
        mixture = torch.logsumexp(torch.stack([teacher_log + math.log(beta),
                                               student_log + math.log(1 - beta)]), dim=0)
        return beta * _kl(teacher_log, mixture) + (1 - beta) * _kl(student_log, mixture)
    raise ValueError(f"unknown divergence {kind!r}; use forward_kl, reverse_kl or jsd")


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
    loss: str = "forward_kl",
    jsd_beta: float = 0.5,
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
    kd = divergence(teacher_log, student_log, loss, jsd_beta).mean() * temperature**2
    return alpha * kd + (1 - alpha) * ce, ce.detach(), kd.detach()


def hidden_state_loss(student_layers: list[torch.Tensor], teacher_layers: list[torch.Tensor],
                      layer_map: dict[int, int], labels: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Return the mean over mapped layers of the hidden-state distance on assistant positions.

    `student_layers[i]` / `teacher_layers[j]` are the outputs of decoder layer i / j (batch, seq,
    width); `layer_map` is {student layer: the teacher layer it was copied from}. cosine = 1 - cos
    (DistilBERT; blind to the scale of the residual stream), mse = mean squared error per element.
    Only positions with a label (assistant tokens) count, like the CE and KD terms.
    """
    mask = labels != -100
    if not bool(mask.any()):
        return student_layers[0].sum() * 0.0  # keeps the graph connected for DDP's gradient sync
    terms = []
    for student_index, teacher_index in sorted(layer_map.items()):
        student = student_layers[student_index][mask].float()
        teacher = teacher_layers[teacher_index][mask].float().detach()
        if kind == "cosine":
            terms.append((1 - F.cosine_similarity(student, teacher, dim=-1)).mean())
        elif kind == "mse":
            terms.append(F.mse_loss(student, teacher))
        else:
            raise ValueError(f"unknown hidden loss {kind!r}; use cosine or mse")
    return torch.stack(terms).mean()
