"""The KD loss: exact where it must be, scaled by T^2, masked, and with finite gradients."""

import math

import pytest
import torch

from potstill.kd import (
    MISSING_LOGPROB,
    distillation_loss,
    kl_per_token,
    student_distribution,
    teacher_distribution,
)


def topk_of(logits: torch.Tensor, k: int):
    logprobs = torch.log_softmax(logits, -1)
    values, ids = logprobs.topk(k, -1)
    return ids, values


def test_bucket_at_capture_temperature_is_the_exact_topk_plus_tail():
    logits = torch.randn(3, 50)
    ids, lps = topk_of(logits, 5)
    dist = teacher_distribution(lps, temperature=1.0, capture_temperature=1.0, tail="bucket").exp()
    assert torch.allclose(dist[:, :5], lps.exp(), atol=1e-6)
    assert torch.allclose(dist.sum(-1), torch.ones(3), atol=1e-6)


def test_retempering_matches_softmax_of_scaled_logits_under_renorm():
    logits = torch.randn(4, 30)
    ids, lps = topk_of(logits, 30)  # full support: renorm is exact at any temperature
    dist = teacher_distribution(lps, temperature=2.0, capture_temperature=1.0, tail="renorm")
    expected = torch.log_softmax(logits / 2.0, -1).gather(-1, ids)
    assert torch.allclose(dist, expected, atol=1e-5)


@pytest.mark.parametrize("tail", ["bucket", "renorm"])
def test_kl_is_zero_when_student_equals_teacher_and_positive_otherwise(tail):
    logits = torch.randn(6, 40)
    ids, lps = topk_of(logits, 8)
    valid = torch.ones_like(ids, dtype=torch.bool)
    teacher = teacher_distribution(lps, 1.0, 1.0, tail)
    same = student_distribution(logits, ids, valid, 1.0, tail)
    other = student_distribution(torch.randn(6, 40), ids, valid, 1.0, tail)
    assert kl_per_token(teacher, same).abs().max() < 1e-5
    assert (kl_per_token(teacher, other) > 0).all()


def test_missing_topk_slots_are_ignored():
    logits = torch.randn(2, 20)
    ids, lps = topk_of(logits, 4)
    lps_padded = lps.clone()
    lps_padded[:, 3] = MISSING_LOGPROB
    valid = lps_padded > MISSING_LOGPROB / 2
    teacher = teacher_distribution(lps_padded, 1.0, 1.0, "renorm")
    assert teacher[:, 3].exp().max() == 0
    student = student_distribution(logits, ids, valid, 1.0, "renorm")
    assert torch.isfinite(kl_per_token(teacher, student)).all()


def batch(vocab=32, length=6, k=4, seed=0):
    torch.manual_seed(seed)
    logits = torch.randn(2, length, vocab, requires_grad=True)
    teacher_logits = torch.randn(2, length, vocab)
    ids, lps = topk_of(teacher_logits, k)
    labels = teacher_logits.argmax(-1)
    labels[:, :2] = -100  # the prompt
    kd_mask = labels != -100
    return logits, labels, ids, lps, kd_mask


def test_alpha_zero_is_plain_cross_entropy():
    logits, labels, ids, lps, kd_mask = batch()
    loss, ce, kd = distillation_loss(logits, labels, ids, lps, kd_mask, alpha=0.0, temperature=2.0)
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 32), labels[:, 1:].reshape(-1))
    assert kd is None
    assert math.isclose(float(loss), float(expected), rel_tol=1e-5)


def test_kd_term_scales_with_temperature_squared_and_mixes_by_alpha():
    logits, labels, ids, lps, kd_mask = batch()
    loss, ce, kd = distillation_loss(logits, labels, ids, lps, kd_mask, alpha=0.3, temperature=3.0)
    assert math.isclose(float(loss), 0.3 * float(kd) + 0.7 * float(ce), rel_tol=1e-5)
    # The raw KL at T=3, times 9, is the reported KD term.
    shifted_mask = kd_mask[:, 1:]
    rows = logits[:, :-1][shifted_mask]
    t_ids, t_lps = ids[:, 1:][shifted_mask], lps[:, 1:][shifted_mask]
    valid = torch.ones_like(t_ids, dtype=torch.bool)
    raw = kl_per_token(teacher_distribution(t_lps, 3.0, 1.0, "bucket"),
                       student_distribution(rows, t_ids, valid, 3.0, "bucket")).mean()
    assert math.isclose(float(kd), 9 * float(raw), rel_tol=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # Prompt positions get no gradient.
    assert logits.grad[:, 0].abs().max() == 0


def test_minimising_kd_moves_student_towards_teacher():
    logits, labels, ids, lps, kd_mask = batch(seed=1)
    student = torch.nn.Parameter(torch.zeros_like(logits))
    optimizer = torch.optim.Adam([student], lr=0.1)
    first = None
    for _ in range(100):
        optimizer.zero_grad()
        loss, _, kd = distillation_loss(student, labels, ids, lps, kd_mask, alpha=1.0, temperature=1.0)
        first = float(kd) if first is None else first
        loss.backward()
        optimizer.step()
    assert float(kd) < 0.1 * first
