"""On-policy distillation: the loss on the student's own tokens, seeded rollouts, teachers that can (or cannot) score.

Tiny llamas built from config with the shipped tokenizer; the API teacher is the fake server
taught vLLM's `prompt_logprobs` (vLLM itself cannot run here).
"""

import copy
import math

import pytest
import torch

from potstill.chat import prompt_ids
from potstill.distill.data import DistillCollator
from potstill.distill.kd import distillation_loss, divergence
from potstill.distill.onpolicy import (
    LocalScorer,
    PromptLogprobsScorer,
    rollout_rows,
    sample_rollouts,
    step_is_onpolicy,
)
from potstill.errors import InputError
from potstill.models import tiny_llama
from tests.fake_endpoint import FakeOpenAI

QUESTIONS = ["What colour is the sky?", "Name a large city.", "How do plants grow?", "Why is ice cold?"]


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return [(f"q{i}", q, prompt_ids(tokenizer, [{"role": "user", "content": q}])) for i, q in enumerate(QUESTIONS)]


@pytest.fixture(scope="module")
def teacher(tokenizer):
    model = tiny_llama(tokenizer, layers=2, seed=1)
    # A random tiny model is near-uniform (entropy 10.8 nats); scaling its logits makes it a sharp
    # teacher (entropy ~1.1, 99% of the mass in the top 64), so a perturbed student differs clearly.
    with torch.no_grad():
        model.model.norm.weight.mul_(40)
    return model.eval()


def onpolicy_batch(student, teacher, tokenizer, prompts, k=64, seed=0):
    rollouts = sample_rollouts(student, tokenizer, prompts, temperature=1.0, max_new_tokens=12, seed=seed,
                               batch_size=4)
    scored = LocalScorer(teacher, k, len(tokenizer), tokenizer.pad_token_id)(
        [(r.prompt_ids + r.response_ids, len(r.prompt_ids)) for r in rollouts])
    return DistillCollator(tokenizer.pad_token_id, k)(rollout_rows(rollouts, scored))


def onpolicy_loss(student, batch, kind):
    logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss, _, kd = distillation_loss(logits, batch["labels"], batch["kd_ids"], batch["kd_logprobs"], batch["kd_mask"],
                                    alpha=1.0, temperature=1.0, loss=kind, jsd_beta=0.5)
    return loss, kd


def expected_loss(student, teacher, tokenizer, prompts, kind) -> float:
    """The on-policy objective itself: the divergence on fresh samples of the student (seeds unseen in training)."""
    with torch.no_grad():
        return sum(float(onpolicy_loss(student, onpolicy_batch(student, teacher, tokenizer, prompts, seed=100 + i),
                                       kind)[0]) for i in range(4)) / 4


@pytest.mark.parametrize("kind", ["reverse_kl", "jsd"])
def test_the_onpolicy_loss_is_zero_for_the_teacher_itself_and_pulls_a_perturbed_student_back(
        tokenizer, teacher, prompts, kind):
    same = copy.deepcopy(teacher)
    batch = onpolicy_batch(same, teacher, tokenizer, prompts)
    assert int(batch["kd_mask"].sum()) > 20  # the student wrote something to score
    loss, kd = onpolicy_loss(same, batch, kind)
    assert abs(float(loss.detach())) < 1e-5 and abs(float(kd)) < 1e-5

    student = copy.deepcopy(teacher).requires_grad_(True)  # the scorer froze the teacher it was given
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in student.model.layers:
            layer.mlp.down_proj.weight.add_(torch.randn_like(layer.mlp.down_proj.weight) * 0.3)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    before = expected_loss(student, teacher, tokenizer, prompts, kind)
    for step in range(12):
        batch = onpolicy_batch(student, teacher, tokenizer, prompts, seed=step)  # fresh rollouts each step
        loss, _ = onpolicy_loss(student, batch, kind)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = expected_loss(student, teacher, tokenizer, prompts, kind)
    assert before > 0.1
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_our_divergences_are_trls_generalized_jsd(beta):
    from trl.experimental.gkd import GKDTrainer

    torch.manual_seed(0)
    student_logits, teacher_logits = torch.randn(6, 50) * 2, torch.randn(6, 50) * 2
    s, t = torch.log_softmax(student_logits, -1), torch.log_softmax(teacher_logits, -1)

    def trl(b):
        return float(GKDTrainer.generalized_jsd_loss(student_logits[None], teacher_logits[None], beta=b,
                                                     reduction="sum"))

    assert math.isclose(float(divergence(t, s, "jsd", beta).sum()), trl(beta), rel_tol=1e-4)
    # TRL's beta = 0 and 1 ends are forward and reverse KL.
    assert math.isclose(float(divergence(t, s, "forward_kl").sum()), trl(0.0), rel_tol=1e-4)
    assert math.isclose(float(divergence(t, s, "reverse_kl").sum()), trl(1.0), rel_tol=1e-4)


