"""Training data and the distillation Trainer: chat-template tokenisation, soft targets, KD loss."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import torch
from transformers import Trainer

from potstill.io import InputError, read_jsonl
from potstill.kd import MISSING_LOGPROB, distillation_loss


def tokenize_chat(tokenizer, messages: list[dict], max_seq_len: int) -> dict:
    """Return input_ids, labels (assistant tokens only) and where the response starts.

    The prompt is rendered with the tokenizer's chat template; the assistant reply is tokenised
    on its own and closed with the end-of-turn token, so its token boundaries are exactly the
    ones a teacher sharing this tokenizer produced (needed to line up API logprobs).
    """
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + response_ids + [tokenizer.eos_token_id])[:max_seq_len]
    labels = ([-100] * len(prompt_ids) + response_ids + [tokenizer.eos_token_id])[:max_seq_len]
    return {"input_ids": ids, "labels": labels, "response_start": len(prompt_ids)}


def token_string_index(tokenizer) -> dict[str, int]:
    """Return {decoded token string: id} for strings that decode from exactly one token id.

    Endpoints return top-logprob candidates as decoded strings; byte-level pieces of one UTF-8
    character all decode to the same replacement string, so ambiguous strings are left out.
    """
    index: dict[str, int] = {}
    ambiguous: set[str] = set()
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if text in index:
            ambiguous.add(text)
        index[text] = token_id
    for text in ambiguous:
        del index[text]
    return index


def align_api_logprobs(
    tokenizer, response: str, tokens: list[dict], index: dict[str, int], k: int
) -> tuple[list[list[int]], list[list[float]]] | None:
    """Return per-token top-k (ids, logprobs) for a response, or None if they do not line up.

    Re-tokenising the response must give the same tokens the endpoint reported, one for one;
    otherwise the teacher does not share the student's tokenizer and its logprobs are unusable.
    """
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if len(response_ids) != len(tokens):
        return None
    ids, logprobs = [], []
    for token_id, item in zip(response_ids, tokens, strict=True):
        if tokenizer.decode([token_id]) != item["token"]:
            return None
        row_ids, row_lps = [], []
        for text, logprob in item["top"][:k]:
            if text in index and logprob is not None:
                row_ids.append(index[text])
                row_lps.append(float(logprob))
        row_ids += [0] * (k - len(row_ids))
        row_lps += [MISSING_LOGPROB] * (k - len(row_lps))
        ids.append(row_ids)
        logprobs.append(row_lps)
    return ids, logprobs


def load_api_soft_targets(tokenizer, generated: Path, k: int) -> tuple[dict[str, dict], dict]:
    """Return ({row id: {kd_ids, kd_logprobs}}, alignment stats) from generate's outputs.

    Each response text (responses.jsonl) is re-tokenised with the student's tokenizer and must
    give back, token for token, what the endpoint reported (logprobs.jsonl); rows that do not
    are counted and trained on their text alone.
    """
    responses = {row["id"]: row["messages"][-1]["content"]
                 for _, row in read_jsonl(generated / "responses.jsonl")}
    index = token_string_index(tokenizer)
    targets: dict[str, dict] = {}
    stats = {"rows_aligned": 0, "rows_misaligned": 0}
    for _, row in read_jsonl(generated / "logprobs.jsonl"):
        if row["id"] not in responses:
            continue
        aligned = align_api_logprobs(tokenizer, responses[row["id"]], row["tokens"], index, k)
        if aligned is None:
            stats["rows_misaligned"] += 1
            continue
        stats["rows_aligned"] += 1
        targets[row["id"]] = {"kd_ids": aligned[0], "kd_logprobs": aligned[1]}
    return targets, stats


def build_dataset(tokenizer, split_files: dict[str, Path], soft_targets: dict[str, dict],
                  k: int, max_seq_len: int):
    """Return a datasets.DatasetDict of tokenised rows with their soft targets attached."""
    from datasets import load_dataset

    # An empty split file (a tiny run's validation set, say) is not a split at all to `datasets`.
    present = {name: str(path) for name, path in split_files.items() if Path(path).stat().st_size}
    raw = load_dataset("json", data_files=present)
    fingerprint = hashlib.sha256(
        json.dumps([tokenizer.name_or_path, len(tokenizer), k, max_seq_len,
                    sorted(soft_targets)], sort_keys=True).encode()
    ).hexdigest()[:16]

    def encode(row: dict) -> dict:
        encoded = tokenize_chat(tokenizer, row["messages"], max_seq_len)
        target = soft_targets.get(row["id"])
        if target and row["messages"][-1]["content"]:
            n_response = max(0, len(encoded["input_ids"]) - encoded["response_start"])
            encoded["kd_ids"] = target["kd_ids"][:n_response]
            encoded["kd_logprobs"] = target["kd_logprobs"][:n_response]
        else:
            encoded["kd_ids"], encoded["kd_logprobs"] = [], []
        return encoded

    return {
        name: split.map(encode, remove_columns=split.column_names,
                        new_fingerprint=f"{fingerprint}-{name}", desc=f"tokenising {name}")
        for name, split in raw.items()
    }


class DistillCollator:
    """Pads a batch; lays each row's soft targets onto the positions of its response tokens."""

    def __init__(self, pad_token_id: int, k: int):
        self.pad_token_id = pad_token_id
        self.k = k

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(row["input_ids"]) for row in rows)
        batch = len(rows)
        input_ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, length), -100, dtype=torch.long)
        attention = torch.zeros((batch, length), dtype=torch.long)
        kd_ids = torch.zeros((batch, length, self.k), dtype=torch.long)
        kd_logprobs = torch.full((batch, length, self.k), MISSING_LOGPROB)
        kd_mask = torch.zeros((batch, length), dtype=torch.bool)
        for b, row in enumerate(rows):
            n = len(row["input_ids"])
            input_ids[b, :n] = torch.tensor(row["input_ids"])
            labels[b, :n] = torch.tensor(row["labels"])
            attention[b, :n] = 1
            if row["kd_ids"]:
                start, m = row["response_start"], len(row["kd_ids"])
                kd_ids[b, start:start + m] = torch.tensor(row["kd_ids"])
                kd_logprobs[b, start:start + m] = torch.tensor(row["kd_logprobs"])
                kd_mask[b, start:start + m] = True
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                "kd_ids": kd_ids, "kd_logprobs": kd_logprobs, "kd_mask": kd_mask}


