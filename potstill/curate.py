"""Curation: flag rows that must not be trained on (and why), then split what is kept.

Rows stream through a `Curator` one at a time; it keeps only small per-row state (a 16-byte hash
per row for exact duplicates, a MinHash signature and LSH entry per kept row for near-duplicates)
and the eval items' n-gram index for decontamination. Each check returns a short detail string
when a row fails it, so the report can say not only how many rows went but why each one did.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import zip_longest

import numpy as np

from potstill.params import CurateParams
from potstill.tasks import EvalItem

# Below this many training examples a student memorizes rather than generalizes (DESIGN.md).
MEMORIZE_BELOW = 500

# Matched anywhere in a reply, after lowercasing and straightening apostrophes. Kept specific:
# a story whose character says "I can't" must not be dropped as a refusal.
REFUSAL_PHRASES = (
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i apologize, but i can't",
    "i apologize, but i cannot",
    "as an ai language model",
    "as a language model, i",
    "i'm not able to help with",
    "i can't help with that",
    "i cannot help with that",
    "i can't assist with that",
    "i cannot assist with that",
    "i'm unable to provide",
    "i am unable to provide",
)

# What an endpoint or a proxy sends back instead of an answer, anchored at the start of the reply:
# an answer that explains what "500 Internal Server Error" means is a good answer, not an error.
_STATUS = (r"(?:internal server error|bad gateway|service unavailable|gateway time-?out|"
           r"too many requests|rate limit(?:ed| exceeded)|request timed out|upstream connect error)")
ENDPOINT_ERROR = re.compile(
    r"^\s*(?:"
    r"error\s*(?:code)?\s*[:\-(]"                         # "Error: ...", "Error code: 429 - {...}"
    r"|\{\s*[\"']error[\"']"                              # {"error": {...}} (also when not valid JSON)
    r"|<(?:!doctype html|html).{0,500}?<title>[^<]*" + _STATUS +  # an HTML error page
    r")",
    re.IGNORECASE | re.DOTALL,
)
# A bare status line ("502 Bad Gateway", "HTTP/1.1 503 Service Unavailable") counts only in a short
# reply and when the phrase ends the line or a sentence: "Too many requests can overwhelm a
# server" is an answer.
STATUS_LINE = re.compile(r"^\s*(?:http/\d(?:\.\d)?\s+)?(?:\d{3}\s*[:\-]?\s*)?" + _STATUS
                         + r"\s*(?:$|[.:;,!(\-\n])", re.IGNORECASE)
STATUS_LINE_MAX_CHARS = 200

WORD = re.compile(r"\w+")
# Unicode category Cc (C0, DEL, C1) except tab, newline and carriage return.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
NON_SPACE = re.compile(r"\S")
ALNUM = re.compile(r"[^\W_]")  # letters and digits of any script
# A number not glued to a preceding word ("6-7" gives 6 and 7); thousands separators allowed.
NUMBER = re.compile(r"(?<!\w)-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def response_text(row: dict) -> str:
    """Return the assistant's reply of a generated row."""
    return row["messages"][-1]["content"]


def normalise(text: str) -> str:
    """Return text lowercased with whitespace collapsed, for exact-duplicate detection."""
    return re.sub(r"\s+", " ", text.strip().lower())


def words(text: str) -> list[str]:
    """Return the lowercased word tokens of `text` (letters, digits, underscore)."""
    return WORD.findall(text.lower())


def dialogue_text(row: dict) -> str:
    """Return the user and assistant turns of a row joined by newlines (system prompts left out).

    One system prompt is often shared by every row; counting it would make all rows look alike.
    """
    return "\n".join(m["content"] for m in row["messages"] if m.get("role") != "system")


# ---------------------------------------------------------------------------------------------
# Quality checks: each returns a detail string when the reply fails, None when it passes.
# ---------------------------------------------------------------------------------------------

