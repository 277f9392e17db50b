"""The classifier's data: texts to label, gold-labelled texts, and the teacher-labelled rows between stages.

    texts.jsonl  {"id": "t-00001", "text": "..."}                      labelled by the teacher
    gold.jsonl   {"id": "g-00001", "text": "...", "label": "delivery"}  human labels, evaluation only

Bad input stops with the file, the line and what to do (InputError).
"""

from __future__ import annotations

from pathlib import Path

from potstill.errors import InputError
from potstill.io import read_jsonl

# Longer texts are cut by the student's tokenizer (classify.max_length) anyway; this catches a
# file that is not short messages at all (a whole document on one line).
MAX_TEXT_CHARS = 4000


def read_texts(path: str | Path, labels: list[str] | None = None) -> list[dict]:
    """Return the rows of a texts file; with `labels`, each row must carry a gold `label` among them."""
    rows, seen = [], {}
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        if not isinstance(row.get("id"), str) or not row["id"]:
            raise InputError(f'{where}: missing "id" (a non-empty string naming the text)')
        if row["id"] in seen:
            raise InputError(f"{where}: duplicate id {row['id']!r} (first on line {seen[row['id']]}); "
                             "ids must be unique")
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f'{where}: "text" is missing or empty; give the message to classify')
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"{where}: text is {len(text)} characters (> {MAX_TEXT_CHARS}); "
                             "the classifier expects short messages: split or shorten it")
        if labels is not None and row.get("label") not in labels:
            raise InputError(f"{where}: gold label {row.get('label')!r} is not one of classify.labels "
                             f"({', '.join(labels)}); fix the row or add the label to params.yaml")
        seen[row["id"]] = number
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no texts; add one JSON object per line with id and text")
    return rows


def by_length(texts: list[str], batch_size: int) -> list[list[int]]:
    """Return batches of text indices, texts of similar length together (less padding), in length order.

    What a serving batcher does: a batch costs as much as its longest text, so mixing a 3-word and
    a 40-word message pays for 40 twice. The caller puts the results back in the texts' order.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

