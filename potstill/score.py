"""Local soft targets: run the teacher checkpoint once over the curated responses, keep top-k.

Like offline logit caching in DistillKit/axolotl: for every labelled token the teacher's top-k
token ids and log-probs (T=1) are stored, a few hundred bytes a token instead of the whole
vocabulary. The mass outside the top-k is 1 - sum(exp(top-k)), recovered at training time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from potstill.io import InputError, atomic_dir
from potstill.train import tokenize_chat

TARGETS_FILE = "soft_targets.safetensors"
INDEX_FILE = "index.json"
MANIFEST_FILE = "manifest.json"


def tokenizer_fingerprint(tokenizer) -> str:
    """Return a hash of the tokenizer's vocabulary: soft targets are only valid for the same one."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


@torch.no_grad()
def score_rows(model, tokenizer, rows: list[dict], k: int, max_seq_len: int, batch_size: int,
               progress: bool = True) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Return {row id: (top-k ids [n, k] int32, log-probs [n, k] float32)} over labelled tokens."""
    from tqdm.auto import tqdm

    model.eval()
    encoded = [(row["id"], tokenize_chat(tokenizer, row["messages"], max_seq_len)) for row in rows]
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for first in tqdm(range(0, len(encoded), batch_size), desc="teacher scoring", unit="batch",
                      disable=not progress):
        chunk = encoded[first:first + batch_size]
        length = max(len(e["input_ids"]) for _, e in chunk)
        ids = torch.full((len(chunk), length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, (_, e) in enumerate(chunk):
            ids[b, :len(e["input_ids"])] = torch.tensor(e["input_ids"])
            mask[b, :len(e["input_ids"])] = 1
        # On the model's device (stages/score.py puts it on the accelerator when there is one).
        device = next(model.parameters()).device
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for b, (row_id, e) in enumerate(chunk):
            start, end = e["response_start"], len(e["input_ids"])
            if end <= start:
                continue
            # Logits at t-1 predict token t: the targets of tokens start..end-1.
            logprobs = torch.log_softmax(logits[b, start - 1:end - 1].float(), dim=-1)
            top_lps, top_ids = logprobs.topk(k, dim=-1)
            out[row_id] = (top_ids.to(torch.int32).cpu(), top_lps.cpu())
    return out


def save_soft_targets(out_dir: Path, targets: dict[str, tuple[torch.Tensor, torch.Tensor]],
                      manifest: dict) -> None:
    """Write the soft targets as one safetensors file + an {id: [offset, length]} index."""
    from safetensors.torch import save_file

    index, offset = {}, 0
    for row_id, (ids, _) in targets.items():
        index[row_id] = [offset, int(ids.shape[0])]
        offset += int(ids.shape[0])
    k = manifest["k"]
    tensors = {
        "ids": torch.cat([ids for ids, _ in targets.values()]) if targets else torch.zeros((0, k), dtype=torch.int32),
        "logprobs": torch.cat([lps for _, lps in targets.values()]) if targets else torch.zeros((0, k)),
    }
    with atomic_dir(out_dir) as tmp:
        save_file(tensors, tmp / TARGETS_FILE)
        (tmp / INDEX_FILE).write_text(json.dumps(index))
        (tmp / MANIFEST_FILE).write_text(json.dumps({**manifest, "tokens": offset}, indent=2) + "\n")


def load_soft_targets(score_dir: Path, tokenizer, k: int) -> tuple[dict[str, dict], dict]:
    """Return ({row id: {kd_ids, kd_logprobs}}, manifest), refusing targets from another tokenizer."""
    from safetensors.torch import load_file

    manifest_path = score_dir / MANIFEST_FILE
    if not manifest_path.exists():
        raise InputError(f"{manifest_path}: not found; rerun the score stage")
    manifest = json.loads(manifest_path.read_text())
    expected = tokenizer_fingerprint(tokenizer)
    if manifest["tokenizer"] != expected or manifest["vocab_size"] != len(tokenizer):
        raise InputError(
            f"{score_dir}: soft targets were made with another tokenizer (fingerprint "
            f"{manifest['tokenizer']}, vocab {manifest['vocab_size']}) than the student's ({expected}, "
            f"vocab {len(tokenizer)}); rerun `dvc repro score` or use kd.source: none"
        )
    if manifest["k"] < k:
        raise InputError(f"{score_dir}: holds top-{manifest['k']} but kd.top_k is {k}; rerun the score stage")
    tensors = load_file(score_dir / TARGETS_FILE)
    index = json.loads((score_dir / INDEX_FILE).read_text())
    targets = {
        row_id: {"kd_ids": tensors["ids"][start:start + n, :k].tolist(),
                 "kd_logprobs": tensors["logprobs"][start:start + n, :k].tolist()}
        for row_id, (start, n) in index.items()
    }
    return targets, manifest
