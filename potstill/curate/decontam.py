"""Decontamination: flag training rows that restate an eval item, in its words or in any order.

Two checks per eval item (its prompt followed by its gold answer, as lm-eval renders them):
- word n-grams: a row containing more than `threshold` of the item's n-grams (copied text);
- key words: a row containing every one of the item's key words, in any order ("Ottawa is the
  capital of which country? ... Canada" restates "The capital of Canada is Ottawa"). Key words
  are the item's words that few eval items share (document frequency at most KEY_MAX_DF, so
  "capital" and few-shot examples are not keys) and that are not function words; an item needs
  at least MIN_KEYS of them,
  so one rare word alone never flags a row.
Rows that come close without matching (all key words but one, or over half the n-gram
threshold) are listed as near misses in the curate report, not dropped.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from potstill.tasks import EvalItem
from potstill.text import WORD, words

# A name shared by more eval items than this (or than 2% of them, in a small set) is the task's
# vocabulary, not one item's entity: in the shipped tasks a country and its capital each occur in
# 2 items (the mc and the gen task), month names in 8-16, weekdays in 11. Function words are never keys.
KEY_MAX_DF = 4
MIN_KEYS = 2
FUNCTION_WORDS = frozenset("a an and are as at be by for from in is it its of on or that the this to was were which "
                           "what who with".split())


class Decontaminator:
    """Indexes of the eval items (n-grams and key words): flags rows that restate any one item."""

    def __init__(self, items: Iterable[EvalItem], ngram: int, threshold: float, key_words: bool = True):
        self.ngram, self.threshold = ngram, threshold
        self.items: list[EvalItem] = []
        self.sizes: list[int] = []
        self.index: dict[tuple[str, ...], list[int]] = defaultdict(list)
        tokens_of: list[set[str]] = []
        capitalised_of: list[set[str]] = []
        lower_case: set[str] = set()
        for item in items:
            tokens = words(item.text)
            grams = self._ngrams(tokens, min(ngram, len(tokens)))
            if not grams:
                continue
            for gram in grams:
                self.index[gram].append(len(self.items))
            self.items.append(item)
            self.sizes.append(len(grams))
            tokens_of.append(set(tokens))
            written = WORD.findall(item.text)
            capitalised_of.append({word.lower() for word in written if word[0].isupper()})
            lower_case.update(word for word in written if word[0].islower())
        # Items shorter than `ngram` words are matched whole, at their own length.
        self.lengths = sorted({len(gram) for gram in self.index})
        df = Counter(word for tokens in tokens_of for word in tokens)
        max_df = max(1, min(KEY_MAX_DF, len(tokens_of) // 50))
        self.keys: list[frozenset[str]] = []
        for item, names in zip(self.items, capitalised_of, strict=True):
            keys = frozenset(w for w in names - lower_case if df[w] <= max_df and w not in FUNCTION_WORDS)
            gives_away = not item.answer or keys & set(words(item.answer))
            self.keys.append(keys if key_words and gives_away else frozenset())
        self.key_index: dict[str, list[int]] = defaultdict(list)
        for number, keys in enumerate(self.keys):
            if len(keys) >= MIN_KEYS:
                for word in keys:
                    self.key_index[word].append(number)

    @staticmethod
    def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
        return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)} if n else set()

    def match(self, text: str) -> tuple[EvalItem, float] | None:
        """Return the eval item with the largest n-gram overlap above the threshold, and the overlap.

        Overlap = share of the item's n-grams that occur in `text`: 1.0 means the whole item
        (prompt and gold answer) appears in the row.
        """
        found = self.check(text)
        return (found["item"], found["overlap"]) if found and found["contaminated"] and found["how"] == "ngrams" \
            else None

    def check(self, text: str) -> dict | None:
        """Return the closest eval item to `text`: {item, how, overlap, detail, contaminated}, or None.

        how = "ngrams" (overlap > threshold), "key words" (every key word of the item in the row),
        or a near miss (contaminated False) when the row comes close to either.
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
        if best is not None and overlap > self.threshold:
            item = self.items[best]
            return {"item": item, "how": "ngrams", "overlap": overlap, "contaminated": True,
                    "detail": f"{overlap:.0%} of {item.task} item {item.item_id} n-grams"}
        present = set(tokens)
        shared: dict[int, int] = defaultdict(int)
        for word in present & self.key_index.keys():
            for item in self.key_index[word]:
                shared[item] += 1
        full = sorted(item for item, count in shared.items() if count == len(self.keys[item]))
        if full:
            item = self.items[full[0]]
            keys = ", ".join(sorted(self.keys[full[0]]))
            return {"item": item, "how": "key words", "overlap": 1.0, "contaminated": True,
                    "detail": f"every key word of {item.task} item {item.item_id} ({keys}), in any order"}
        near = sorted((item for item, count in shared.items() if count == len(self.keys[item]) - 1 and count >= 2))
        if near:
            item = self.items[near[0]]
            missing = ", ".join(sorted(self.keys[near[0]] - present))
            return {"item": item, "how": "near miss", "overlap": 0.0, "contaminated": False,
                    "detail": f"all key words of {item.task} item {item.item_id} but {missing}"}
        if best is not None and overlap > self.threshold / 2:
            item = self.items[best]
            return {"item": item, "how": "near miss", "overlap": overlap, "contaminated": False,
                    "detail": f"{overlap:.0%} of {item.task} item {item.item_id} n-grams (threshold "
                              f"{self.threshold:.0%})"}
        return None
