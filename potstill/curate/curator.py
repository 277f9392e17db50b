"""The Curator: flags streamed rows (quality, contamination, duplicates) and remembers just enough."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from potstill.curate.decontam import Decontaminator
from potstill.curate.dedupe import NearDuplicates
from potstill.curate.filters import dialogue_text, normalise, quality_reasons
from potstill.params import CurateParams
from potstill.tasks import EvalItem


class Curator:
    """Flags streamed rows; remembers just enough of the kept ones to catch later duplicates."""

    def __init__(self, cur: CurateParams, eval_items: Iterable[EvalItem] = ()):
        self.cur = cur
        self.seen: set[bytes] = set()
        self.near = (NearDuplicates(cur.near_dup_threshold, cur.num_perm, cur.shingle_size)
                     if cur.near_dup_threshold is not None else None)
        self.decontam = Decontaminator(eval_items, cur.decontam_ngram, cur.decontam_threshold, cur.decontam_key_words)
        self.near_misses: list[dict] = []  # rows close to an eval item but kept: listed in the report

    def flag(self, row: dict) -> dict[str, str]:
        """Return {reason: detail} for the row (empty = keep) and index it when kept.

        Duplicates are looked for only among kept rows: a near-copy of a dropped row (say the
        correct answer after a wrong one) may be the copy worth keeping.
        """
        why = quality_reasons(row, self.cur)
        found = self.decontam.check(dialogue_text(row)) if self.decontam.items else None
        if found and found["contaminated"]:
            why["contaminated"] = found["detail"]
        elif found:
            self.near_misses.append({"id": row["id"], "detail": found["detail"]})
        if why:
            return why
        conversation = normalise(" ".join(m["content"] for m in row["messages"]))
        digest = hashlib.blake2b(conversation.encode(), digest_size=16).digest()
        if digest in self.seen:
            return {"duplicate": "same conversation as an earlier kept row"}
        signature = self.near.signature(dialogue_text(row)) if self.near else None
        found = self.near.find(signature) if self.near else None
        if found:
            return {"near_duplicate": f"of {found[0]} (Jaccard ~{found[1]:.2f})"}
        self.seen.add(digest)
        if self.near:
            self.near.add(row["id"], signature)
        return {}

