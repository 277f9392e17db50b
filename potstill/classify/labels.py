"""The labelling prompt, the label tokens it is answered with, and the teacher's soft labels.

The teacher answers a few-shot chat prompt with one label name. Its distribution over labels is
read from the first token of that answer: the probability of each label's first token (from the
endpoint's `top_logprobs`), renormalised over the labels. That works only if every label starts
with its own token once the chat template has been applied, so `label_tokens` checks this with
the teacher's tokenizer before any request is sent. The share of first-token mass the labels
carry (`mass`) says whether the teacher answered with a label at all; curate flags rows where it
did not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from potstill.errors import InputError


def argmax(values: list[float]) -> int:
    """Return the index of the largest value: the label a distribution picks (the first on a tie)."""
    return max(range(len(values)), key=values.__getitem__)


def labelling_messages(labels, instruction: str, text: str) -> list[dict]:
    """Return the chat that asks for `text`'s label: the label list, one example turn per label, then the text."""
    listing = "\n".join(f"- {label.name}: {label.description}" for label in labels)
    messages = [{"role": "system", "content": f"{instruction}\n{listing}"}]
    for label in labels:
        messages += [{"role": "user", "content": label.example}, {"role": "assistant", "content": label.name}]
    return messages + [{"role": "user", "content": text}]


@dataclass(frozen=True)
class LabelTokens:
    """Each label's first answer token: its id and its text as an endpoint reports it (stripped)."""

    names: tuple[str, ...]
    ids: tuple[int, ...]
    texts: tuple[str, ...]

    def index(self, token: str) -> int | None:
        """Return the label a reported token starts, or None."""
        token = token.strip()
        return self.texts.index(token) if token in self.texts else None


def label_tokens(tokenizer, labels, instruction: str) -> LabelTokens:
    """Return each label's first answer token, checked after the chat template; InputError if ambiguous.

    Refused: a label whose answer merges with the template's assistant header (no clean first
    token), two labels with the same first token, and a first token that also starts another
    label's name (the teacher's "pass" could begin "password" or "passport").
    """
    messages = labelling_messages(labels, instruction, "probe")
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids, texts = [], []
    for label in labels:
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": label.name}],
                                             tokenize=False)
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        if not full.startswith(prompt) or full_ids[: len(prompt_ids)] != prompt_ids:
            raise InputError(f"classify.labels: label {label.name!r} does not start a clean token after the chat "
                             "template's assistant header; rename it (a plain lowercase word works)")
        first = full_ids[len(prompt_ids)]
        ids.append(first)
        texts.append(tokenizer.decode([first]).strip())
    names = [label.name for label in labels]
    for i, name in enumerate(names):
        if not texts[i]:
            raise InputError(f"classify.labels: {name!r} starts with an empty token; rename it")
        for j, other in enumerate(names):
            if i == j:
                continue
            if ids[i] == ids[j]:
                raise InputError(f"classify.labels: {name!r} and {other!r} both start with the token {texts[i]!r}; "
                                 "the teacher's first token could not tell them apart: rename one")
            if other.startswith(texts[i]) and texts[i] != texts[j]:
                raise InputError(f"classify.labels: {name!r} starts with the token {texts[i]!r}, which also begins "
                                 f"{other!r}; the teacher's first token would be ambiguous: rename one")
    return LabelTokens(tuple(names), tuple(ids), tuple(texts))


def soft_labels(record: dict, tokens: LabelTokens) -> dict:
    """Return {probs, mass} from a teacher answer's first-token `top_logprobs`.

    `probs` is the teacher's distribution over the labels (renormalised; a label outside the
    top-k gets 0); `mass` is the share of the first token's probability the labels carry. With
    no label among the alternatives, probs is None.
    """
    logprobs = record.get("logprobs") or []
    if not logprobs:
        raise InputError("the teacher returned no logprobs; the classifier needs an endpoint that returns "
                         "top_logprobs (llama.cpp, vLLM and OpenAI do)")
    found = [0.0] * len(tokens.names)
    for token, logprob in logprobs[0]["top"]:
        index = tokens.index(token)
        if index is not None:
            found[index] += math.exp(logprob)
    mass = sum(found)
    return {"probs": [p / mass for p in found] if mass > 0 else None, "mass": mass}
