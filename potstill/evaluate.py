"""Evaluation: lm-eval on the evaluation tasks (scores, per-item results, calibration), held-out NLL, score cache."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from potstill.io import folder_digest, state_dir, write_text_atomic
from potstill.metrics import distill_metrics, expected_calibration_error, heldout_rows, hf_logits_fn, mc_confidences

REPORTED_METRICS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "exact_match",
                    "exact_match_stderr")


def hf_lm(model, tokenizer, batch_size: int):
    """Return lm-eval's HFLM around an in-memory transformers model, on the model's own device."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                device=str(next(model.parameters()).device))


def lm_eval_scores(model, tokenizer, tasks: list[str], manager, limit: int | None,
                   batch_size: int) -> dict[str, dict[str, float]]:
    """Return {task: {metric: value}} from lm-eval's Python API for an in-memory model."""
    return lm_eval_results(hf_lm(model, tokenizer, batch_size), tasks, manager, limit)[0]


def lm_eval_results(lm, tasks: list[str], manager, limit: int | None) -> tuple[dict, dict, dict]:
    """Return (scores, per-item values, calibration) from lm-eval for any lm-eval LM instance.

    scores: {task: {metric: value}}; per-item: {task: {metric: [value per item, in item order]}}
    (paired accuracy gates); calibration: {"ece": ...} pooled over the multiple-choice tasks,
    from each item's softmax over its choices' log-likelihoods (10 bins).
    """
    from lm_eval import simple_evaluate

    results = simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit,
                              log_samples=True, random_seed=0, numpy_random_seed=0,
                              torch_random_seed=0, fewshot_random_seed=0)
    scores: dict[str, dict[str, float]] = {}
    items: dict[str, dict[str, list[float]]] = {}
    confidences, correct = [], []
    for task in tasks:
        scores[task] = {
            name.split(",")[0]: float(value)
            for name, value in results["results"][task].items()
            if name.split(",")[0] in REPORTED_METRICS and isinstance(value, int | float)
            and not math.isnan(value)
        }
        samples = sorted(results["samples"][task], key=lambda sample: int(sample["doc_id"]))
        items[task] = {metric: [float(sample[metric]) for sample in samples]
                       for metric in scores[task] if not metric.endswith("_stderr")
                       and all(isinstance(sample.get(metric), int | float) for sample in samples)}
        if results["configs"][task].get("output_type") == "multiple_choice":
            task_confidences, task_correct = mc_confidences(samples)
            confidences += task_confidences
            correct += task_correct
    calibration = {"ece": expected_calibration_error(confidences, correct)} if confidences else {}
    return scores, items, calibration


def heldout_nll(model, tokenizer, test_file: Path, max_seq_len: int = 512) -> float:
    """Return mean per-token NLL of the teacher's held-out responses (assistant tokens only)."""
    model.eval()
    rows = heldout_rows(tokenizer, test_file, max_seq_len)
    return distill_metrics(hf_logits_fn(model), rows, None)["heldout_nll"]


class ScoreCache:
    """Scores keyed by (model bytes, task files, test split, reference model, settings), in the state dir.

    The teacher and the untrained student rarely change: a rerun of evaluate after a training
    change reuses their scores instead of paying for them again. `reference` (the teacher) is in
    the key because KL and top-1 agreement are measured against it.
    """

    SCHEMA = 2  # bump when a cached record gains or changes fields

    def __init__(self, settings: dict, task_dir: Path, test_file: Path, reference: Path | None = None):
        self.root = state_dir() / "eval-cache"
        self._digests: dict[Path, str] = {}
        self.context = json.dumps({
            **settings, "schema": self.SCHEMA, "tasks_digest": folder_digest(task_dir),
            "test_digest": hashlib.sha256(Path(test_file).read_bytes()).hexdigest(),
            "reference_digest": self.digest(reference) if reference is not None else None,
        }, sort_keys=True)

    def digest(self, folder: Path) -> str:
        """Return folder_digest(folder), computed once per run: it reads every byte (500 MB for the teacher)."""
        folder = Path(folder)
        if folder not in self._digests:
            self._digests[folder] = folder_digest(folder)
        return self._digests[folder]

    def _path(self, model: Path | tuple[Path, ...]) -> Path:
        folders = model if isinstance(model, tuple) else (model,)
        key = hashlib.sha256(("".join(self.digest(folder) for folder in folders) + self.context).encode())
        return self.root / f"{key.hexdigest()}.json"

    def get(self, model: Path | tuple[Path, ...]) -> dict | None:
        """Return the cached record of a model folder (or folders, e.g. base + adapter), None if absent."""
        path = self._path(model)
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, model: Path | tuple[Path, ...], scores: dict) -> None:
        write_text_atomic(self._path(model), json.dumps(scores))
