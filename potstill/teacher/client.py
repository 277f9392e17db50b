"""Teacher client: one request to an OpenAI-compatible endpoint, its errors classified for retry or stop."""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
from dataclasses import dataclass

from potstill.errors import InputError, TeacherError


class TransientError(RuntimeError):
    """One attempt failed in a way a retry may fix; `kind` is the ledger's name for it."""

    def __init__(self, kind: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.kind = kind
        self.retry_after = retry_after
        self.endpoint = "the endpoint"  # the dispatcher fills in which one


@dataclass(frozen=True)
class Sampling:
    """Everything sent with a request besides the messages; part of the cache key.

    `weights` is not sent: it names the weights potstill itself serves under `model` (a GGUF file
    or a HF checkpoint), so that other weights under the same model name are not answered from
    the cache. None (an endpoint's own model, or the pinned embedded GGUF) leaves it out of the key.
    """

    model: str
    temperature: float
    top_p: float
    max_tokens: int
    logprobs: int
    seed: int
    weights: str | None = None


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
