"""Evaluate every classifier on the gold set: teacher, baselines, both students and the ONNX int8 export."""

from __future__ import annotations

import time
from pathlib import Path

from potstill.classify.labels import argmax
from potstill.classify.metrics import classifier_scores, fit_tfidf, majority_probs, tfidf_predict
from potstill.classify.onnx_export import INT8_FILE, OnnxClassifier
from potstill.classify.student import predict_proba

MODELS = ("teacher", "majority", "tfidf_logreg", "student_hard", "student_soft", "onnx_int8")


def timed(predict, texts: list[str]) -> tuple[list[list[float]], float]:
    """Return (probabilities, texts per second) of one end-to-end pass over `texts`."""
    start = time.perf_counter()
    probs = predict(texts)
    return probs, len(texts) / (time.perf_counter() - start)


def evaluate_models(gold: list[dict], train: list[dict], students: dict[str, Path], onnx_dir: Path,
                    classify) -> tuple[dict, dict]:
    """Return ({model: scores}, {model: speed}) on the teacher-labelled gold rows."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    names = classify.label_names
    k = len(names)
    texts = [row["text"] for row in gold]
    gold_ids = [names.index(row["label"]) for row in gold]
    teacher_probs = [row["teacher_probs"] or [1.0 / k] * k for row in gold]
    teacher_ids = [argmax(p) for p in teacher_probs]
    train_texts = [row["text"] for row in train]
    train_ids = [names.index(row["teacher_label"]) for row in train]
    batch, max_length = classify.speed_batch_size, classify.max_length

    probs: dict[str, list[list[float]]] = {"teacher": teacher_probs,
                                           "majority": majority_probs(train_ids, len(gold), k)}
    speeds: dict[str, dict] = {}
    tfidf = fit_tfidf(train_texts, train_ids, classify.seed)
    probs["tfidf_logreg"], rate = timed(lambda t: tfidf_predict(tfidf, t, k), texts)
    speeds["tfidf_logreg"] = {"items_per_s": rate, "batch_size": len(texts)}
    tokenizer = None
    for name, folder in students.items():
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        predict_proba(model, tokenizer, texts[:batch], batch, max_length)  # warm-up
        probs[name], rate = timed(lambda t, m=model, tok=tokenizer: predict_proba(m, tok, t, batch, max_length), texts)
        speeds[name] = {"items_per_s": rate, "batch_size": batch}
    onnx = OnnxClassifier(onnx_dir / INT8_FILE)
    onnx.predict_proba(tokenizer, texts[:batch], batch, max_length)  # warm-up
    probs["onnx_int8"], rate = timed(lambda t: onnx.predict_proba(tokenizer, t, batch, max_length), texts)
    speeds["onnx_int8"] = {"items_per_s": rate, "batch_size": batch}

    results = {name: classifier_scores(probs[name], gold_ids, None if name == "teacher" else teacher_ids, k)
               for name in MODELS}
    return results, speeds


def per_label_accuracy(results: dict, gold: list[dict], names: list[str]) -> dict:
    """Return {label: {n, teacher, student_soft}} accuracy on each gold label's texts."""
    table = {}
    for index, name in enumerate(names):
        members = [i for i, row in enumerate(gold) if row["label"] == name]
        table[name] = {"n": len(members), **{
            model: (sum(results[model]["predicted"][i] == index for i in members) / len(members)) if members else 0.0
            for model in ("teacher", "student_soft")}}
    return table
