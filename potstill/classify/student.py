"""The encoder student: load it as a sequence classifier, train it on the teacher's labels, predict.

The loss is the seed's classic one, on classification logits:

    alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, teacher argmax)

with the teacher side built by the chat pipeline's own `teacher_distribution` (its log-probs are
logits up to a constant, so re-tempering them is exact: tail "renorm") and the divergence by
`divergence`, so both pipelines share one definition. alpha 0 is the hard-label student. Each
batch's loss is a mean over its rows and there is no gradient accumulation, so the logged loss
is the one the optimizer minimises.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback

from potstill.distill.kd import MISSING_LOGPROB, divergence, teacher_distribution
from potstill.errors import InputError


def load_encoder(folder: str | Path, labels: list[str], keep_layers: list[int] | None = None):
    """Return (sequence-classification model with a fresh head for `labels`, tokenizer) from an encoder folder.

    `keep_layers` cuts the encoder to those layers, in order (DistilBERT's move: half the layers,
    about twice the speed); None keeps them all.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise InputError(f"{folder}: no encoder here (config.json missing); run the classify prepare stage")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: classifier.*" is the point: the head is new
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)})
    finally:
        hf_logging.set_verbosity(verbosity)
    if keep_layers is not None:
        layers = model.base_model.encoder.layer
        if not keep_layers or max(keep_layers) >= len(layers):
            raise InputError(f"classify.keep_layers: {keep_layers} names a layer the encoder lacks; it has layers "
                             f"0..{len(layers) - 1}")
        model.base_model.encoder.layer = torch.nn.ModuleList([layers[i] for i in keep_layers])
        model.config.num_hidden_layers = len(keep_layers)
    return model, AutoTokenizer.from_pretrained(folder)


def teacher_log_probs(teacher_probs: torch.Tensor) -> torch.Tensor:
    """Return log-probs of the teacher's label distribution, with MISSING_LOGPROB where it put no mass."""
    return torch.where(teacher_probs > 0, teacher_probs.clamp_min(1e-30).log(),
                       torch.full_like(teacher_probs, MISSING_LOGPROB))


def classification_kd_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, alpha: float,
                           temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Return (total, CE on the teacher's argmax, T^2-scaled KL) as batch means; KL is None at alpha 0 (hard labels)."""
    ce = F.cross_entropy(logits.float(), teacher_probs.argmax(-1))
    if alpha == 0:
        return ce, ce.detach(), None
    teacher_log = teacher_distribution(teacher_log_probs(teacher_probs), temperature, 1.0, "renorm")
    student_log = torch.log_softmax(logits.float() / temperature, dim=-1)
    kd = divergence(teacher_log, student_log, "forward_kl").mean() * temperature**2
    return alpha * kd + (1 - alpha) * ce, ce.detach(), kd.detach()


class TextRows(torch.utils.data.Dataset):
    """Tokenised texts with the teacher's distribution (and its argmax as `labels`, which Trainer reports)."""

    def __init__(self, rows: list[dict], tokenizer, max_length: int):
        self.encoded = tokenizer([row["text"] for row in rows], truncation=True, max_length=max_length)
        self.probs = [row["teacher_probs"] for row in rows]

    def __len__(self) -> int:
        return len(self.probs)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.encoded["input_ids"][index], "attention_mask": self.encoded["attention_mask"][index],
                "teacher_probs": self.probs[index]}


class Collator:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, items: list[dict]) -> dict:
        batch = self.tokenizer.pad([{k: item[k] for k in ("input_ids", "attention_mask")} for item in items],
                                   return_tensors="pt")
        probs = torch.tensor([item["teacher_probs"] for item in items], dtype=torch.float32)
        return {**batch, "teacher_probs": probs, "labels": probs.argmax(-1)}


