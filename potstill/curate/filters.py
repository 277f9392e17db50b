"""Curation filters: each check returns why a row must not be trained on, or None.

Rows stream through a `Curator` one at a time; it keeps only small per-row state (a 16-byte hash
per row for exact duplicates, a MinHash signature and LSH entry per kept row for near-duplicates)
and the eval items' n-gram index for decontamination. Each check returns a short detail string
when a row fails it, so the report can say not only how many rows went but why each one did.
"""

from __future__ import annotations

import json
import re

from potstill.params import CurateParams
from potstill.text import repeated_ngram_ratio

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

