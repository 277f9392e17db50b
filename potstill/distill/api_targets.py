"""API soft targets: top-k logprobs an endpoint returned as token strings, mapped back to token ids.

Only for a teacher that shares the student's tokenizer; every response is re-tokenized and a row
whose tokens do not line up is left out and counted.
"""

from __future__ import annotations

from pathlib import Path

from potstill.distill.kd import MISSING_LOGPROB
from potstill.io import read_jsonl


def token_string_index(tokenizer) -> dict[str, int]:
    """Return {decoded token string: id} for strings that decode from exactly one token id.

    Endpoints return top-logprob candidates as decoded strings; byte-level pieces of one UTF-8
    character all decode to the same replacement string, so ambiguous strings are left out.
    """
    index: dict[str, int] = {}
    ambiguous: set[str] = set()
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if text in index:
            ambiguous.add(text)
        index[text] = token_id
    for text in ambiguous:
        del index[text]
    return index


def align_api_logprobs(
    tokenizer, response: str, tokens: list[dict], index: dict[str, int], k: int, counts: dict | None = None
) -> tuple[list[list[int]], list[list[float]]] | None:
    """Return per-token top-k (ids, logprobs) for a response, or None if they do not line up.

    Re-tokenising the response must give the same tokens the endpoint reported, one for one;
    otherwise the teacher does not share the student's tokenizer and its logprobs are unusable.
    A top-k alternative whose string maps to no single token id (unknown, or ambiguous like the
    replacement character) is left out of the targets; with `counts` given, a row that lines up
    adds its alternatives to counts["top_alternatives"] and the left-out ones to
    counts["top_alternatives_unmapped"], so they are reported rather than dropped silently.
    """
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if len(response_ids) != len(tokens):
        return None
    ids, logprobs = [], []
    alternatives = unmapped = 0
    for token_id, item in zip(response_ids, tokens, strict=True):
        if tokenizer.decode([token_id]) != item["token"]:
            return None
        row_ids, row_lps = [], []
        for text, logprob in item["top"][:k]:
            alternatives += 1
            if text not in index:
                unmapped += 1
            elif logprob is not None:
                row_ids.append(index[text])
                row_lps.append(float(logprob))
        row_ids += [0] * (k - len(row_ids))
        row_lps += [MISSING_LOGPROB] * (k - len(row_lps))
        ids.append(row_ids)
        logprobs.append(row_lps)
    if counts is not None:
        counts["top_alternatives"] = counts.get("top_alternatives", 0) + alternatives
        counts["top_alternatives_unmapped"] = counts.get("top_alternatives_unmapped", 0) + unmapped
    return ids, logprobs


def load_api_soft_targets(tokenizer, generated: Path, k: int) -> tuple[dict[str, dict], dict]:
    """Return ({row id: {kd_ids, kd_logprobs}}, alignment stats) from generate's outputs.

    Each response text (responses.jsonl) is re-tokenised with the student's tokenizer and must
    give back, token for token, what the endpoint reported (logprobs.jsonl); rows that do not
    are counted and trained on their text alone. Top-k alternatives that map to no token id are
    counted (top_alternatives_unmapped of top_alternatives) and reported on stderr.
    """
    responses = {row["id"]: row["messages"][-1]["content"]
                 for _, row in read_jsonl(generated / "responses.jsonl")}
    index = token_string_index(tokenizer)
    targets: dict[str, dict] = {}
    stats = {"rows_aligned": 0, "rows_misaligned": 0, "top_alternatives": 0, "top_alternatives_unmapped": 0}
    for _, row in read_jsonl(generated / "logprobs.jsonl"):
        if row["id"] not in responses:
            continue
        aligned = align_api_logprobs(tokenizer, responses[row["id"]], row["tokens"], index, k, counts=stats)
        if aligned is None:
            stats["rows_misaligned"] += 1
            continue
        stats["rows_aligned"] += 1
        targets[row["id"]] = {"kd_ids": aligned[0], "kd_logprobs": aligned[1]}
    if stats["top_alternatives_unmapped"]:
        import sys

        print(f"train: {stats['top_alternatives_unmapped']} of {stats['top_alternatives']} top-k alternatives in "
              f"{generated / 'logprobs.jsonl'} map to no single token id of the student's tokenizer (unknown or "
              "ambiguous strings); their probability joins the mass outside the top-k (kd.tail; metrics: "
              "top_alternatives_unmapped)",
              file=sys.stderr)
    return targets, stats
