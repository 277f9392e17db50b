"""Training data: curated chats tokenised with the chat template, their soft targets, and the collator."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from potstill.chat import tokenize_chat
from potstill.distill.api_targets import load_api_soft_targets
from potstill.distill.kd import MISSING_LOGPROB
from potstill.distill.soft_targets import load_soft_targets, read_manifest
from potstill.errors import InputError


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


def soft_targets_for(kd, tokenizer, generated: Path, soft_targets_dir: Path) -> tuple[dict, dict, float, int]:
    """Return (soft targets by row id, alignment stats, capture temperature, k) for kd.source."""
    if kd.source == "local":
        targets, manifest = load_soft_targets(soft_targets_dir, tokenizer, kd.top_k)
        return targets, {}, manifest["logprob_temperature"], kd.top_k
    if kd.source == "none":
        return {}, {}, 1.0, 1
    manifest = read_manifest(generated / "manifest.json")
    if manifest["logprobs_k"] == 0:
        raise InputError("kd.source is 'api' but generate stored no logprobs (teacher.logprobs: 0); "
                         "set teacher.logprobs > 0 or use kd.source: local / none")
    k = min(kd.top_k, manifest["logprobs_k"])
    targets, stats = load_api_soft_targets(tokenizer, generated, k)
    if not targets:
        raise InputError(
            f"{generated / 'logprobs.jsonl'}: no response's logprobs line up with the student's "
            "tokenizer; the teacher must share it for kd.source: api (use kd.source: none)"
        )
    return targets, stats, manifest["endpoint"]["logprob_temperature"], k