class KDClassifierTrainer(Trainer):
    """HF Trainer whose loss is `classification_kd_loss`; CE and KD are logged beside the total."""

    def __init__(self, *args, alpha: float, temperature: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha, self.temperature = alpha, temperature
        self._terms: dict[str, list[float]] = {"ce": [], "kd": []}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        probs = inputs.pop("teacher_probs")
        inputs.pop("labels")
        outputs = model(**inputs)
        loss, ce, kd = classification_kd_loss(outputs.logits, probs, self.alpha, self.temperature)
        if model.training:
            self._terms["ce"].append(float(ce))
            if kd is not None:
                self._terms["kd"].append(float(kd))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._terms["ce"]:
            for name, values in self._terms.items():
                if values:
                    logs[f"{name}_loss"] = round(sum(values) / len(values), 6)
                    values.clear()
        super().log(logs, *args, **kwargs)


def agreement_metrics(prediction) -> dict:
    """Return val agreement with the teacher's argmax (what the best epoch is chosen by)."""
    logits, labels = prediction.predictions, prediction.label_ids
    return {"agree": float((logits.argmax(-1) == labels).mean())}


class _History(TrainerCallback):
    def __init__(self):
        self.epochs: list[dict] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.epochs.append({"epoch": round(state.epoch or 0), **{k: round(v, 6) for k, v in (metrics or {}).items()
                                                                 if k in ("eval_loss", "eval_agree")}})


def train_student(encoder: Path, train_rows: list[dict], val_rows: list[dict], labels: list[str], classify,
                  alpha: float, out: Path, progress: bool = True) -> dict:
    """Train a student on teacher-labelled rows, keep the epoch with the best val agreement, save it to `out`."""
    from transformers import TrainingArguments, set_seed

    set_seed(classify.seed)
    model, tokenizer = load_encoder(encoder, labels, classify.keep_layers)
    scratch = Path(tempfile.mkdtemp(prefix="potstill-classify-"))
    steps_per_epoch = math.ceil(len(train_rows) / classify.batch_size)
    args = TrainingArguments(
        output_dir=str(scratch), num_train_epochs=classify.epochs, learning_rate=classify.learning_rate,
        per_device_train_batch_size=classify.batch_size, per_device_eval_batch_size=64,
        warmup_steps=max(1, steps_per_epoch // 2), lr_scheduler_type="linear", weight_decay=0.01,
        eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="agree", greater_is_better=True, save_total_limit=1,
        logging_steps=max(1, steps_per_epoch // 4), report_to=[], remove_unused_columns=False,
        seed=classify.seed, data_seed=classify.seed, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0, disable_tqdm=not progress,
    )
    history = _History()
    trainer = KDClassifierTrainer(
        model=model, args=args, train_dataset=TextRows(train_rows, tokenizer, classify.max_length),
        eval_dataset=TextRows(val_rows, tokenizer, classify.max_length), data_collator=Collator(tokenizer),
        compute_metrics=agreement_metrics, callbacks=[history], alpha=alpha, temperature=classify.temperature,
    )
    try:
        result = trainer.train()
        best = max(history.epochs, key=lambda e: e.get("eval_agree", -1))
        trainer.model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    losses = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {"alpha": alpha, "temperature": classify.temperature if alpha else None, "train_rows": len(train_rows),
            "val_rows": len(val_rows), "epochs": history.epochs, "best_epoch": best["epoch"],
            "best_val_agree": best.get("eval_agree"), "train_runtime_s": round(result.metrics["train_runtime"], 1),
            "final_train_loss": losses[-1]["loss"] if losses else None,
            "losses": [{k: entry[k] for k in ("step", "loss", "ce_loss", "kd_loss") if k in entry} for entry in losses]}


@torch.no_grad()
def predict_proba(model, tokenizer, texts: list[str], batch_size: int, max_length: int) -> list[list[float]]:
    """Return softmax probabilities per text, batch by batch."""
    from potstill.classify.data import by_length

    model.eval()
    device = next(model.parameters()).device
    out: list[list[float]] = [[] for _ in texts]
    for batch in by_length(texts, batch_size):
        encoded = tokenizer([texts[i] for i in batch], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt").to(device)
        for i, row in zip(batch, torch.softmax(model(**encoded).logits.float(), dim=-1).tolist(), strict=True):
            out[i] = row
    return out