def refusal(reply: str) -> str | None:
    """Return the refusal phrase found in the reply, if any."""
    text = normalise(reply.replace("\u2019", "'"))
    return next((f"contains {p!r}" for p in REFUSAL_PHRASES if p in text), None)


def repeated_ngram_ratio(reply: str, n: int = 3) -> float:
    """Return the share of word n-grams that repeat an earlier one (0 = none, near 1 = a loop)."""
    tokens = words(reply)
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def repetition(reply: str, max_ratio: float) -> str | None:
    """Return why the reply is degenerate repetition (repeated word 3-gram share above max_ratio)."""
    ratio = repeated_ngram_ratio(reply)
    return f"{ratio:.0%} of word 3-grams repeat (> {max_ratio:.0%})" if ratio > max_ratio else None


def encoding_junk(reply: str, min_alnum_share: float) -> str | None:
    """Return why the reply looks like mojibake: U+FFFD, control characters, or few letters/digits.

    Digits count with letters so that "47 + 86 = 133" is not junk.
    """
    if "\ufffd" in reply:
        return "contains U+FFFD (bytes that were not valid UTF-8)"
    control = CONTROL.search(reply)
    if control:
        return f"contains control character U+{ord(control.group()):04X}"
    visible = NON_SPACE.subn("", reply)[1]
    share = ALNUM.subn("", reply)[1] / visible if visible else 1.0
    return f"only {share:.0%} letters/digits (< {min_alnum_share:.0%})" if share < min_alnum_share else None


def endpoint_error(reply: str) -> str | None:
    """Return the start of the reply when it is an error message the endpoint sent instead of an answer."""
    stripped = reply.strip()
    if ENDPOINT_ERROR.match(stripped) or (len(stripped) <= STATUS_LINE_MAX_CHARS and STATUS_LINE.match(stripped)):
        return f"starts {stripped[:60]!r}"
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            return None
        if isinstance(obj, dict) and ("error" in obj or "errors" in obj):
            return "a JSON error object"
    return None


def parse_number(text: str) -> float | None:
    """Return `text` as a number when it is one (commas as thousands separators), else None."""
    match = NUMBER.fullmatch(text.strip())
    return float(match.group().replace(",", "")) if match else None


def wrong_answer(reply: str, expected) -> str | None:
    """Return why the reply's last number is not the expected answer (None if right or not checkable)."""
    target = parse_number(str(expected))
    if target is None:
        return None  # not a numeric answer: nothing we can check mechanically
    numbers = NUMBER.findall(reply)
    if not numbers:
        return f"expected {expected}, the reply has no number"
    got = float(numbers[-1].replace(",", ""))
    return None if got == target else f"expected {expected}, last number is {numbers[-1]}"


def quality_reasons(row: dict, cur: CurateParams) -> dict[str, str]:
    """Return {reason: detail} for every quality filter the row fails (empty dict = passes)."""
    reply = response_text(row)
    stripped = reply.strip()
    why: dict[str, str] = {}
    if cur.min_response_chars and not stripped:
        why["empty"] = "no text"
    elif len(stripped) < cur.min_response_chars:
        why["too_short"] = f"{len(stripped)} chars < {cur.min_response_chars}"
    if cur.max_response_chars is not None and len(stripped) > cur.max_response_chars:
        why["too_long"] = f"{len(stripped)} chars > {cur.max_response_chars}"
    if cur.drop_truncated and row.get("finish_reason") == "length":
        why["truncated"] = "finish_reason length (hit teacher.max_tokens)"
    checks = [
        ("endpoint_error", cur.drop_endpoint_errors, lambda: endpoint_error(reply)),
        ("refusal", cur.drop_refusals, lambda: refusal(reply)),
        ("encoding_junk", cur.drop_encoding_junk and bool(stripped),
         lambda: encoding_junk(reply, cur.min_alnum_share)),
        ("repetition", cur.max_repeated_ngram_ratio is not None,
         lambda: repetition(reply, cur.max_repeated_ngram_ratio)),
        ("wrong_answer", cur.check_answers and row.get("answer") is not None,
         lambda: wrong_answer(reply, row.get("answer"))),
    ]
    for reason, enabled, check in checks:
        detail = check() if enabled else None
        if detail:
            why[reason] = detail
    return why


