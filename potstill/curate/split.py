"""The train/val/test split: deterministic, stratified by domain."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from itertools import zip_longest


def split_rows(
    rows: list[dict], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[dict]]:
    """Return a deterministic train/val/test split, stratified by domain.

    Rows are ordered by a hash of (seed, id) within each domain, then dealt round-robin across
    domains; test takes the first share of that order, val the next, train the rest. Every
    domain is thus represented in proportion, even when the run is small. Only `id` and `domain`
    are read, so the caller may pass small stand-ins for the rows.
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
