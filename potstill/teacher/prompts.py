"""Prompt rows: read and validate the JSONL, pick a balanced subset, build the chat messages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from potstill.errors import InputError
from potstill.io import scan_jsonl


@dataclass(frozen=True)
class PromptLimits:
    """What makes a prompt too long for the teacher: a character cap and/or its context window."""

    max_tokens: int
    max_chars: int | None = None
    context_tokens: int | None = None
    default_system: str | None = None
    instruction: str | None = None  # generate.reasoning_instruction when reasoning is on


def estimate_prompt_tokens(messages: list[dict]) -> int:
    """Return a rough token count of chat messages: ~4 characters a token, plus a few per message."""
    chars = sum(len(message.get("content") or "") for message in messages)
    return -(-chars // 4) + 4 * len(messages)


def prompt_problem(row: dict, limits: PromptLimits) -> str | None:
    """Return why a valid prompt row cannot be sent (too long for the caps in `limits`), or None."""
    messages = build_messages(row, limits.default_system, limits.instruction)
    chars = sum(len(message["content"]) for message in messages)
    if limits.max_chars is not None and chars > limits.max_chars:
        return (f"prompt {row['id']!r} is {chars} characters (system + user) > teacher.max_prompt_chars "
                f"{limits.max_chars}; shorten it or raise teacher.max_prompt_chars")
    tokens = estimate_prompt_tokens(messages)
    if limits.context_tokens is not None and tokens + limits.max_tokens > limits.context_tokens:
        return (f"prompt {row['id']!r} is ~{tokens} tokens (chars/4) + teacher.max_tokens {limits.max_tokens} > "
                f"teacher.context_tokens {limits.context_tokens}; shorten it or lower teacher.max_tokens")
    return None


def _row_problem(row: dict, seen: dict[str, int]) -> str | None:
    """Return what is wrong with the shape of a prompt row, or None."""
    prompt = row.get("prompt")
    if not isinstance(row.get("id"), str) or not row["id"]:
        return 'missing "id" (a non-empty string naming the prompt)'
    if not isinstance(prompt, str) or not prompt.strip():
        return '"prompt" is missing or empty; give the user message text'
    if "system" in row and not isinstance(row["system"], str):
        return '"system" must be a string'
    if row["id"] in seen:
        return f"duplicate id {row['id']!r} (first on line {seen[row['id']]}); ids must be unique"
    return None


def read_prompts(
    path: str | Path, limit: int = 0, on_bad: str = "error", limits: PromptLimits | None = None
) -> tuple[list[dict], list[dict]]:
    """Return (prompt rows to ask, bad lines skipped as {line, id, reason}).

    on_bad="error" raises InputError naming file:line at the first bad line; "skip" leaves it out
    and reports it, so nothing is dropped silently.
    """
    rows, bad, seen = [], [], {}
    for number, row, problem in scan_jsonl(path):
        if row is not None:
            problem = _row_problem(row, seen) or (prompt_problem(row, limits) if limits else None)
        if problem and on_bad == "error":
            raise InputError(f"{path}:{number}: {problem} (or set generate.on_bad_prompt: skip)")
        if problem:
            prompt_id = row.get("id") if isinstance(row, dict) and isinstance(row.get("id"), str) else None
            bad.append({"line": number, "id": prompt_id, "reason": problem})
            continue
        seen[row["id"]] = number
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no prompts; add one JSON object per line with id and prompt")
    return (balanced_subset(rows, limit) if limit else rows), bad


def load_prompts(path: str | Path, limit: int = 0) -> list[dict]:
    """Return validated prompt rows ({id, prompt, system?, domain?}); InputError names file:line."""
    return read_prompts(path, limit)[0]


def balanced_subset(rows: list[dict], limit: int) -> list[dict]:
    """Return `limit` rows taken round-robin over domains (file order within each domain).

    A small run then still covers every domain instead of the first one in the file.
    """
    queues: dict[str, list[dict]] = {}
    for row in rows:
        queues.setdefault(row.get("domain", "general"), []).append(row)
    picked: list[dict] = []
    while len(picked) < min(limit, len(rows)):
        for queue in queues.values():
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


def build_messages(row: dict, default_system: str | None = None, instruction: str | None = None) -> list[dict]:
    """Return the chat messages for a prompt row: its system message (or the default), then the user.

    `instruction` (generate.reasoning_instruction when generate.reasoning is on) ends the system
    message, the row's own or the default; being part of the messages, it is part of the cache key.
    """
    system = row.get("system") or default_system
    if instruction:
        system = f"{system}\n\n{instruction}" if system else instruction
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": row["prompt"]}]
