"""The KD loss: exact where it must be, scaled by T^2, masked, and with finite gradients."""

import math

import pytest
import torch

from potstill.distill.kd import (
    MISSING_LOGPROB,
    chunked_distillation_loss,
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


def grouped_tempered_kl(teacher_logits, student_logits, ids, temperature):
    """KL at T over the full vocabulary, computed directly: each top-k id a class, the rest of the vocabulary one."""
    p = torch.softmax(teacher_logits.double() / temperature, -1)
    q = torch.softmax(student_logits.double() / temperature, -1)
    rest = torch.ones_like(p, dtype=torch.bool).scatter(-1, ids, False)  # the vocabulary outside the top-k
    p_all = torch.cat([p.gather(-1, ids), (p * rest).sum(-1, keepdim=True)], -1)
    q_all = torch.cat([q.gather(-1, ids), (q * rest).sum(-1, keepdim=True)], -1)
    terms = torch.where(p_all > 0, p_all * (p_all.log() - q_all.log()), torch.zeros_like(p_all))
    return terms.sum(-1)


@pytest.mark.parametrize("k", [32, 8])  # 32 = the whole vocabulary: no tail at all
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kd_at_temperature_is_t_squared_times_the_full_vocabulary_tempered_kl(k, temperature):
    """Soft targets stored at kd.temperature (as the score stage stores them) give the exact tempered KL."""
    torch.manual_seed(3)
    rows, vocab = 7, 32
    teacher_logits, student_logits = 3 * torch.randn(rows, vocab), 3 * torch.randn(rows, vocab)
    lps, ids = torch.log_softmax(teacher_logits / temperature, -1).topk(k, -1)
    # One sequence of rows + 1 tokens: position t predicts token t + 1, all of them labelled.
    logits = torch.cat([student_logits, torch.zeros(1, vocab)])[None].requires_grad_(True)
    labels = torch.cat([torch.tensor([-100]), teacher_logits.argmax(-1)])[None]
    pad = lambda x, fill: torch.cat([torch.full((1, *x.shape[1:]), fill, dtype=x.dtype), x])[None]  # noqa: E731
    kd_ids, kd_lps = pad(ids, 0), pad(lps, 0.0)
    kd_mask = torch.tensor([[False] + [True] * rows])
    expected = temperature**2 * grouped_tempered_kl(teacher_logits, student_logits, ids, temperature).mean()
    loss, ce, kd = distillation_loss(logits, labels, kd_ids, kd_lps, kd_mask, alpha=0.3, temperature=temperature,
                                     capture_temperature=temperature, tail="bucket")
    assert float(kd) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
    assert float(loss) == pytest.approx(0.3 * float(kd) + 0.7 * float(ce), rel=1e-5)
    # The chunked path on the same logits (hidden states = logits, LM head = identity), 3 rows at a time.
    _, _, chunked_kd = chunked_distillation_loss(
        logits.detach(), torch.eye(vocab), labels, kd_ids, kd_lps, kd_mask, alpha=0.3,
        temperature=temperature, capture_temperature=temperature, tail="bucket", chunk_rows=3)
    assert float(chunked_kd) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
    loss.backward()
    assert logits.grad[:, -1].abs().max() == 0 and logits.grad[:, 0].abs().max() > 0  # the last predicts nothing


def test_api_log_probs_at_another_temperature_keep_an_approximate_but_consistent_bucket():
    """Captured at T=1, distilled at T=2: the bucket is tempered as one token on both sides (KL 0 at equality)."""
    torch.manual_seed(4)
    logits = 3 * torch.randn(5, 32)
    lps, ids = torch.log_softmax(logits, -1).topk(6, -1)
    valid = torch.ones_like(ids, dtype=torch.bool)
    teacher = teacher_distribution(lps, 2.0, 1.0, "bucket")
    student = student_distribution(logits, ids, valid, 2.0, "bucket", capture_temperature=1.0)
    assert kl_per_token(teacher, student).abs().max() < 1e-5
    exact = grouped_tempered_kl(logits, logits + 0.5 * torch.randn(5, 32), ids, 2.0)
    assert (exact > 0).all()  # the exact grouped KL is a different quantity: hence the train warning


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


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_divergences_vanish_on_equal_distributions_and_equal_their_definitions(kind):
    from potstill.distill.kd import divergence

    torch.manual_seed(0)
    p = torch.log_softmax(torch.randn(5, 12), -1)
    q = torch.log_softmax(torch.randn(5, 12), -1)
    assert divergence(p, p, kind).abs().max() < 1e-6
    # Computed from the definitions with torch's kl_div (KL(a || b) = kl_div(b, a)), not with our helpers.
    kl = lambda a, b: torch.nn.functional.kl_div(b, a, log_target=True, reduction="none").sum(-1)  # noqa: E731
    mixture = torch.log(0.5 * p.exp() + 0.5 * q.exp())
    expected = {"forward_kl": kl(p, q), "reverse_kl": kl(q, p),
                "jsd": 0.5 * kl(p, mixture) + 0.5 * kl(q, mixture)}[kind]
    assert torch.allclose(divergence(p, q, kind), expected, atol=1e-6)
    if kind == "jsd":  # bounded by log 2 for beta = 0.5
        assert (divergence(p, q, kind) <= math.log(2) + 1e-6).all()


def test_reverse_kl_is_forward_kl_with_roles_swapped():
    from potstill.distill.kd import divergence

    torch.manual_seed(1)
    p = torch.log_softmax(torch.randn(3, 7), -1)
    q = torch.log_softmax(torch.randn(3, 7), -1)
    assert torch.allclose(divergence(p, q, "reverse_kl"), divergence(q, p, "forward_kl"))
    assert not torch.allclose(divergence(p, q, "reverse_kl"), divergence(p, q, "forward_kl"))


def layer_outputs(model, input_ids):
    from potstill.distill.trainer import recording_layer_outputs

    with recording_layer_outputs(model) as layers:
        model(input_ids=input_ids)
    return layers


@pytest.fixture(scope="module")
def teacher_and_pruned(tokenizer):
    import copy

    from potstill.models import prune_layers, tiny_llama

    teacher = tiny_llama(tokenizer, layers=4).eval().requires_grad_(False)
    student = copy.deepcopy(teacher).requires_grad_(True)
    layer_map = prune_layers(student, [0, 2])
    return teacher, student, layer_map


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_hidden_loss_is_zero_for_the_teacher_itself_and_positive_for_a_pruned_student(teacher_and_pruned, kind):
    from potstill.distill.kd import hidden_state_loss

    teacher, student, layer_map = teacher_and_pruned
    ids = torch.randint(0, 1000, (2, 12))
    labels = ids.clone()
    labels[:, :5] = -100  # the prompt
    with torch.no_grad():
        teacher_layers = layer_outputs(teacher, ids)
        identity = {i: i for i in range(4)}
        assert hidden_state_loss(teacher_layers, teacher_layers, identity, labels, kind).abs() < 1e-6
        # Student layer 0 is teacher layer 0 unchanged; layer 1 (teacher 2) now reads layer 0's output.
        assert hidden_state_loss(layer_outputs(student, ids), teacher_layers, layer_map, labels, kind) > 1e-4
        assert hidden_state_loss(layer_outputs(student, ids), teacher_layers, {0: 0}, labels, kind).abs() < 1e-6


def test_hidden_loss_sends_gradient_to_the_student_only_and_ignores_prompt_positions(teacher_and_pruned):
    from potstill.distill.kd import hidden_state_loss

    teacher, student, layer_map = teacher_and_pruned
    ids = torch.randint(0, 1000, (2, 12))
    labels = torch.full_like(ids, -100)
    labels[:, 8:] = ids[:, 8:]
    student.zero_grad()
    hidden_state_loss(layer_outputs(student, ids), layer_outputs(teacher, ids), layer_map, labels).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.model.layers[1].mlp.down_proj.weight.grad.abs().sum() > 0
    # A batch with no assistant token contributes nothing, and no NaN.
    empty = hidden_state_loss(layer_outputs(student, ids), layer_outputs(teacher, ids), layer_map,
                              torch.full_like(ids, -100))
    assert empty == 0


def soft_target_batch(seed=0, batch=2, length=9, width=8, vocab=40, k=5):
    """Hidden states, an LM head, labels with a prompt, top-k soft targets with one empty slot."""
    torch.manual_seed(seed)
    hidden = torch.randn(batch, length, width, dtype=torch.float64, requires_grad=True)
    head = torch.randn(vocab, width, dtype=torch.float64, requires_grad=True)
    teacher = torch.log_softmax(torch.randn(batch, length, vocab), -1)
    lps, ids = teacher.topk(k, -1)
    lps[0, 5, -1] = MISSING_LOGPROB  # an API top-k slot whose token string did not map to an id
    labels = teacher.argmax(-1)
    labels[:, :3] = -100  # the prompt
    labels[1, 7] = -100
    kd_mask = labels != -100
    kd_mask[0, 6] = False  # a labelled token without soft targets
    return hidden, head, labels, ids, lps, kd_mask


@pytest.mark.parametrize("tail", ["bucket", "renorm"])
@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize(("alpha", "chunk_rows"), [(0.3, 3), (1.0, 1), (0.0, 4), (0.5, 1000)])
def test_chunked_loss_equals_the_full_logits_loss_in_value_and_gradient(kind, tail, alpha, chunk_rows):
    from potstill.distill.kd import chunked_distillation_loss

    hidden, head, labels, ids, lps, kd_mask = soft_target_batch()
    settings = dict(alpha=alpha, temperature=2.0, capture_temperature=1.5, tail=tail, loss=kind, jsd_beta=0.3)
    expected = distillation_loss(hidden @ head.T, labels, ids, lps, kd_mask, **settings)
    expected_grads = torch.autograd.grad(expected[0], [hidden, head])
    got = chunked_distillation_loss(hidden, head, labels, ids, lps, kd_mask, chunk_rows=chunk_rows, **settings)
    got_grads = torch.autograd.grad(got[0], [hidden, head])
    assert torch.allclose(got[0], expected[0]) and torch.allclose(got[1], expected[1])
    assert (got[2] is None) == (expected[2] is None) == (alpha == 0)
    if alpha:
        assert torch.allclose(got[2], expected[2])
    for got_grad, expected_grad in zip(got_grads, expected_grads, strict=True):
        assert torch.isfinite(got_grad).all()
        assert torch.allclose(got_grad, expected_grad, atol=1e-6)


def test_chunked_loss_trains_only_what_requires_grad_and_survives_a_batch_without_labels():
    from potstill.distill.kd import chunked_distillation_loss

    hidden, head, labels, ids, lps, kd_mask = soft_target_batch()
    frozen = head.detach()  # a LoRA student: the LM head is frozen
    loss, _, _ = chunked_distillation_loss(hidden, frozen, labels, ids, lps, kd_mask, alpha=0.5, temperature=2.0)
    loss.backward()
    assert hidden.grad.abs().sum() > 0 and hidden.grad[:, 2:].abs().sum() > 0
    assert hidden.grad[:, :2].abs().max() == 0  # their next token is prompt: no loss reads them
    with torch.no_grad():
        assert torch.isfinite(chunked_distillation_loss(hidden, head, labels, ids, lps, kd_mask, 0.5, 2.0)[0])
    loss, ce, kd = chunked_distillation_loss(hidden, head, torch.full_like(labels, -100), ids, lps, kd_mask,
                                             alpha=0.5, temperature=2.0)
    assert float(loss) == 0 and kd is None and loss.requires_grad


@pytest.mark.parametrize("kind", ["reverse_kl", "jsd"])
def test_empty_topk_slots_give_finite_gradients_for_every_divergence(kind):
    hidden, head, labels, ids, lps, kd_mask = soft_target_batch()
    for tail in ("bucket", "renorm"):
        loss, _, _ = distillation_loss(hidden @ head.T, labels, ids, lps, kd_mask, alpha=1.0, temperature=2.0,
                                       tail=tail, loss=kind)
        assert torch.isfinite(torch.autograd.grad(loss, hidden)[0]).all()


def test_a_projection_maps_a_narrower_student_onto_the_teacher_and_is_trained():
    from potstill.distill.kd import hidden_projections, hidden_state_loss

    torch.manual_seed(0)
    labels = torch.ones(2, 6, dtype=torch.long)
    student = [torch.randn(2, 6, 16, requires_grad=True) for _ in range(2)]
    teacher = [torch.randn(2, 6, 32) for _ in range(4)]
    assert len(hidden_projections({0: 1, 1: 3}, 32, 32)) == 0  # equal widths: compared as they are
    projections = hidden_projections({0: 1, 1: 3}, 16, 32)
    assert sorted(projections) == ["0", "1"] and projections["0"].weight.shape == (32, 16)
    hidden_state_loss(student, teacher, {0: 1, 1: 3}, labels, "mse", projections).backward()
    assert all(p.grad.abs().sum() > 0 for p in projections.parameters())
    empty = hidden_state_loss(student, teacher, {0: 1, 1: 3}, torch.full_like(labels, -100), "mse", projections)
    assert float(empty) == 0 and empty.requires_grad