def test_rollouts_are_reproducible_with_a_seed_and_leave_the_training_rng_alone(tokenizer, prompts):
    model = tiny_llama(tokenizer, layers=2, seed=2)  # near-uniform: two seeds give other samples

    def answers(seed):
        return [r.response_ids for r in sample_rollouts(model, tokenizer, prompts, 1.0, 10, seed, 2)]

    torch.manual_seed(5)
    first = answers(3)
    after_sampling = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after_sampling)  # sampling forked the RNG: training draws are unchanged
    assert answers(3) == first
    assert answers(4) != first
    assert all(len(answer) == 10 for answer in first)


def test_on_policy_steps_follow_lambda_and_are_fixed_by_seed_and_step():
    picks = [step_is_onpolicy(0, step, 0.3) for step in range(2000)]
    assert 0.26 < sum(picks) / len(picks) < 0.34
    assert picks == [step_is_onpolicy(0, step, 0.3) for step in range(2000)]
    assert picks != [step_is_onpolicy(1, step, 0.3) for step in range(2000)]
    assert not any(step_is_onpolicy(0, s, 0.0) for s in range(50))
    assert all(step_is_onpolicy(0, s, 1.0) for s in range(50))


def test_a_server_returning_prompt_logprobs_scores_the_students_tokens(tokenizer):
    import openai

    ids = tokenizer("The sky is blue today.", add_special_tokens=False)["input_ids"]
    with FakeOpenAI(prompt_logprobs=True, decode=lambda token: tokenizer.decode([token])) as server:
        scorer = PromptLogprobsScorer(openai.OpenAI(base_url=server.base_url, api_key="x"), "fake", 3,
                                      server.base_url)
        scorer.check(tokenizer, ids)
        (top_ids, top_lps, actual), = scorer([(ids, 2)])
    assert top_ids[:, 0].tolist() == ids[2:]  # entry t scores token t: the student's own token ranks first
    assert top_ids[:, 1].tolist() == [token + 1 for token in ids[2:]]
    assert torch.allclose(top_lps[0], torch.tensor([math.log(0.5), math.log(0.25), math.log(0.125)]))
    assert torch.allclose(actual, torch.full((len(ids) - 2,), math.log(0.5)))


def test_a_server_without_prompt_logprobs_or_with_another_tokenizer_is_refused_up_front(tokenizer):
    import openai

    ids = tokenizer("The sky is blue today.", add_special_tokens=False)["input_ids"]
    with FakeOpenAI(prompt_logprobs=False) as server:  # what llama.cpp's server does: the field is ignored
        scorer = PromptLogprobsScorer(openai.OpenAI(base_url=server.base_url, api_key="x"), "fake", 3,
                                      server.base_url)
        with pytest.raises(InputError, match=r"no prompt log-probs.*llama\.cpp.*onpolicy\.scorer: local"):
            scorer.check(tokenizer, ids)
    with FakeOpenAI(prompt_logprobs=True, decode=lambda token: f"<{token}>") as server:
        scorer = PromptLogprobsScorer(openai.OpenAI(base_url=server.base_url, api_key="x"), "fake", 3,
                                      server.base_url)
        with pytest.raises(InputError, match="same tokenizer"):
            scorer.check(tokenizer, ids)


def test_the_local_scorer_reuses_a_teacher_already_loaded_and_loads_one_otherwise(tokenizer, tiny_model_dir,
                                                                                  teacher, monkeypatch):
    from potstill import models
    from potstill.distill.run import rollout_scorer
    from tests.conftest import shipped

    loads = []
    real_load = models.load_checked
    monkeypatch.setattr(models, "load_checked", lambda folder: loads.append(folder) or real_load(folder))
    onpolicy, train = shipped("onpolicy", steps=4), shipped("train")
    # hidden matching loaded the teacher: the scorer scores with that very model, no second load
    assert rollout_scorer(None, onpolicy, train, tokenizer, tiny_model_dir, teacher).teacher is teacher
    assert loads == []
    scorer = rollout_scorer(None, onpolicy, train, tokenizer, tiny_model_dir)
    assert loads == [tiny_model_dir] and scorer.teacher is not teacher
