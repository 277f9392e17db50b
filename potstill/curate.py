"""Curation: flag rows that must not be trained on (and why), then split what is kept."""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from itertools import zip_longest


def response_text(row: dict) -> str:
    """Return the assistant's reply of a generated row."""
    return row["messages"][-1]["content"]


def normalise(text: str) -> str:
    """Return text lowercased with whitespace collapsed, for exact-duplicate detection."""
    return re.sub(r"\s+", " ", text.strip().lower())


def flag_rows(rows: list[dict], min_response_chars: int, drop_truncated: bool) -> list[list[str]]:
    """Return, for each row, the reasons to drop it (empty list = keep).

    Rows are flagged rather than deleted, so any sidecar keyed by row id stays aligned and the
    report can show what went where.
    """
    seen: set[str] = set()
    reasons: list[list[str]] = []
    for row in rows:
        why = []
        reply = response_text(row).strip()
        if not reply:
            why.append("empty")
        elif len(reply) < min_response_chars:
            why.append("too_short")
        if drop_truncated and row.get("finish_reason") == "length":
            why.append("truncated")
        conversation = normalise(" ".join(m["content"] for m in row["messages"]))
        if conversation in seen:
            why.append("duplicate")
        seen.add(conversation)
        reasons.append(why)
    return reasons


def split_rows(
    rows: list[dict], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[dict]]:
    """Return a deterministic train/val/test split, stratified by domain.

    Rows are ordered by a hash of (seed, id) within each domain, then dealt round-robin across
    domains; test takes the first share of that order, val the next, train the rest. Every
    domain is thus represented in proportion, even when the run is small.
    """
    by_domain: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_domain[row.get("domain", "general")].append(row)
    for group in by_domain.values():
        group.sort(key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).hexdigest())
    dealt = [row for rank in zip_longest(*(by_domain[d] for d in sorted(by_domain)))
             for row in rank if row is not None]
    n_test = round(len(dealt) * test_fraction)
    n_val = round(len(dealt) * val_fraction)
    return {"train": dealt[n_test + n_val:], "val": dealt[n_test:n_test + n_val],
            "test": dealt[:n_test]}


def report(rows: list[dict], reasons: list[list[str]], split: dict[str, list[dict]]) -> dict:
    """Return curation figures: rows in, kept, dropped per reason (with examples), split sizes."""
    dropped = Counter(reason for why in reasons for reason in why)
    examples: dict[str, list[dict]] = defaultdict(list)
    for row, why in zip(rows, reasons, strict=True):
        for reason in why:
            if len(examples[reason]) < 3:
                examples[reason].append({"id": row["id"], "response": response_text(row)[:160]})
    return {
        "rows_in": len(rows),
        "kept": sum(1 for why in reasons if not why),
        "dropped": dict(sorted(dropped.items())),
        "split": {name: len(part) for name, part in split.items()},
        "examples": dict(examples),
    }


def report_markdown(figures: dict) -> str:
    """Return the curation report as a markdown table a person can skim."""
    lines = [
        "# Curation report", "",
        f"{figures['rows_in']} rows in, {figures['kept']} kept.", "",
        "| reason | dropped | example ids |", "|---|---|---|",
    ]
    for reason, count in figures["dropped"].items():
        ids = ", ".join(e["id"] for e in figures["examples"].get(reason, []))
        lines.append(f"| {reason} | {count} | {ids} |")
    lines += ["", "| split | rows |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in figures["split"].items()]
    return "\n".join(lines) + "\n"
