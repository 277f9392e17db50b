"""Curate the teacher-labelled texts: flag rows the teacher did not answer with a label, drop duplicates
and texts that restate a gold item, and hold out a validation share by id hash.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from potstill.teacher.diversity import jaccard, shingles

# Word 3-gram Jaccard at or above which a training text restates a gold text (the threshold the
# shipped prompt set is measured with, potstill.teacher.diversity).
GOLD_OVERLAP = 0.5


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def curate_rows(rows: list[dict], gold: list[dict], min_label_mass: float, val_fraction: float,
                seed: int) -> tuple[dict[str, list[dict]], dict]:
    """Return ({train, val}, report): kept rows split by a hash of (seed, id), and what was dropped and why."""
    dropped: dict[str, list[dict]] = {"low_label_mass": [], "duplicate": [], "restates_gold": []}
    gold_exact = {_normal(row["text"]) for row in gold}
    gold_shingles = [shingles(row["text"]) for row in gold]
    seen: set[str] = set()
    kept = []
    for row in rows:
        key = _normal(row["text"])
        if row["teacher_probs"] is None or row["label_mass"] < min_label_mass:
            dropped["low_label_mass"].append(row)
        elif key in seen:
            dropped["duplicate"].append(row)
        elif key in gold_exact or any(jaccard(shingles(row["text"]), g) >= GOLD_OVERLAP for g in gold_shingles):
            dropped["restates_gold"].append(row)
        else:
            seen.add(key)
            kept.append(row)
    order = sorted(kept, key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).hexdigest())
    n_val = round(len(order) * val_fraction)
    val_ids = {row["id"] for row in order[:n_val]}
    splits = {"train": [r for r in kept if r["id"] not in val_ids], "val": [r for r in kept if r["id"] in val_ids]}
    report = {
        "rows_in": len(rows), "train": len(splits["train"]), "val": len(splits["val"]),
        "dropped": {reason: len(items) for reason, items in dropped.items()},
        "teacher_labels": dict(Counter(r["teacher_label"] for r in kept).most_common()),
        "flagged_examples": [{"id": r["id"], "text": r["text"], "label_mass": r["label_mass"]}
                             for r in dropped["low_label_mass"][:10]],
    }
    return splits, report


def curate_markdown(report: dict, min_label_mass: float) -> str:
    """Return the curate report for people: counts, the teacher's label mix, and flagged rows."""
    lines = ["# Classifier data: curate report", "",
             f"{report['rows_in']} teacher-labelled texts in; {report['train']} train, {report['val']} val "
             "(val chooses the epoch; the gold set is never trained on).", "",
             "| dropped because | rows |", "|---|---|"]
    reasons = {"low_label_mass": f"the label tokens carried < {min_label_mass} of the teacher's first-token mass",
               "duplicate": "same text as an earlier row",
               "restates_gold": "restates a gold text (3-gram Jaccard >= 0.5)"}
    lines += [f"| {reasons[k]} | {v} |" for k, v in report["dropped"].items()]
    lines += ["", "## The teacher's labels on the kept rows", "", "| label | rows |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["teacher_labels"].items()]
    if report["flagged_examples"]:
        lines += ["", "## Flagged: the teacher did not answer with a label (first 10)", "",
                  "| id | label mass | text |", "|---|---|---|"]
        lines += [f"| {r['id']} | {r['label_mass']:.3f} | {r['text'][:100].replace('|', '/')} |"
                  for r in report["flagged_examples"]]
    return "\n".join(lines) + "\n"
