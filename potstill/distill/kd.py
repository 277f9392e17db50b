"""Knowledge-distillation loss on a teacher's stored top-k log-probabilities.

The teacher is never run during training: for each target token we hold the ids and log-probs
of its top-k candidates, captured at some temperature (llama.cpp: T=1). The loss is

    alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, teacher tokens)

on assistant tokens only. Only rows x k values are ever materialised for the teacher. The student's
full-vocabulary logits are never held for the whole batch either: `chunked_distillation_loss` takes
the final hidden states and the LM head weight and projects a chunk of rows at a time, forward and
backward (the gradients of each chunk are computed as it goes, as Liger's fused linear
cross-entropy does). `distillation_loss` is the same loss on full logits, kept as the reference.
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

    Captured at the distillation temperature (Tc == T: the score stage stores them so), the top-k
    and the tail bucket are exact: the bucket is 1 - the top-k's mass at T. Captured at another
    temperature (API log-probs are at T=1), log-probs are logits/Tc up to a constant, so the top-k
    is re-tempered exactly by scaling with Tc/T, but the bucket can only be tempered as if it were
    one token ((sum p)^(Tc/T) instead of sum p^(Tc/T)): an approximation, used consistently on
    both sides (see `exact_tail`); tail="renorm" is exact either way.
    """
    valid = teacher_logprobs > MISSING_LOGPROB / 2
    scaled = torch.where(valid, teacher_logprobs * (capture_temperature / temperature),
                         torch.full_like(teacher_logprobs, float("-inf")))
    if tail == "renorm":
        return torch.log_softmax(scaled, dim=-1)
    kept_mass = torch.where(valid, teacher_logprobs.exp(), torch.zeros_like(teacher_logprobs)).sum(-1)
    tail_logprob = torch.log1p(-kept_mass.clamp(max=1 - 1e-6)) * (capture_temperature / temperature)
    return torch.log_softmax(torch.cat([scaled, tail_logprob.unsqueeze(-1)], dim=-1), dim=-1)


def exact_tail(temperature: float, capture_temperature: float) -> bool:
    """Return whether the tail bucket can be exact: the teacher's log-probs were captured at the KD temperature."""
    return math.isclose(temperature, capture_temperature)


def student_log_probs(student_logits: torch.Tensor, temperature: float, capture_temperature: float) -> torch.Tensor:
    """Return the student's full-vocabulary log-probs the top-k is gathered from: at T when the tail is exact."""
    scale = temperature if exact_tail(temperature, capture_temperature) else 1.0
    return torch.log_softmax(student_logits.float() / scale, dim=-1)


def student_distribution(
    student_logits: torch.Tensor, teacher_ids: torch.Tensor, valid: torch.Tensor,
    temperature: float, tail: str, capture_temperature: float = 1.0,
) -> torch.Tensor:
    """Return student log-probs at `temperature` on the teacher's top-k ids (+ tail bucket).

    The student goes through the same transform as the teacher: with an exact tail its
    probabilities at T on the k ids plus the rest of its mass at T as the bucket; otherwise its
    T=1 probabilities and bucket, tempered as k+1 classes. Both sides are k+1 classes built the
    same way, so the KL is zero exactly when the student matches the teacher on them.
    """
    full = student_log_probs(student_logits, temperature, capture_temperature)
    return topk_student_distribution(full.gather(-1, teacher_ids), valid, temperature, tail, capture_temperature)


def topk_student_distribution(on_topk: torch.Tensor, valid: torch.Tensor, temperature: float,
                              tail: str, capture_temperature: float = 1.0) -> torch.Tensor:
    """Return `student_distribution` from log-probs already gathered on the top-k ids (see `student_log_probs`)."""
    on_topk = torch.where(valid, on_topk, torch.full_like(on_topk, float("-inf")))
    exact = exact_tail(temperature, capture_temperature)
    if tail == "renorm":
        return torch.log_softmax(on_topk if exact else on_topk / temperature, dim=-1)
    tail_logprob = torch.log1p(-on_topk.exp().sum(-1).clamp(max=1 - 1e-6))
    classes = torch.cat([on_topk, tail_logprob.unsqueeze(-1)], dim=-1)
    return torch.log_softmax(classes if exact else classes / temperature, dim=-1)


