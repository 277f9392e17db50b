"""Teacher client: ask an OpenAI-compatible endpoint, cache every answer by content, never twice."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from potstill.io import InputError, read_jsonl, write_text_atomic


class TeacherError(RuntimeError):
    """The endpoint refused the request in a way retrying cannot fix."""


@dataclass(frozen=True)
class Sampling:
    """Everything sent with a request besides the messages; part of the cache key."""

    model: str
    temperature: float
    top_p: float
    max_tokens: int
    logprobs: int
    seed: int


def load_prompts(path: str | Path, limit: int = 0) -> list[dict]:
    """Return validated prompt rows ({id, prompt, system?, domain?}); InputError names file:line."""
    rows, seen = [], {}
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        prompt = row.get("prompt")
        if not isinstance(row.get("id"), str) or not row["id"]:
            raise InputError(f'{where}: missing "id" (a non-empty string naming the prompt)')
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f'{where}: "prompt" is missing or empty; give the user message text')
        if "system" in row and not isinstance(row["system"], str):
            raise InputError(f'{where}: "system" must be a string')
        if row["id"] in seen:
            raise InputError(
                f"{where}: duplicate id {row['id']!r} (first on line {seen[row['id']]}); ids must be unique"
            )
        seen[row["id"]] = number
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no prompts; add one JSON object per line with id and prompt")
    return balanced_subset(rows, limit) if limit else rows


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


def build_messages(row: dict, default_system: str | None = None) -> list[dict]:
    """Return the chat messages for a prompt row: its system message (or the default), then the user."""
    system = row.get("system") or default_system
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": row["prompt"]}]


def request_key(messages: list[dict], sampling: Sampling) -> str:
    """Return the content address of a request: same model, messages and sampling, same key."""
    blob = json.dumps({"messages": messages, **asdict(sampling)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """One JSON file per request key; written atomically so a kill never leaves a torn entry."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            path.unlink(missing_ok=True)  # only possible if the disk lied; ask again
            return None

    def put(self, key: str, record: dict) -> None:
        write_text_atomic(self._path(key), json.dumps(record, ensure_ascii=False))


def make_client(base_url: str, api_key_env: str | None, timeout_s: float, max_retries: int = 4):
    """Return an openai.OpenAI client; the key comes from the env var named by api_key_env."""
    import openai

    key = "not-needed"
    if api_key_env:
        key = os.environ.get(api_key_env, "")
        if not key:
            raise InputError(
                f"teacher.api_key_env: environment variable {api_key_env} is not set; "
                f"export {api_key_env}=<your key> (keys never go in params.yaml)"
            )
    return openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout_s, max_retries=max_retries)


def _normalise_logprobs(choice) -> list[dict] | None:
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return [
        {
            "token": item.token,
            "logprob": item.logprob,
            "top": [[alt.token, alt.logprob] for alt in (item.top_logprobs or [])],
        }
        for item in content
    ]


def ask(client, messages: list[dict], sampling: Sampling) -> dict:
    """Send one non-streaming chat completion; return a plain-JSON record of the answer."""
    import openai

    extra = {"logprobs": True, "top_logprobs": sampling.logprobs} if sampling.logprobs else {}
    try:
        reply = client.chat.completions.create(
            model=sampling.model,
            messages=messages,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
            stream=False,
            **extra,
        )
    except openai.AuthenticationError as exc:
        raise TeacherError(f"endpoint rejected the API key (401): {exc}; check teacher.api_key_env") from None
    except openai.NotFoundError as exc:
        raise TeacherError(
            f"endpoint answered 404 (unknown model {sampling.model!r} or wrong base_url): {exc}; "
            "check teacher.model and teacher.base_url"
        ) from None
    except openai.BadRequestError as exc:
        raise TeacherError(f"endpoint rejected the request (400): {exc}") from None
    choice = reply.choices[0]
    usage = reply.usage
    return {
        "content": choice.message.content or "",
        "finish_reason": choice.finish_reason,
        "usage": {
            "prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None),
        },
        "logprobs": _normalise_logprobs(choice),
    }


def generate(
    prompts: list[dict],
    ask_fn: Callable[[list[dict]], dict],
    sampling: Sampling,
    cache: ResponseCache,
    concurrency: int = 1,
    progress: bool = True,
    default_system: str | None = None,
) -> tuple[list[dict], dict]:
    """Answer every prompt, from the cache where possible; returns (records in prompt order, stats).

    Each answer is cached the moment it arrives, so an interrupted run loses at most the
    requests in flight and a rerun asks only for what is missing.
    """
    from tqdm.auto import tqdm

    keyed = [(row, build_messages(row, default_system)) for row in prompts]
    keys = [request_key(messages, sampling) for _, messages in keyed]
    records: list[dict | None] = [cache.get(key) for key in keys]
    missing = [i for i, record in enumerate(records) if record is None]
    stats = {"prompts": len(prompts), "cached": len(prompts) - len(missing), "requested": 0}
    started = time.monotonic()

    def one(index: int) -> tuple[int, dict]:
        record = ask_fn(keyed[index][1])
        cache.put(keys[index], record)
        return index, record

    with ThreadPoolExecutor(max_workers=concurrency) as pool, tqdm(
        total=len(missing), desc="teacher requests", unit="req", disable=not progress
    ) as bar:
        futures = [pool.submit(one, i) for i in missing]
        try:
            for future in as_completed(futures):
                index, record = future.result()
                records[index] = record
                stats["requested"] += 1
                bar.update()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    stats["wall_s"] = round(time.monotonic() - started, 2)
    completion = sum((r["usage"].get("completion_tokens") or 0) for r in records)
    stats["completion_tokens"] = completion
    return [
        {"row": row, "messages": messages, "record": record}
        for (row, messages), record in zip(keyed, records, strict=True)
    ], stats
