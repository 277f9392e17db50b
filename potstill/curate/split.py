"""The train/val/test split: deterministic; stratified by domain, or frozen per row by its id's hash."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from itertools import zip_longest


def _unit(seed: int, row_id: str) -> float:
    """Return a number in [0, 1) fixed by (seed, id) alone."""
    return int(hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()[:15], 16) / 16**15


def split_rows(
    rows: list[dict], val_fraction: float, test_fraction: float, seed: int, method: str = "stratified"
) -> dict[str, list[dict]]:
    """Return a deterministic train/val/test split.

    stratified: rows are ordered by a hash of (seed, id) within each domain, then dealt round-robin
    across domains; test takes the first share of that order, val the next, train the rest. Every
    domain is represented in proportion, even in a small run, but adding rows can move existing
    ones between splits (the shares are of the whole).
    hash: each row's split is fixed by the hash of (seed, id) alone (test below test_fraction, val
    below test_fraction + val_fraction), so growing the data never moves a row between splits; the
    shares are met in expectation, not exactly, and domains only on average.

    Only `id` and `domain` are read, so the caller may pass small stand-ins for the rows.
    """
    if method == "hash":
        out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        for row in rows:
            u = _unit(seed, row["id"])
            out["test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"].append(row)
        return out
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
