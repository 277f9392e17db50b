"""Word-level text measures shared by curation (filters) and evaluation (degenerate answers)."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+")
# A greedy answer whose word 3-grams repeat more than this share is a loop, not an answer
# (bench/distill_grid.py's definition; curate drops teacher replies above 0.3).
DEGENERATE_RATIO = 0.5


def words(text: str) -> list[str]:
    """Return the lowercased word tokens of `text` (letters, digits, underscore)."""
    return WORD.findall(text.lower())


def repeated_ngram_ratio(reply: str, n: int = 3) -> float:
    """Return the share of word n-grams that repeat an earlier one (0 = none, near 1 = a loop)."""
    tokens = words(reply)
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def is_degenerate(answer: str) -> bool:
    """Return whether a generated answer is a repetition loop (repeated word 3-grams > DEGENERATE_RATIO)."""
    return repeated_ngram_ratio(answer) > DEGENERATE_RATIO