class DistillTrainer(Trainer):
    """HF Trainer whose loss mixes CE with KD on stored teacher top-k; logs both terms apart."""

    def __init__(self, *args, kd_alpha: float, kd_temperature: float, capture_temperature: float,
                 kd_tail: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.kd_alpha, self.kd_temperature = kd_alpha, kd_temperature
        self.capture_temperature, self.kd_tail = capture_temperature, kd_tail
        self._terms: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        kd_ids, kd_logprobs, kd_mask = inputs.pop("kd_ids"), inputs.pop("kd_logprobs"), inputs.pop("kd_mask")
        labels = inputs.pop("labels")
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        loss, ce, kd = distillation_loss(
            outputs.logits, labels, kd_ids, kd_logprobs, kd_mask, alpha=self.kd_alpha,
            temperature=self.kd_temperature, capture_temperature=self.capture_temperature,
            tail=self.kd_tail,
        )
        prefix = "" if model.training else "eval_"
        self._terms[f"{prefix}ce_loss"].append(float(ce))
        if kd is not None:
            self._terms[f"{prefix}kd_loss"].append(float(kd))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        evaluating = any(key.startswith("eval_") for key in logs)
        for name in list(self._terms):
            if name.startswith("eval_") == evaluating and self._terms[name]:
                logs[name] = sum(self._terms[name]) / len(self._terms[name])
                self._terms[name].clear()
        super().log(logs, *args, **kwargs)


def read_manifest(path: Path) -> dict:
    """Return a JSON manifest, naming the file if it is missing."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: manifest not found; rerun the stage that writes it") from None
