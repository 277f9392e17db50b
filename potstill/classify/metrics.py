"""Classifier figures on the gold set, each with a 95% bootstrap interval over texts, and the baselines.

accuracy   share of gold labels predicted
macro_f1   mean over labels of F1 (labels a model never predicts count as 0)
agree      share of texts where the model predicts what the teacher predicts
ece        expected calibration error of the top probability (10 equal-width bins)

The intervals resample texts (2,000 draws, seed 0), like the chat pipeline's.
"""

from __future__ import annotations

import random
from collections import Counter

from potstill.classify.labels import argmax
from potstill.evaluation.metrics import (
    BOOTSTRAP_SAMPLES,
    bootstrap_interval,
    calibration_bins,
    expected_calibration_error,
)


def macro_f1(predicted: list[int], gold: list[int], classes: int) -> float:
    """Return the mean F1 over `classes` labels."""
    scores = []
    for label in range(classes):
        tp = sum(p == label and g == label for p, g in zip(predicted, gold, strict=True))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold, strict=True))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / classes


def _resampled(stat, n: int, seed: int = 0) -> tuple[float, float]:
    """Return the 95% bootstrap interval of stat(indices) over texts resampled with replacement."""
    rng = random.Random(seed)
    values = sorted(stat([rng.randrange(n) for _ in range(n)]) for _ in range(BOOTSTRAP_SAMPLES))
    return values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))]


def ece_interval(confidence: list[float], correct: list[bool]) -> tuple[float, float]:
    """Return the 95% bootstrap interval of the ECE of `confidence` against `correct`, over items."""
    return _resampled(lambda ix: expected_calibration_error([confidence[i] for i in ix], [correct[i] for i in ix]),
                      len(correct))


def classifier_scores(probs: list[list[float]], gold: list[int], teacher: list[int] | None, classes: int) -> dict:
    """Return {gold: {acc, macro_f1, agree?, ece}, ci95: {...}, items: {gold: {acc, agree?}}} for one model."""
    predicted = [argmax(p) for p in probs]
    confidence = [max(p) for p in probs]
    correct = [p == g for p, g in zip(predicted, gold, strict=True)]
    n = len(gold)
    scores = {"acc": sum(correct) / n, "macro_f1": macro_f1(predicted, gold, classes),
              "ece": expected_calibration_error(confidence, correct)}
    ci = {"acc": bootstrap_interval([float(c) for c in correct]),
          "macro_f1": _resampled(lambda ix: macro_f1([predicted[i] for i in ix], [gold[i] for i in ix], classes), n),
          "ece": ece_interval(confidence, correct)}
    items = {"acc": [float(c) for c in correct]}
    if teacher is not None:
        agree = [float(p == t) for p, t in zip(predicted, teacher, strict=True)]
        scores["agree"] = sum(agree) / n
        ci["agree"] = bootstrap_interval(agree)
        items["agree"] = agree
    return {"gold": {k: round(v, 6) for k, v in scores.items()},
            "ci95": {k: [round(low, 6), round(high, 6)] for k, (low, high) in ci.items()},
            "items": {"gold": items}, "predicted": predicted, "confidence": confidence}


def majority_probs(train_labels: list[int], n: int, classes: int) -> list[list[float]]:
    """Return the majority-class baseline's prediction (one-hot on the teacher's most frequent label) for n texts."""
    top = Counter(train_labels).most_common(1)[0][0]
    return [[1.0 if c == top else 0.0 for c in range(classes)] for _ in range(n)]


def fit_tfidf(train_texts: list[str], train_labels: list[int], seed: int):
    """Return the TF-IDF + logistic-regression baseline fitted on the teacher's labels (see `tfidf_predict`)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
                          LogisticRegression(max_iter=2000, random_state=seed))
    return model.fit(train_texts, train_labels)


def tfidf_predict(model, texts: list[str], classes: int) -> list[list[float]]:
    """Return the fitted TF-IDF baseline's probabilities over all `classes` (labels it never saw get 0)."""
    full = [[0.0] * classes for _ in texts]
    for row, probs in zip(full, model.predict_proba(texts), strict=True):
        for label, p in zip(model.classes_, probs, strict=True):
            row[int(label)] = float(p)
    return full


def reliability_plot(models: dict[str, dict], path, bins: int = 10) -> None:
    """Draw a reliability diagram (accuracy vs confidence per bin) of each model to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, scores in models.items():
        points = calibration_bins(scores["confidence"], scores["items"]["gold"]["acc"], bins)
        xs, ys = [x for x, _, _ in points], [y for _, y, _ in points]
        ax.plot(xs, ys, marker="o", linewidth=1.2, label=f"{name} (ECE {scores['gold']['ece']:.3f})")
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy on gold labels")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Reliability on the gold set")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