# ---------------------------------------------------------------------------------------------
# Duplicates and contamination: indexes that grow as rows stream past.
# ---------------------------------------------------------------------------------------------

class NearDuplicates:
    """MinHash LSH over word shingles: finds an earlier kept row whose Jaccard similarity is high.

    datasketch computes the MinHash signatures and picks the LSH banding (b bands of r rows).
    The band tables are plain dicts of {band hash: row index}, not datasketch's MinHashLSH
    storage, which keeps a set and a bytes key per band per row: at b=25 that index alone held
    7.9 KB a row, these tables plus the signatures about 2.5 KB (bench/curate_bench.py).
    Candidates are confirmed against the stored signature (4 bytes per permutation), so a
    chance band collision never drops a row.
    """

    # Banding tuned for recall (false negatives weigh 9x false positives): a candidate that is
    # not a near-duplicate costs one signature comparison, a missed near-duplicate stays in.
    LSH_WEIGHTS = (0.1, 0.9)
    BLOCK = 4096  # signatures per storage block

    def __init__(self, threshold: float, num_perm: int, shingle_size: int):
        from datasketch import MinHash, MinHashLSH

        self.threshold, self.shingle_size = threshold, shingle_size
        banding = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=self.LSH_WEIGHTS)
        self.bands, self.rows_per_band = banding.b, banding.r
        self.tables: list[dict[int, int | list[int]]] = [{} for _ in range(self.bands)]
        self._template = MinHash(num_perm=num_perm, seed=1)  # permutations computed once, shared
        # Fixed-size blocks, not one array grown by doubling: growing would copy everything and
        # briefly hold it twice.
        self._blocks: list[np.ndarray] = []
        self.ids: list[str] = []

    def shingles(self, text: str) -> set[bytes]:
        """Return the set of word shingles of `text` (the whole text when it is shorter than one)."""
        tokens = words(text)
        k = min(self.shingle_size, len(tokens)) or 1
        return {" ".join(tokens[i:i + k]).encode() for i in range(max(len(tokens) - k + 1, 1))}

    def signature(self, text: str) -> np.ndarray:
        """Return the MinHash signature of `text`'s shingles (num_perm uint32 values)."""
        minhash = self._template.copy()  # an empty MinHash sharing the template's permutations
        minhash.update_batch(list(self.shingles(text)))
        return minhash.hashvalues

    def _band_keys(self, signature: np.ndarray) -> list[int]:
        r = self.rows_per_band
        return [hash(signature[i * r:(i + 1) * r].tobytes()) for i in range(self.bands)]

    def find(self, signature: np.ndarray) -> tuple[str, float] | None:
        """Return (id, estimated Jaccard) of the most similar earlier row at or above the threshold."""
        candidates: set[int] = set()
        for table, key in zip(self.tables, self._band_keys(signature), strict=True):
            hit = table.get(key)
            if isinstance(hit, list):
                candidates.update(hit)
            elif hit is not None:
                candidates.add(hit)
        if not candidates:
            return None
        indices = sorted(candidates)
        stored = np.stack([self._blocks[i // self.BLOCK][i % self.BLOCK] for i in indices])
        similarity = (stored == signature).mean(axis=1)
        best = int(similarity.argmax())
        if similarity[best] < self.threshold:
            return None
        return self.ids[indices[best]], float(similarity[best])

    def add(self, row_id: str, signature: np.ndarray) -> None:
        """Index a kept row so that later rows are compared with it."""
        index = len(self.ids)
        if index % self.BLOCK == 0:
            self._blocks.append(np.empty((self.BLOCK, len(signature)), dtype=signature.dtype))
        self._blocks[-1][index % self.BLOCK] = signature
        self.ids.append(row_id)
        for table, key in zip(self.tables, self._band_keys(signature), strict=True):
            hit = table.get(key)
            if hit is None:
                table[key] = index
            elif isinstance(hit, list):
                hit.append(index)
            else:
                table[key] = [hit, index]


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


class Curator:
    """Flags streamed rows; remembers just enough of the kept ones to catch later duplicates."""

    def __init__(self, cur: CurateParams, eval_items: Iterable[EvalItem] = ()):
        self.cur = cur
        self.seen: set[bytes] = set()
        self.near = (NearDuplicates(cur.near_dup_threshold, cur.num_perm, cur.shingle_size)
                     if cur.near_dup_threshold is not None else None)
        self.decontam = Decontaminator(eval_items, cur.decontam_ngram, cur.decontam_threshold)

    def flag(self, row: dict) -> dict[str, str]:
        """Return {reason: detail} for the row (empty = keep) and index it when kept.

        Duplicates are looked for only among kept rows: a near-copy of a dropped row (say the
        correct answer after a wrong one) may be the copy worth keeping.
        """
        why = quality_reasons(row, self.cur)
        match = self.decontam.match(dialogue_text(row)) if self.decontam.items else None
        if match:
            item, overlap = match
            why["contaminated"] = f"{overlap:.0%} of {item.task} item {item.item_id} n-grams"
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


# ---------------------------------------------------------------------------------------------
# Split and report
# ---------------------------------------------------------------------------------------------

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


class CurationReport:
    """Counts per reason and the first few examples of each, gathered as rows stream past."""

    def __init__(self, examples_per_reason: int = 3):
        self.rows_in = 0
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self.examples: dict[str, list[dict]] = defaultdict(list)
        self.examples_per_reason = examples_per_reason

    def add(self, row: dict, why: dict[str, str]) -> None:
        """Count one row with its reasons (empty = kept)."""
        self.rows_in += 1
        self.kept += not why
        for reason, detail in why.items():
            self.dropped[reason] += 1
            if len(self.examples[reason]) < self.examples_per_reason:
                self.examples[reason].append(
                    {"id": row["id"], "detail": detail, "response": response_text(row)[:160]})

    def figures(self, split_sizes: dict[str, int], warnings: list[str]) -> dict:
        """Return the report: rows in, kept, rows dropped and rows per reason, examples, split sizes."""
        return {
            "rows_in": self.rows_in,
            "kept": self.kept,
            "dropped_rows": self.rows_in - self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "split": split_sizes,
            "examples": dict(sorted(self.examples.items())),
            "warnings": warnings,
        }


def size_warning(kept: int) -> str | None:
    """Return a warning when too few rows are kept for the student to generalize, else None."""
    if kept >= MEMORIZE_BELOW:
        return None
    return (f"only {kept} examples kept (< {MEMORIZE_BELOW}): the student will memorize them rather "
            "than generalize; generate more (generate.n_examples) or loosen the curate filters")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report_markdown(figures: dict) -> str:
    """Return the curation report as markdown tables a person can skim."""
    lines = [
        "# Curation report", "",
        f"{figures['rows_in']} rows in, {figures['kept']} kept, {figures['dropped_rows']} dropped "
        "(a row can fail several checks).", "",
    ]
    lines += [f"**Warning:** {w}" for w in figures.get("warnings", [])]
    lines += ["", "| reason | rows | examples (id: why) |", "|---|---|---|"]
    for reason, count in figures["dropped"].items():
        shown = "<br>".join(f"{e['id']}: {_cell(e['detail'])}" for e in figures["examples"].get(reason, []))
        lines.append(f"| {reason} | {count} | {shown} |")
    lines += ["", "| split | rows |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in figures["split"].items()]
    return "\n".join(lines) + "\n"
