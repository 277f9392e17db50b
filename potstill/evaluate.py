"""Evaluation: lm-eval on the shipped tasks plus held-out NLL, for models already in memory."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from potstill.io import InputError, folder_digest, read_jsonl, state_dir, write_text_atomic
from potstill.train import tokenize_chat

REPORTED_METRICS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "exact_match",
                    "exact_match_stderr")


def lm_eval_scores(model, tokenizer, tasks: list[str], manager, limit: int | None,
                   batch_size: int) -> dict[str, dict[str, float]]:
    """Return {task: {metric: value}} from lm-eval's Python API for an in-memory model."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu"
              if not torch.cuda.is_available() else "cuda")
    results = simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit,
                              log_samples=False, random_seed=0, numpy_random_seed=0,
                              torch_random_seed=0, fewshot_random_seed=0)
    scores: dict[str, dict[str, float]] = {}
    for task in tasks:
        scores[task] = {
            name.split(",")[0]: float(value)
            for name, value in results["results"][task].items()
            if name.split(",")[0] in REPORTED_METRICS and isinstance(value, int | float)
            and not math.isnan(value)
        }
    return scores


def heldout_nll(model, tokenizer, test_file: Path, max_seq_len: int = 512) -> float:
    """Return mean per-token NLL of the teacher's held-out responses (assistant tokens only)."""
    total, count = 0.0, 0
    model.eval()
    for _, row in read_jsonl(test_file):
        encoded = tokenize_chat(tokenizer, row["messages"], max_seq_len)
        # On the model's device: a model on CUDA must not be fed CPU tensors (bench/gpu_smoke.py).
        device = next(model.parameters()).device
        ids = torch.tensor([encoded["input_ids"]], device=device)
        labels = torch.tensor(encoded["labels"][1:], device=device)
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        mask = labels != -100
        total += float(torch.nn.functional.cross_entropy(logits[mask], labels[mask], reduction="sum"))
        count += int(mask.sum())
    if count == 0:
        raise InputError(f"{test_file}: no held-out responses; raise curate.test_fraction")
    return total / count


class ScoreCache:
    """Scores keyed by (model bytes, task files, test split, settings), kept in the state dir.

    The teacher and the untrained student rarely change: a rerun of evaluate after a training
    change reuses their scores instead of paying for them again.
    """

    def __init__(self, settings: dict, task_dir: Path, test_file: Path):
        self.root = state_dir() / "eval-cache"
        self.context = json.dumps({
            **settings, "tasks_digest": folder_digest(task_dir),
            "test_digest": hashlib.sha256(Path(test_file).read_bytes()).hexdigest(),
        }, sort_keys=True)
        self._paths: dict[Path, Path] = {}

    def _path(self, model_dir: Path) -> Path:
        # Hashing a model folder reads every byte (500 MB for the teacher): once per folder, not
        # once for the get and again for the put.
        if model_dir not in self._paths:
            key = hashlib.sha256((folder_digest(model_dir) + self.context).encode()).hexdigest()
            self._paths[model_dir] = self.root / f"{key}.json"
        return self._paths[model_dir]

    def get(self, model_dir: Path) -> dict | None:
        path = self._path(model_dir)
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, model_dir: Path, scores: dict) -> None:
        write_text_atomic(self._path(model_dir), json.dumps(scores))
