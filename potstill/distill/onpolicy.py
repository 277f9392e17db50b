"""On-policy distillation (GKD): the student writes, the teacher scores the student's own tokens.

After the off-policy KD steps, train runs `onpolicy.steps` more. Each step is on-policy with
probability `onpolicy.lmbda` (GKD's lambda), decided by (seed, step) so a resumed run makes the
same choice; the other steps are ordinary KD steps on the teacher's text. Every
`onpolicy.resample_every` steps the *current* student samples answers to training prompts
(seeded per round), the teacher scores them (top-k log-probs at T=1 on every student token), and
the on-policy steps of that round train on them with `onpolicy.loss` (reverse KL or generalized
JSD, alpha = 1: no cross-entropy on the student's own tokens). Rollouts are appended to a JSONL
file (prompt, answer, tokens, the teacher's log-prob of each, step) that becomes a train output.

Why not TRL's `GKDTrainer` or `DistillationTrainer` (TRL 1.16), read before writing this:
- both need the teacher as a model in the training process giving full-vocabulary logits each
  step; here the teacher may be an OpenAI-compatible server that returns prompt log-probs (vLLM),
  and the loss is the project's top-k + tail-bucket loss (`potstill.distill.kd`, chunked over the
  vocabulary), the same code as the off-policy phase, so the two phases are measured alike;
- `GKDTrainer` draws on/off-policy per micro-batch from Python's global `random` and samples
  unseeded, so a run killed and resumed takes other decisions and other samples; here both are
  functions of (seed, step) and checkpoints fall on rollout-round boundaries;
- `DistillationTrainer` is on-policy only (no mixing with teacher text) with its own defaults
  (bf16, gradient checkpointing, lr 1e-6), and neither writes rollouts as an inspectable output.
What is taken from TRL: the generalized-JSD definition (tests/test_onpolicy.py checks ours against
`GKDTrainer.generalized_jsd_loss`) and the request shape of vLLM prompt log-probs
(`trl.generation.vllm_client`: /v1/completions, token-id prompts, `prompt_logprobs`, max_tokens 1).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from potstill.distill.data import DistillCollator
from potstill.distill.kd import MISSING_LOGPROB
from potstill.distill.score import score_sequences
from potstill.distill.trainer import DistillTrainer
from potstill.errors import InputError
from potstill.text import is_degenerate

ROLLOUTS_FILE = "rollouts.jsonl"


@dataclass
class Rollout:
    """One sampled answer: the prompt's ids and the student's tokens (end-of-turn included when it stopped)."""

    prompt_id: str
    prompt: str
    prompt_ids: list[int]
    response_ids: list[int]
    finished: bool


def step_is_onpolicy(seed: int, step: int, lmbda: float) -> bool:
    """Return whether optimizer step `step` trains on rollouts: a fixed function of (seed, step)."""
    if lmbda >= 1.0 or lmbda <= 0.0:
        return lmbda >= 1.0
    return random.Random(f"{seed}:onpolicy:{step}").random() < lmbda


def training_prompts(tokenizer, train_file: Path) -> list[tuple[str, str, list[int]]]:
    """Return (row id, user prompt, chat-templated prompt ids) for every training row."""
    from potstill.chat import chat_prompts

    return chat_prompts(tokenizer, train_file, "to prompt the on-policy phase with")


@torch.no_grad()
def sample_rollouts(model, tokenizer, prompts: list[tuple[str, str, list[int]]], temperature: float,
                    max_new_tokens: int, seed: int, batch_size: int) -> list[Rollout]:
    """Return the model's answer to each prompt: sampled at `temperature` (0 = greedy), seeded, stopped at end-of-turn.

    The global RNG is forked, so sampling neither depends on nor disturbs the training RNG; the
    same weights, prompts and seed give the same rollouts.
    """
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sampling = ({"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0
                else {"do_sample": False})
    rollouts = []
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for first in range(0, len(prompts), batch_size):
                chunk = prompts[first:first + batch_size]
                width = max(len(ids) for _, _, ids in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for b, (_, _, prompt) in enumerate(chunk):  # left padding: every answer starts at `width`
                    ids[b, width - len(prompt):] = torch.tensor(prompt)
                    mask[b, width - len(prompt):] = 1
                out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad, **sampling)
                for b, (prompt_id, text, prompt) in enumerate(chunk):
                    new = out[b, width:].tolist()
                    finished = eos in new
                    rollouts.append(Rollout(prompt_id, text, prompt, new[:new.index(eos) + 1] if finished else new,
                                            finished))
    finally:
        model.train(was_training)
    return rollouts


class LocalScorer:
    """Scores rollouts with the teacher checkpoint: top-k log-probs at T=1 from one forward pass."""

    def __init__(self, teacher, k: int, vocab_limit: int, pad_token_id: int):
        self.teacher = teacher.eval().requires_grad_(False)
        self.k, self.vocab_limit, self.pad_token_id = k, vocab_limit, pad_token_id

    def __call__(self, sequences: list[tuple[list[int], int]]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return score_sequences(self.teacher, sequences, self.k, self.vocab_limit, self.pad_token_id)


class PromptLogprobsScorer:
    """Scores rollouts through an OpenAI-compatible server that returns prompt log-probs (vLLM).

    One /v1/completions request per batch with the token ids as the prompt, `max_tokens: 1` and
    `prompt_logprobs: k`; entry t of a choice's `prompt_logprobs` scores token t given the ones
    before it ({token id: {logprob, rank, decoded_token}}, the token itself included).
    """

    def __init__(self, client, model: str, k: int, base_url: str):
        self.client, self.model, self.k, self.base_url = client, model, k, base_url

    def _prompt_logprobs(self, sequences: list[list[int]], k: int) -> list[list[dict | None]]:
        reply = self.client.completions.create(model=self.model, prompt=sequences, max_tokens=1, temperature=0.0,
                                               extra_body={"prompt_logprobs": k})
        choices = sorted(reply.choices, key=lambda choice: choice.index)
        found = [(choice.model_extra or {}).get("prompt_logprobs") for choice in choices]
        if len(found) != len(sequences) or any(entries is None for entries in found):
            raise InputError(
                f"onpolicy.scorer api: {self.base_url} returned no prompt log-probs (vLLM's `prompt_logprobs`) "
                "for a /v1/completions request; scoring the student's own text needs a server that returns them, "
                "e.g. `vllm serve <teacher>`. llama.cpp's server cannot (it refuses `echo` and ignores "
                "prompt_logprobs). Use onpolicy.scorer: local with the teacher's weights, or onpolicy.steps: 0")
        return found

    def check(self, tokenizer, sample_ids: list[int]) -> None:
        """Refuse, before any training, a server without prompt log-probs or one that reads ids as other tokens."""
        try:
            entries = self._prompt_logprobs([sample_ids], 1)[0]
        except InputError:
            raise
        except Exception as exc:  # the server's own refusal, whatever its form
            raise InputError(f"onpolicy.scorer api: {self.base_url} refused a prompt log-probs request ({exc}); "
                             "use a server that returns vLLM's prompt_logprobs, or onpolicy.scorer: local") from None
        for position, token in enumerate(sample_ids[1:], start=1):
            entry = (entries[position] or {}).get(str(token)) if position < len(entries) else None
            decoded = entry.get("decoded_token") if entry else None
            if decoded is not None and decoded != tokenizer.decode([token]):
                raise InputError(
                    f"onpolicy.scorer api: {self.base_url} reads token id {token} as {decoded!r}, the student's "
                    f"tokenizer as {tokenizer.decode([token])!r}: on-policy KD needs the same tokenizer on both "
                    "sides; use a teacher that shares it, or onpolicy.steps: 0")

    def __call__(self, sequences: list[tuple[list[int], int]]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        replies = self._prompt_logprobs([ids for ids, _ in sequences], self.k)
        out = []
        for (ids, start), entries in zip(sequences, replies, strict=True):
            top_ids, top_lps, actual = [], [], []
            for position in range(start, len(ids)):
                entry = entries[position] if position < len(entries) else None
                items = sorted((entry or {}).items(), key=lambda item: item[1].get("rank") or 0)[:self.k]
                row_ids = [int(token) for token, _ in items]
                row_lps = [float(value["logprob"]) for _, value in items]
                top_ids.append(row_ids + [0] * (self.k - len(row_ids)))
                top_lps.append(row_lps + [MISSING_LOGPROB] * (self.k - len(row_lps)))
                own = (entry or {}).get(str(ids[position]))
                actual.append(float(own["logprob"]) if own else MISSING_LOGPROB)
            out.append((torch.tensor(top_ids, dtype=torch.int32).reshape(-1, self.k),
                        torch.tensor(top_lps, dtype=torch.float32).reshape(-1, self.k), torch.tensor(actual)))
        return out


def rollout_rows(rollouts: list[Rollout], scored) -> list[dict]:
    """Return training rows (as `build_dataset` makes them), soft targets = the teacher's view of each rollout."""
    rows = []
    for rollout, (top_ids, top_lps, _) in zip(rollouts, scored, strict=True):
        start = len(rollout.prompt_ids)
        rows.append({"input_ids": rollout.prompt_ids + rollout.response_ids,
                     "labels": [-100] * start + rollout.response_ids, "response_start": start,
                     "kd_ids": top_ids.tolist(), "kd_logprobs": top_lps.tolist()})
    return rows