def kl_per_token(teacher_log: torch.Tensor, student_log: torch.Tensor) -> torch.Tensor:
    """Return forward KL(teacher || student) per row, ignoring classes with zero teacher mass."""
    return _kl(teacher_log, student_log)


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    # Classes outside p's support (-inf, e.g. an empty top-k slot) are zeroed before the
    # subtraction too: -inf - -inf is NaN, and torch.where alone would pass NaN to the gradient.
    support = p_log.exp() > 0
    p_log = torch.where(support, p_log, torch.zeros_like(p_log))
    q_log = torch.where(support, q_log, torch.zeros_like(q_log))
    return torch.where(support, p_log.exp() * (p_log - q_log), torch.zeros_like(p_log)).sum(-1)


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
        # A class neither side supports (an empty top-k slot) gets -inf, outside the logsumexp:
        # its gradient over two -inf inputs would be NaN.
        either = (teacher_log > float("-inf")) | (student_log > float("-inf"))
        zero = torch.zeros_like(teacher_log)
        mixture = torch.logsumexp(torch.stack([torch.where(either, teacher_log, zero) + math.log(beta),
                                               torch.where(either, student_log, zero) + math.log(1 - beta)]), dim=0)
        mixture = torch.where(either, mixture, torch.full_like(mixture, float("-inf")))
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
    normalizer: tuple[float, float] | None = None,
    vocab_limit: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Return (total loss, CE term, KD term or None) for a batch of causal-LM logits.

    `vocab_limit`: only the first ids (the tokenizer's real tokens) are classes; embedding rows a
    model pads its vocabulary with (Qwen2.5-0.5B has 151,936 rows, -7B 152,064, one tokenizer of
    151,665 tokens) are left out on both sides, so a teacher and a student padded differently
    share one id range.

    `labels`, `kd_ids`, `kd_logprobs` and `kd_mask` are aligned with the input tokens (the
    target of position t is predicted by logits at t-1); this function applies that shift.
    Each term is a sum over its tokens divided by `normalizer` = (labelled tokens, tokens with
    soft targets) of the whole accumulated batch (see `token_counts`), so micro-batches of a
    gradient-accumulation step add up to the step's per-token mean; None = this batch's own counts.
    """
    logits, labels = logits[:, :-1, :vocab_limit], labels[:, 1:]
    kd_ids, kd_logprobs, kd_mask = kd_ids[:, 1:], kd_logprobs[:, 1:], kd_mask[:, 1:]
    ce_mask = labels != -100
    kd_mask = kd_mask & ce_mask
    n_ce, n_kd = normalizer if normalizer is not None else (int(ce_mask.sum()), int(kd_mask.sum()))
    ce = F.cross_entropy(logits[ce_mask].float(), labels[ce_mask], reduction="sum") / max(n_ce, 1)
    if alpha == 0 or n_kd == 0:  # no soft targets anywhere in the (accumulated) batch: plain CE
        return ce, ce.detach(), None
    if not bool(kd_mask.any()):  # this micro-batch has none, others of its step do
        return (1 - alpha) * ce, ce.detach(), ce.new_zeros(())
    rows_logits = logits[kd_mask]  # (N, V): only the positions that carry soft targets
    ids, logprobs = kd_ids[kd_mask], kd_logprobs[kd_mask]
    valid = logprobs > MISSING_LOGPROB / 2
    teacher_log = teacher_distribution(logprobs, temperature, capture_temperature, tail)
    student_log = student_distribution(rows_logits, ids, valid, temperature, tail, capture_temperature)
    kd = divergence(teacher_log, student_log, loss, jsd_beta).sum() / max(n_kd, 1) * temperature**2
    return alpha * kd + (1 - alpha) * ce, ce.detach(), kd.detach()


def token_counts(batches: list[dict]) -> torch.Tensor:
    """Return [labelled tokens, labelled tokens with soft targets] over batches (after the causal shift)."""
    labelled = [batch["labels"][:, 1:] != -100 for batch in batches]
    return torch.stack([sum(mask.sum() for mask in labelled),
                        sum((mask & batch["kd_mask"][:, 1:]).sum() for mask, batch in zip(labelled, batches,
                                                                                           strict=True))])


def chunked_distillation_loss(
    hidden: torch.Tensor,
    head_weight: torch.Tensor,
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
    chunk_rows: int = 1024,
    normalizer: tuple[float, float] | None = None,
    vocab_limit: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Return `distillation_loss` of the logits `hidden @ head_weight.T`, never holding them all.

    `hidden` is the student's final hidden state (after the final norm, batch x seq x width) and
    `head_weight` its LM head (vocab x width). Only the labelled rows are projected, `chunk_rows`
    at a time; each chunk's gradients with respect to `hidden` and `head_weight` are computed at
    once and its logits freed, so at most chunk_rows x vocab values live in forward or backward.
    A batch without any labelled token gives a zero loss (still connected to the graph, for DDP).
    `normalizer` and `vocab_limit` as in `distillation_loss`.
    """
    head_weight = head_weight[:vocab_limit]
    hidden, labels = hidden[:, :-1], labels[:, 1:]
    kd_ids, kd_logprobs, kd_mask = kd_ids[:, 1:], kd_logprobs[:, 1:], kd_mask[:, 1:]
    ce_mask = labels != -100
    rows, targets = hidden[ce_mask], labels[ce_mask]  # (N, width): the rows with a label
    kd_rows = (kd_mask & ce_mask)[ce_mask]  # which of those carry soft targets
    n_ce, n_kd = normalizer if normalizer is not None else (rows.shape[0], int(kd_rows.sum()))
    with_kd = alpha != 0 and n_kd > 0  # soft targets somewhere in the (accumulated) batch
    n_ce, n_kd = max(n_ce, 1), max(n_kd, 1)
    teacher_log = ids = valid = None
    if with_kd and bool(kd_rows.any()):
        ids, logprobs = kd_ids[ce_mask][kd_rows], kd_logprobs[ce_mask][kd_rows]
        valid = logprobs > MISSING_LOGPROB / 2
        teacher_log = teacher_distribution(logprobs, temperature, capture_temperature, tail)
    if rows.shape[0] == 0:
        zero = (hidden.sum() + head_weight.sum()) * 0.0
        return zero, zero.detach(), None
    # Index of each chunk's first soft-target row among all soft-target rows.
    kd_starts = torch.cumsum(kd_rows, 0) - kd_rows.long()

    def chunk_loss(logits: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        log_probs = torch.log_softmax(logits, dim=-1)
        ce_sum = F.nll_loss(log_probs, targets[start:end], reduction="sum")
        if not with_kd:
            return ce_sum / n_ce, ce_sum.detach(), ce_sum.new_zeros(())
        chunk_kd = kd_rows[start:end]
        first = int(kd_starts[start])
        last = first + int(chunk_kd.sum())
        if last == first:
            return (1 - alpha) * ce_sum / n_ce, ce_sum.detach(), ce_sum.new_zeros(())
        kd_log_probs = (torch.log_softmax(logits / temperature, dim=-1)
                        if exact_tail(temperature, capture_temperature) and temperature != 1 else log_probs)
        on_topk = _gather_rows(kd_log_probs, chunk_kd, ids[first:last])
        student_log = topk_student_distribution(on_topk, valid[first:last], temperature, tail, capture_temperature)
        kd_sum = divergence(teacher_log[first:last], student_log, loss, jsd_beta).sum() * temperature**2
        total = alpha * kd_sum / n_kd + (1 - alpha) * ce_sum / n_ce
        return total, ce_sum.detach(), kd_sum.detach()

    total, ce_sum, kd_sum = _ChunkedHeadLoss.apply(rows, head_weight, chunk_loss, chunk_rows,
                                                    torch.is_grad_enabled())
    ce = ce_sum / n_ce
    return total, ce, (kd_sum / n_kd if with_kd else None)


def _gather_rows(log_probs: torch.Tensor, rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Return log_probs[rows].gather(-1, ids) without copying the selected full-vocabulary rows."""
    positions = rows.nonzero().squeeze(-1)
    return log_probs[positions.unsqueeze(-1), ids]


class _ChunkedHeadLoss(torch.autograd.Function):
    """Sum of `chunk_loss` over row chunks of `rows @ weight.T`; gradients computed chunk by chunk in forward."""

    @staticmethod
    def forward(ctx, rows, weight, chunk_loss, chunk_rows, grad_enabled):
        need_grad = grad_enabled and (rows.requires_grad or weight.requires_grad)
        ctx.weight_dtype = weight.dtype
        grad_rows = torch.zeros_like(rows) if need_grad and rows.requires_grad else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_grad and weight.requires_grad else None
        total = ce_sum = kd_sum = torch.zeros((), dtype=torch.float32, device=rows.device)
        for start in range(0, rows.shape[0], chunk_rows):
            end = min(start + chunk_rows, rows.shape[0])
            chunk = rows[start:end]
            logits = (chunk @ weight.T).float()
            with torch.enable_grad():
                logits.requires_grad_(need_grad)
                loss, ce_part, kd_part = chunk_loss(logits, start, end)
                if need_grad:
                    (grad_logits,) = torch.autograd.grad(loss, logits)
            del logits
            total, ce_sum, kd_sum = total + loss.detach(), ce_sum + ce_part, kd_sum + kd_part
            if need_grad:
                grad_logits = grad_logits.to(chunk.dtype)
                if grad_rows is not None:
                    grad_rows[start:end] = grad_logits @ weight.to(chunk.dtype)
                if grad_weight is not None:
                    grad_weight.addmm_(grad_logits.T.float(), chunk.float())
                del grad_logits
        ctx.save_for_backward(grad_rows, grad_weight)
        ctx.mark_non_differentiable(ce_sum, kd_sum)
        return total, ce_sum, kd_sum

    @staticmethod
    def backward(ctx, grad_total, _grad_ce, _grad_kd):
        grad_rows, grad_weight = ctx.saved_tensors
        return (None if grad_rows is None else grad_rows * grad_total,
                None if grad_weight is None else (grad_weight * grad_total).to(ctx.weight_dtype), None, None, None)


def hidden_projections(layer_map: dict[int, int], student_width: int, teacher_width: int) -> torch.nn.ModuleDict:
    """Return a trainable Linear(student width -> teacher width) per mapped student layer; empty if widths agree.

    Keyed by the student layer index as a string (ModuleDict keys must be). Used by the loss only,
    so the merged student never carries them.
    """
    if student_width == teacher_width:
        return torch.nn.ModuleDict()
    return torch.nn.ModuleDict({str(student_index): torch.nn.Linear(student_width, teacher_width, bias=False)
                                for student_index in sorted(layer_map)})


def hidden_state_loss(student_layers: list[torch.Tensor], teacher_layers: list[torch.Tensor],
                      layer_map: dict[int, int], labels: torch.Tensor, kind: str = "cosine",
                      projections: torch.nn.ModuleDict | None = None) -> torch.Tensor:
    """Return the mean over mapped layers of the hidden-state distance on assistant positions.

    `student_layers[i]` / `teacher_layers[j]` are the outputs of decoder layer i / j (batch, seq,
    width); `layer_map` is {student layer: the teacher layer it was copied from}. cosine = 1 - cos
    (DistilBERT; blind to the scale of the residual stream), mse = mean squared error per element.
    Only positions with a label (assistant tokens) count, like the CE and KD terms. A student
    narrower or wider than its teacher goes through `projections[str(i)]` (`hidden_projections`).
    """
    projections = projections if projections is not None else torch.nn.ModuleDict()
    mask = labels != -100
    if not bool(mask.any()):
        # Zero, but still connected to every trainable tensor: DDP waits for all their gradients.
        return student_layers[0].sum() * 0.0 + sum(p.sum() * 0.0 for p in projections.parameters())
    terms = []
    for student_index, teacher_index in sorted(layer_map.items()):
        student = student_layers[student_index][mask]
        if str(student_index) in projections:
            student = projections[str(student_index)](student)
        student = student.float()
        teacher = teacher_layers[teacher_index][mask].float().detach()
        if kind == "cosine":
            terms.append((1 - F.cosine_similarity(student, teacher, dim=-1)).mean())
        elif kind == "mse":
            terms.append(F.mse_loss(student, teacher))
        else:
            raise ValueError(f"unknown hidden loss {kind!r}; use cosine or mse")
    return torch.stack(terms).mean()
