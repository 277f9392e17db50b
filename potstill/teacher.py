"""Teacher client: ask an OpenAI-compatible endpoint, cache every answer by content, never twice."""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from potstill.io import InputError, scan_jsonl, write_text_atomic

if TYPE_CHECKING:
    from potstill.ledger import Ledger


class TeacherError(RuntimeError):
    """The endpoint refused the request in a way retrying cannot fix, or the run must stop."""


class TransientError(RuntimeError):
    """One attempt failed in a way a retry may fix; `kind` is the ledger's name for it."""

    def __init__(self, kind: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.kind = kind
        self.retry_after = retry_after
        self.endpoint = "the endpoint"  # the dispatcher fills in which one


@dataclass(frozen=True)
class Sampling:
    """Everything sent with a request besides the messages; part of the cache key."""

    model: str
    temperature: float
    top_p: float
    max_tokens: int
    logprobs: int
    seed: int


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


def make_client(base_url: str, api_key_env: str | None, timeout_s: float, max_retries: int = 0):
    """Return an openai.OpenAI client; the key comes from the env var named by api_key_env.

    The client's own retries are off (max_retries=0): the dispatcher retries, so the ledger
    sees and counts every attempt.
    """
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


def redact(text: str, secret: str | None = None) -> str:
    """Return `text` cut to 300 characters with the API key and anything key-shaped blanked out."""
    if secret and len(secret) >= 4 and secret != "not-needed":
        text = text.replace(secret, "[redacted]")
    text = re.sub(r"(sk-|Bearer\s+|api[_-]?key[\"'=:\s]+)[A-Za-z0-9_\-.]{6,}", r"\1[redacted]", text, flags=re.I)
    return text[:300]


def _error_message(exc, client) -> str:
    """Return the server's own error message from an APIStatusError body (no headers), redacted."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        body = body.get("message", body) if isinstance(body, dict) else body
    return redact(str(body if body else ""), getattr(client, "api_key", None))


def _retry_after(response) -> float | None:
    """Return the seconds a Retry-After (or retry-after-ms) header asks for, or None."""
    headers = getattr(response, "headers", None) or {}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            try:  # an HTTP date
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


def _is_truncated_body(exc: BaseException) -> bool:
    """Return True if a connection error is a reply cut short mid-body (counted as malformed, not a drop)."""
    while exc is not None:
        if "complete message body" in str(exc) or "incomplete" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _classify(exc: BaseException, client, model: str) -> BaseException:
    """Return a TransientError (retry) or TeacherError (stop now, saying what to fix) for a failed call."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return TransientError("timeout", "timed out (teacher.timeout_s)")
    if isinstance(exc, openai.APIConnectionError):
        if _is_truncated_body(exc):
            return TransientError("malformed", "reply body cut short")
        return TransientError("connection", "connection failed or dropped")
    if isinstance(exc, json.JSONDecodeError | openai.APIResponseValidationError):
        return TransientError("malformed", "reply is not valid JSON")
    if not isinstance(exc, openai.APIStatusError):
        return exc
    status, detail = exc.status_code, _error_message(exc, client)
    if status == 429:
        return TransientError("429", "429 rate limited", _retry_after(exc.response))
    if status >= 500:
        return TransientError("5xx", f"{status} server error", _retry_after(exc.response))
    if status == 408:
        return TransientError("timeout", "408 request timeout")
    if status == 409:
        return TransientError("other", "409 conflict")
    if status == 401:
        return TeacherError("endpoint rejected the API key (401); check teacher.api_key_env names the env var "
                            "that holds a valid key for teacher.base_url")
    if status == 403:
        return TeacherError(f"endpoint refused access (403): {detail}; check the key's permissions for "
                            f"model {model!r}")
    if status == 404:
        return TeacherError(f"endpoint answered 404 (unknown model {model!r} or wrong base_url): {detail}; "
                            "check teacher.model and teacher.base_url (it usually ends in /v1)")
    if status == 400:
        return TeacherError(f"endpoint rejected the request (400): {detail}; check teacher.* sampling params "
                            "(max_tokens, logprobs) against what the endpoint supports")
    return TeacherError(f"endpoint answered {status}: {detail}")


def _record(reply) -> dict:
    """Return the plain-JSON record of a chat completion; TransientError('malformed') if it has the wrong shape."""
    try:
        choice = reply.choices[0]
        content = choice.message.content
        if content is not None and not isinstance(content, str):
            raise TypeError("content is not a string")
        usage = reply.usage
        return {
            "content": content or "",
            "finish_reason": choice.finish_reason,
            "usage": {
                "prompt_tokens": getattr(usage, "prompt_tokens", None),
                "completion_tokens": getattr(usage, "completion_tokens", None),
            },
            "logprobs": _normalise_logprobs(choice),
        }
    except (AttributeError, TypeError, IndexError, KeyError):
        raise TransientError("malformed", "reply is JSON but not a chat completion (no choices/message)") from None


def ask(client, messages: list[dict], sampling: Sampling) -> dict:
    """Send one non-streaming chat completion (one attempt); return a plain-JSON record of the answer.

    Raises TransientError (429, 5xx, timeout, dropped connection, malformed reply: worth a retry)
    or TeacherError (400, 401, 403, 404: retrying cannot help; the message says what to fix).
    """
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
    except Exception as exc:
        classified = _classify(exc, client, sampling.model)
        if classified is exc:
            raise  # not an endpoint error we know: keep its traceback
        raise classified from None
    return _record(reply)


def _requests_to_send(records: list[dict | None], keys: list[str]) -> dict[str, list[int]]:
    """Return {request key: indices of the prompts it answers} for the prompts not in the cache.

    Prompts with identical messages share one request, so even at high concurrency nothing is
    paid for twice.
    """
    pending: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        if record is None:
            pending.setdefault(keys[index], []).append(index)
    return pending


def generate(
    prompts: list[dict],
    ask_fn: Callable[[list[dict]], dict],
    sampling: Sampling,
    cache: ResponseCache,
    concurrency: int = 1,
    progress: bool = True,
    default_system: str | None = None,
    ledger: Ledger | None = None,
    cancel: threading.Event | None = None,
    instruction: str | None = None,
    what: str = "prompts",
) -> tuple[list[dict], dict]:
    """Answer every prompt, from the cache where possible; returns (records in prompt order, stats).

    Each answer is cached the moment it arrives, so an interrupted run loses at most the
    requests in flight and a rerun asks only for what is missing. At most `concurrency`
    requests are in flight. On the first error `cancel` is set (the dispatcher's waits watch
    it), queued requests are dropped, and those in flight finish and are cached before the
    error propagates. `instruction` is appended to each system message (see build_messages);
    `what` names the rows in the line printed before sending.
    """
    from potstill.ledger import Ledger

    ledger = ledger or Ledger()
    cancel = cancel or threading.Event()
    keyed = [(row, build_messages(row, default_system, instruction)) for row in prompts]
    keys = [request_key(messages, sampling) for _, messages in keyed]
    records: list[dict | None] = [cache.get(key) for key in keys]
    pending = _requests_to_send(records, keys)
    stats = {"prompts": len(prompts), "cached": sum(r is not None for r in records), "requested": 0,
             "shared_answers": sum(len(indices) - 1 for indices in pending.values())}
    stats["estimate"] = ledger.estimate([keyed[v[0]][1] for v in pending.values()], sampling.max_tokens)
    if progress:
        print(ledger.describe_estimate(stats["estimate"], len(prompts), stats["cached"], what), file=sys.stderr)

    def ask_and_cache(key: str) -> dict:
        record = ask_fn(keyed[pending[key][0]][1])
        cache.put(key, record)
        return record

    ledger.begin()
    try:
        for key, record in _run_pool(pending, ask_and_cache, concurrency, cancel, ledger, progress):
            for index in pending[key]:
                records[index] = record
            stats["requested"] += 1
    except _Stopped as stopped:
        prompt_id = keyed[pending[stopped.key][0]][0]["id"]
        done = sum(cache.get(key) is not None for key in set(keys))
        raise type(stopped.error)(
            f"while asking for prompt {prompt_id!r}: {stopped.error}\n{done} of {len(set(keys))} answers are in "
            f"the cache ({cache.root}) and are kept; fix the cause and rerun: only the missing ones are asked"
        ) from None
    if any(record is None for record in records):
        raise TeacherError("the run was cancelled before every prompt was answered; rerun to finish")
    stats["wall_s"] = round(ledger.elapsed(), 2)
    stats["completion_tokens"] = sum((r["usage"].get("completion_tokens") or 0) for r in records)
    stats["ledger"] = ledger.summary()
    return [
        {"row": row, "messages": messages, "record": record}
        for (row, messages), record in zip(keyed, records, strict=True)
    ], stats


class _Stopped(Exception):
    """A TeacherError raised while answering the request `key`."""

    def __init__(self, key: str, error: TeacherError):
        super().__init__(str(error))
        self.key, self.error = key, error


def _run_pool(pending: dict, ask_and_cache: Callable[[str], dict], concurrency: int, cancel: threading.Event,
              ledger: Ledger, progress: bool):
    """Yield (key, record) as answers arrive from a pool of `concurrency` threads.

    On any error (or Ctrl-C) it sets `cancel`, drops the queued requests, waits for those in
    flight (they land in the cache) and re-raises; a TeacherError comes out as _Stopped(key).
    """
    from potstill.ledger import Cancelled, Progress

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="teacher") as pool, \
            Progress(len(pending), ledger, enabled=progress) as bar:
        futures = {pool.submit(ask_and_cache, key): key for key in pending}
        try:
            for future in as_completed(futures):
                try:
                    record = future.result()
                except Cancelled:
                    continue  # the run is stopping; what stopped it comes from its own future
                except TeacherError as exc:
                    raise _Stopped(futures[future], exc) from None
                bar.update()
                yield futures[future], record
        except BaseException:
            cancel.set()  # wakes the dispatcher's waits; no new request starts
            for future in futures:
                future.cancel()
            raise