class OnPolicyTrainer(DistillTrainer):
    """DistillTrainer whose on-policy steps train on rollouts of the current student scored by the teacher.

    The data loader keeps feeding off-policy batches (so its order, and a resume's skipping of
    seen batches, are the Trainer's own); at an on-policy step they are set aside and replaced,
    before any forward pass of that step, by rollout batches of the same sizes. The token counts
    that normalise the step's loss are taken from what is actually trained on.
    """

    def __init__(self, *args, onpolicy, prompts, scorer, tokenizer_for_rollouts, seed: int,
                 rollouts_file: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.onpolicy, self.prompts, self.scorer = onpolicy, prompts, scorer
        self.rollout_tokenizer, self.seed, self.rollouts_file = tokenizer_for_rollouts, seed, Path(rollouts_file)
        self._buffer: list[dict] = []
        self._buffer_round: int | None = None
        self._step_kinds: dict[bool, int] = {True: 0, False: 0}  # on- / off-policy steps since the last log
        self._rollout_stats: dict[str, float] = {}
        # Compute spent in this process, in tokens: student forward+backward, student sampling, teacher scoring.
        self.tokens = {"tokens_student_train": 0, "tokens_student_sampled": 0, "tokens_teacher_scored": 0}
        self._collate = DistillCollator(tokenizer_for_rollouts.pad_token_id, onpolicy.top_k)
        # The student's own tokens: the divergence alone (no CE on what it wrote), teacher log-probs at T=1.
        self.onpolicy_loss = {"alpha": 1.0, "loss": onpolicy.loss, "jsd_beta": onpolicy.beta, "temperature": 1.0,
                              "capture_temperature": 1.0, "tail": "bucket"}

    def rows_per_step(self) -> int:
        return self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps

    def round_steps(self, round_index: int) -> list[int]:
        """Return the on-policy steps of a rollout round."""
        every = self.onpolicy.resample_every
        return [step for step in range(round_index * every, min((round_index + 1) * every, self.args.max_steps))
                if step_is_onpolicy(self.seed, step, self.onpolicy.lmbda)]

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        step = self.state.global_step
        onpolicy = bool(batches) and step_is_onpolicy(self.seed, step, self.onpolicy.lmbda)
        self._step_kinds[onpolicy] += 1
        if onpolicy:
            batches = [{key: value.to(device) for key, value in batch.items()}
                       for batch in self._rollout_batches(step, [len(batch["input_ids"]) for batch in batches])]
        self.tokens["tokens_student_train"] += sum(int(batch["attention_mask"].sum()) for batch in batches)
        return batches, self._get_num_items_in_batch(batches, device)

    def _rollout_batches(self, step: int, sizes: list[int]) -> list[dict]:
        round_index = step // self.onpolicy.resample_every
        if self._buffer_round != round_index:
            self._buffer = self._sample_round(round_index)
            self._buffer_round = round_index
        batches = []
        for size in sizes:
            rows, self._buffer = self._buffer[:size], self._buffer[size:]
            batch = self._collate(rows)
            batch["onpolicy"] = torch.ones(len(rows), dtype=torch.bool)
            batches.append(batch)
        return batches

    def _sample_round(self, round_index: int) -> list[dict]:
        """Sample and score this round's rollouts from the current student; log and record them."""
        steps = self.round_steps(round_index)
        count = len(steps) * self.rows_per_step()
        rank = self.args.process_index
        rng = random.Random(f"{self.seed}:prompts:{round_index}:{rank}")
        picks = [self.prompts[i] for i in _draw(rng, len(self.prompts), count)]
        model = self.accelerator.unwrap_model(self.model)
        rollouts, scored = [], []
        batch = self.onpolicy.rollout_batch_size
        from tqdm.auto import tqdm

        with tqdm(total=count, desc=f"rollouts (round {round_index})", unit="answer", leave=False,
                  disable=not self.is_world_process_zero()) as bar:
            for first in range(0, count, batch):
                chunk = sample_rollouts(model, self.rollout_tokenizer, picks[first:first + batch],
                                        self.onpolicy.sample_temperature, self.onpolicy.max_new_tokens,
                                        seed=_round_seed(self.seed, round_index, rank, first), batch_size=batch)
                scored += self.scorer([(r.prompt_ids + r.response_ids, len(r.prompt_ids)) for r in chunk])
                self.tokens["tokens_student_sampled"] += sum(len(r.response_ids) for r in chunk)
                self.tokens["tokens_teacher_scored"] += sum(len(r.prompt_ids) + len(r.response_ids) for r in chunk)
                rollouts += chunk
                bar.update(len(chunk))
        self._record(rollouts, scored, steps)
        return rollout_rows(rollouts, scored)

    def _record(self, rollouts: list[Rollout], scored, steps: list[int]) -> None:
        per_step = self.rows_per_step()
        texts = [self.rollout_tokenizer.decode(r.response_ids, skip_special_tokens=True) for r in rollouts]
        loops = [is_degenerate(text) for text in texts]
        tokens = sum(len(r.response_ids) for r in rollouts)
        self._rollout_stats = {
            "rollout_tokens": tokens / max(len(rollouts), 1),
            "rollout_finished_share": sum(r.finished for r in rollouts) / max(len(rollouts), 1),
            "rollout_degenerate_share": sum(loops) / max(len(rollouts), 1),
            "rollout_teacher_nll": -sum(float(actual.sum()) for _, _, actual in scored) / max(tokens, 1),
        }
        if not self.is_world_process_zero():
            return
        with self.rollouts_file.open("a", encoding="utf-8") as out:
            for index, (rollout, text, loop, (_, _, actual)) in enumerate(zip(rollouts, texts, loops, scored,
                                                                                strict=True)):
                out.write(json.dumps({
                    "step": steps[index // per_step], "prompt_id": rollout.prompt_id, "prompt": rollout.prompt,
                    "answer": text, "finished": rollout.finished, "degenerate": loop,
                    "tokens": [self.rollout_tokenizer.decode([t]) for t in rollout.response_ids],
                    "teacher_logprobs": [round(v, 4) for v in actual.tolist()]}) + "\n")

    def steps_with(self, name: str, steps: int) -> int:
        if name == "onpolicy_loss":
            return self._step_kinds[True]
        if name in ("ce_loss", "kd_loss", "hidden_loss"):
            return self._step_kinds[False]
        return steps

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if not any(key.startswith("eval_") for key in logs):
            logs.update(self._rollout_stats)
        super().log(logs, *args, **kwargs)
        if not any(key.startswith("eval_") for key in logs):
            self._step_kinds = {True: 0, False: 0}


def _round_seed(seed: int, round_index: int, rank: int, first: int) -> int:
    """Return the sampling seed of one chunk of one round on one process: fixed by position, so a resume repeats it."""
    return (seed * 1_000_003 + round_index * 10_007 + rank * 101 + first) % 2**31


def _draw(rng: random.Random, population: int, count: int) -> list[int]:
    """Return `count` indices: whole shuffled passes over the population, so every prompt is used before any repeats."""
    picks: list[int] = []
    while len(picks) < count:
        order = list(range(population))
        rng.shuffle(order)
        picks += order
    return picks[:count]


def truncate_rollouts(path: Path, before_step: int) -> None:
    """Keep only the rollouts of steps before `before_step` (a resumed run samples the rest again)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] < before_step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
