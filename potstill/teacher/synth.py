"""Prompt synthesis, self-instruct style: the teacher writes new prompts; keep the new and varied ones.

    rows, stats = synthesize_prompts(shipped_rows, generate_params, answer)

`answer(requests)` sends prompt rows to the teacher and returns their answer records in order (the
generate stage passes the same cached, retried, budgeted `teacher.generate` it answers with), so a
rerun asks nothing again and gets the same prompts back. Each request shows a few shipped prompts
of one domain (domains in turn, examples drawn with `generate.seed`) and asks for
`generate.synthesis_per_request` new ones, one per line. A line is rejected when it is empty, too
long, cut off by max_tokens, a preamble ("Here are five prompts:"), or a near-duplicate of a
shipped prompt or of one accepted before it ("diversity beats volume"); rejections are counted by
reason. When too few survive, more requests follow, up to three times the first round.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable

from potstill.params import GenerateParams
from potstill.teacher.diversity import shingles
from potstill.teacher.prompts import PromptLimits, prompt_problem

ID_PREFIX = "synth-"
# Near-duplicates are judged on word 3-grams, the shingle potstill/diversity.py reports on.
SHINGLE = 3
# Rounds of requests stop at this many times the first round, so a teacher that keeps repeating
# itself (or the shipped prompts) cannot spend without end.
MAX_REQUESTS_FACTOR = 3
# "1. ", "2) ", "- ", "* ", "• ", "(3) ", "Prompt 4: ": list dressing, not part of the prompt.
LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]+(?:\s+|$)|\(?\d{1,3}[.):](?:\s+|$)|prompt\s*\d*\s*[:.)-]\s*)",
                         re.IGNORECASE)
QUOTES = "\"'\u201c\u201d\u2018\u2019`"
REJECTION_REASONS = ("empty", "preamble", "truncated", "too_long", "near_duplicate_of_shipped",
                     "near_duplicate_of_synthesized")


def synthesis_request(index: int, seeds_by_domain: dict[str, list[dict]], gen: GenerateParams) -> dict:
    """Return the prompt row of synthesis request `index`: its domain, drawn examples and the instruction.

    The domain cycles through the sorted domains; the examples are drawn with a generator seeded
    by (generate.seed, index), so the same request (and cache key) comes back on every run.
    """
    domains = sorted(seeds_by_domain)
    domain = domains[index % len(domains)]
    pool = seeds_by_domain[domain]
    examples = random.Random(f"{gen.seed}:{index}").sample(pool, min(gen.synthesis_examples, len(pool)))
    text = gen.synthesis_instruction.format(
        n=gen.synthesis_per_request, domain=domain, examples="\n".join(f"- {row['prompt']}" for row in examples))
    return {"id": f"synthesis-request-{index}", "prompt": text, "domain": domain,
            "seeds": [row["id"] for row in examples]}


def candidate_lines(reply: str, truncated: bool) -> list[tuple[str, str | None]]:
    """Return (prompt text, rejection reason or None) for each line of a synthesis reply.

    List markers and surrounding quotes are stripped. Blank lines inside the list count as empty
    prompts; a last line cut off by max_tokens (`truncated`) is rejected as such.
    """
    lines = reply.strip().splitlines()
    candidates = []
    for number, line in enumerate(lines):
        text = LIST_MARKER.sub("", line.strip(), count=1).strip().strip(QUOTES).strip()
        if not text:
            reason = "empty"
        elif truncated and number == len(lines) - 1:
            reason = "truncated"
        elif text.endswith(":"):
            reason = "preamble"
        else:
            reason = None
        candidates.append((text, reason))
    return candidates


class PromptFilter:
    """Says why a new prompt must be rejected: too long, or a near-duplicate of a shipped or accepted one.

    Exact word-3-gram Jaccard (potstill/diversity.py) through an inverted index, so only prompts
    sharing a shingle are compared.
    """

    def __init__(self, shipped: list[str], threshold: float, max_chars: int):
        self.threshold, self.max_chars = threshold, max_chars
        self.sets: list[set] = []
        self.origins: list[str] = []
        self.index: dict[tuple, list[int]] = defaultdict(list)
        for text in shipped:
            self.add(text, "shipped")

    def problem(self, text: str) -> str | None:
        """Return the rejection reason for `text`, or None if it may be kept."""
        if len(text) > self.max_chars:
            return "too_long"
        mine = shingles(text, SHINGLE)
        if not mine:
            return "empty"  # no words at all ("???")
        shared: Counter[int] = Counter()
        for shingle in mine:
            shared.update(self.index.get(shingle, ()))
        for other, overlap in shared.items():
            if overlap / (len(mine) + len(self.sets[other]) - overlap) >= self.threshold:
                return f"near_duplicate_of_{self.origins[other]}"
        return None

    def add(self, text: str, origin: str = "synthesized") -> None:
        """Index `text` so that later prompts are compared with it."""
        mine = shingles(text, SHINGLE)
        for shingle in mine:
            self.index[shingle].append(len(self.sets))
        self.sets.append(mine)
        self.origins.append(origin)


def synth_id(text: str) -> str:
    """Return the id of a synthesized prompt: synth-<first 12 hex digits of the SHA-256 of its text>."""
    return ID_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def synthesize_prompts(
    shipped: list[dict], gen: GenerateParams, answer: Callable[[list[dict]], list[dict]],
    limits: PromptLimits | None = None,
) -> tuple[list[dict], dict]:
    """Return (up to gen.synthesize new prompt rows, counts: requests, asked, candidates, accepted, rejected).

    `shipped` are the valid rows of the prompts file (examples and the set new prompts must not
    repeat); `limits` rejects, as too long, a prompt that would not fit the teacher's context.
    """
    target, per_request = gen.synthesize, gen.synthesis_per_request
    seeds_by_domain: dict[str, list[dict]] = defaultdict(list)
    for row in shipped:
        seeds_by_domain[row.get("domain", "general")].append(row)
    filter_ = PromptFilter([row["prompt"] for row in shipped], gen.synthesis_near_dup_threshold,
                           gen.synthesis_max_chars)
    max_requests = MAX_REQUESTS_FACTOR * math.ceil(target / per_request)
    accepted: list[dict] = []
    rejected: Counter[str] = Counter()
    requests = candidates = unused = 0
    while len(accepted) < target and requests < max_requests:
        batch = [synthesis_request(index, seeds_by_domain, gen) for index in
                 range(requests, min(max_requests, requests + math.ceil((target - len(accepted)) / per_request)))]
        requests += len(batch)
        for request, record in zip(batch, answer(batch), strict=True):
            for text, reason in candidate_lines(record["content"], record.get("finish_reason") == "length"):
                candidates += 1
                if len(accepted) >= target:
                    unused += 1
                    continue
                row = {"id": synth_id(text), "prompt": text, "domain": request["domain"],
                       "synthesized_from": request["seeds"]}
                reason = reason or filter_.problem(text) or (
                    "too_long" if limits is not None and prompt_problem(row, limits) else None)
                if reason:
                    rejected[reason] += 1
                    continue
                filter_.add(text)
                accepted.append(row)
    return accepted, {
        "target": target, "requests": requests, "asked": requests * per_request, "candidates": candidates,
        "accepted": len(accepted), "rejected": {reason: rejected[reason] for reason in REJECTION_REASONS},
        "unused": unused,
    }


def describe(stats: dict) -> str:
    """Return the log line summing up a synthesis: accepted of target, and rejections by reason."""
    reasons = ", ".join(f"{reason} {n}" for reason, n in stats["rejected"].items() if n) or "none"
    return (f"synthesis: {stats['accepted']} of {stats['target']} new prompts accepted from {stats['candidates']} "
            f"lines in {stats['requests']} requests (rejected: {reasons})")
