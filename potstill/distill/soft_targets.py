"""Soft targets on disk: the teacher's top-k per token (local scorer or API logprobs) with a manifest.

The manifest names the tokenizer (a hash of its vocabulary), k and the temperature the logprobs
were computed at; train refuses soft targets whose manifest does not match the student.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from potstill.errors import InputError
from potstill.io import atomic_dir

TARGETS_FILE = "soft_targets.safetensors"
INDEX_FILE = "index.json"
MANIFEST_FILE = "manifest.json"


def tokenizer_fingerprint(tokenizer) -> str:
    """Return a hash of the tokenizer's vocabulary: soft targets are only valid for the same one."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


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


def read_manifest(path: Path) -> dict:
    """Return a JSON manifest, naming the file if it is missing."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: manifest not found; rerun the stage that writes it") from None
