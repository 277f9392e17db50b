"""How varied a prompt set is: domain balance, n-gram variety, and near-duplicate pairs.

"Diversity beats volume" (DESIGN.md): these figures tell whether a prompt set is worth
distilling on, and `bench/prompt_diversity.py` prints them for the shipped
`data/prompts.jsonl`. Pure functions on plain rows and strings; nothing here knows about DVC.

Words are what `tokenize` gives: lowercased runs of letters, digits and underscores, with
apostrophes inside words dropped ("Don't" -> "dont") and all other punctuation treated as a
separator.
"""

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations

_WORD = re.compile(r"\w+")
_APOSTROPHES = str.maketrans("", "", "'\u2019")

NO_DOMAIN = "(none)"  # rows without a "domain" field are counted under this name


def tokenize(text: str) -> list[str]:
    """Return the lowercased, punctuation-stripped words of `text`."""
    return _WORD.findall(text.lower().translate(_APOSTROPHES))


def word_ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """Return the consecutive word n-grams of `words` (none if there are fewer than n words)."""
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def domain_counts(rows: Iterable[Mapping]) -> dict[str, int]:
    """Return the number of rows per domain, largest first (missing domain: "(none)")."""
    counts = Counter(row.get("domain") or NO_DOMAIN for row in rows)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def distinct_ngram_ratio(texts: Iterable[str], n: int = 3) -> float:
    """Return distinct word n-grams / total word n-grams over all texts (0.0 if there are none).

    N-grams never span two texts. 1.0 means no n-gram repeats anywhere in the corpus; a corpus
    of one sentence repeated k times scores about 1/k.
    """
    if n < 1:
        raise ValueError(f"distinct_ngram_ratio: n={n}; use n >= 1")
    total = 0
    distinct: set[tuple[str, ...]] = set()
    for text in texts:
        ngrams = word_ngrams(tokenize(text), n)
        total += len(ngrams)
        distinct.update(ngrams)
    return len(distinct) / total if total else 0.0


def shingles(text: str, shingle: int = 3) -> set[tuple[str, ...]]:
    """Return the set of word shingles of `text`; a text shorter than one shingle is one shingle.

    Keeping short texts as a single shingle means two identical three-word prompts still count
    as duplicates at shingle=5; an empty text has no shingles and matches nothing.
    """
    words = tokenize(text)
    if 0 < len(words) < shingle:
        return {tuple(words)}
    return set(word_ngrams(words, shingle))


def jaccard(a: set, b: set) -> float:
    """Return |a & b| / |a | b|, or 0.0 when both sets are empty."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def near_duplicate_pairs(
    texts: Sequence[str], threshold: float = 0.5, shingle: int = 3
) -> list[tuple[int, int, float]]:
    """Return (i, j, jaccard) for every pair of texts whose shingle Jaccard is >= threshold.

    Exact, not estimated (no MinHash): an inverted index from shingle to texts means only pairs
    that share at least one shingle are compared, which keeps a few thousand prompts fast.
    Pairs are sorted most similar first, then by index; always i < j.
    """
    if not 0 < threshold <= 1:
        raise ValueError(
            f"near_duplicate_pairs: threshold={threshold}; use a Jaccard similarity in (0, 1]"
        )
    if shingle < 1:
        raise ValueError(f"near_duplicate_pairs: shingle={shingle}; use shingle >= 1")
    shingle_sets = [shingles(text, shingle) for text in texts]
    texts_with: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, shingle_set in enumerate(shingle_sets):
        for sh in shingle_set:
            texts_with[sh].append(index)
    shared: Counter[tuple[int, int]] = Counter()
    for indices in texts_with.values():
        shared.update(combinations(indices, 2))  # indices are ascending, so i < j
    pairs = []
    for (i, j), intersection in shared.items():
        union = len(shingle_sets[i]) + len(shingle_sets[j]) - intersection
        similarity = intersection / union
        if similarity >= threshold:
            pairs.append((i, j, similarity))
    return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))


def diversity_report(rows: Sequence[Mapping], threshold: float = 0.5, shingle: int = 3) -> dict:
    """Return the diversity figures of prompt rows as a JSON-ready dict.

    Rows are {"id", "prompt", "domain"?} mappings. Keys: n_prompts, domains (counts),
    distinct_3gram_ratio, near_duplicate_threshold, near_duplicate_shingle, near_duplicate_pairs
    (how many), near_duplicates (each pair's ids and Jaccard similarity, most similar first).
    """
    texts = [row["prompt"] for row in rows]
    pairs = near_duplicate_pairs(texts, threshold=threshold, shingle=shingle)
    return {
        "n_prompts": len(rows),
        "domains": domain_counts(rows),
        "distinct_3gram_ratio": round(distinct_ngram_ratio(texts, n=3), 4),
        "near_duplicate_threshold": threshold,
        "near_duplicate_shingle": shingle,
        "near_duplicate_pairs": len(pairs),
        "near_duplicates": [
            {"a": rows[i]["id"], "b": rows[j]["id"], "jaccard": round(similarity, 4)}
            for i, j, similarity in pairs
        ],
    }
