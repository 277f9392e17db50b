"""Decontamination: flag training rows that contain too much of any one eval item."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from potstill.curate.filters import words
from potstill.tasks import EvalItem


class Decontaminator:
    """Word n-gram index of the eval items: flags rows that contain too much of any one item."""

    def __init__(self, items: Iterable[EvalItem], ngram: int, threshold: float):
        self.ngram, self.threshold = ngram, threshold
        self.items: list[EvalItem] = []
        self.sizes: list[int] = []
        self.index: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for item in items:
            tokens = words(item.text)
            grams = self._ngrams(tokens, min(ngram, len(tokens)))
            if not grams:
                continue
            for gram in grams:
                self.index[gram].append(len(self.items))
            self.items.append(item)
            self.sizes.append(len(grams))
        # Items shorter than `ngram` words are matched whole, at their own length.
        self.lengths = sorted({len(gram) for gram in self.index})

    @staticmethod
    def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
        return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)} if n else set()

    def match(self, text: str) -> tuple[EvalItem, float] | None:
        """Return the eval item with the largest n-gram overlap above the threshold, and the overlap.

        Overlap = share of the item's n-grams that occur in `text`: 1.0 means the whole item
        (prompt and gold answer) appears in the row.
        """
        tokens = words(text)
        hits: dict[int, int] = {}
        for n in self.lengths:
            for gram in self._ngrams(tokens, n):
                for item in self.index.get(gram, ()):
                    hits[item] = hits.get(item, 0) + 1
        best, overlap = None, 0.0
        for item, count in hits.items():
            share = count / self.sizes[item]
            # Ties go to the first item in task order, so reruns report the same item.
            if share > overlap or (share == overlap and best is not None and item < best):
                best, overlap = item, share
        return (self.items[best], overlap) if best is not None and overlap > self.threshold else None
