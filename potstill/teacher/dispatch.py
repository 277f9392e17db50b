"""Send teacher requests robustly: spread over endpoints, paced to rpm/tpm, retried with backoff.

    dispatcher = build_dispatcher(urls, teacher_params, sampling, ledger)
    record = dispatcher(messages)       # thread-safe; potstill.teacher.generate calls it from a pool

Every attempt goes through the ledger (counted, budget-checked) and the endpoint pool (at most
`max_concurrency_per_endpoint` in flight each; an endpoint that keeps failing sits out while
others answer; one that sent Retry-After is left alone that long).
"""

from __future__ import annotations

import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from potstill.errors import TeacherError
from potstill.teacher.client import Sampling, TransientError, ask, make_client
from potstill.teacher.ledger import Cancelled, Ledger
from potstill.teacher.prompts import estimate_prompt_tokens

# Consecutive failures after which an endpoint sits out (for a growing backoff) while others answer.
SKIP_AFTER_FAILURES = 3
# Retries announced on the log; after these the ledger and the progress line count them.
RETRIES_LOGGED = 5


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failed attempt."""

    max_retries: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    def delay(self, retry: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Return the seconds to wait before retry number `retry` (0 = first retry).

        The server's Retry-After when it sent one (plus up to 10% so waiting clients do not all
        return at once), else exponential backoff with jitter: half of min(max, base * 2^retry)
        fixed, the other half random.
        """
        rng = rng or random
        if retry_after is not None:
            return retry_after + rng.uniform(0, 0.1 * retry_after)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** retry)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class Pacer:
    """Books start times so that at most `per_minute` units (requests or tokens) start per minute.

    Each booking pushes the next free start by units * 60 / per_minute seconds; a request may
    start when the schedule has caught up, so any minute holds at most per_minute units plus
    one request's worth. None = unlimited.
    """

    def __init__(self, per_minute: float | None, clock: Callable[[], float] = time.monotonic):
        self.seconds_per_unit = 60.0 / per_minute if per_minute else 0.0
        self._clock = clock
        self._next = float("-inf")
        self._lock = threading.Lock()

    def reserve(self, units: float = 1.0) -> float:
        """Return the seconds to wait before starting `units`; the slot is booked."""
        if not self.seconds_per_unit:
            return 0.0
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + units * self.seconds_per_unit
            return start - now

    def adjust(self, units: float) -> None:
        """Move the schedule by `units` (negative: a request used fewer tokens than booked)."""
        with self._lock:
            self._next += units * self.seconds_per_unit


@dataclass(eq=False)
class Endpoint:
    """One OpenAI-compatible server: its client, its cap on requests in flight and its health."""

    label: str
    client: object
    slots: int
    in_flight: int = 0
    failures: int = 0  # consecutive
    not_before: float = 0.0  # monotonic time before which nobody sends to it
    sent: int = field(default=0)


class EndpointPool:
    """Hands out endpoints with a free slot, least busy first, skipping any that sits out."""

    def __init__(self, endpoints: list[Endpoint], policy: RetryPolicy, clock: Callable[[], float] = time.monotonic):
        if not endpoints:
            raise ValueError("no endpoints")
        self.endpoints, self.policy, self._clock = endpoints, policy, clock
        self._cond = threading.Condition()

    def acquire(self, cancel: threading.Event) -> Endpoint:
        """Return an endpoint with a free slot (blocking until one has); raise Cancelled if the run stops."""
        with self._cond:
            while True:
                if cancel.is_set():
                    raise Cancelled()
                now = self._clock()
                ready = [e for e in self.endpoints if e.in_flight < e.slots and now >= e.not_before]
                if ready:
                    chosen = min(ready, key=lambda e: (e.in_flight, e.failures, e.sent))
                    chosen.in_flight += 1
                    chosen.sent += 1
                    return chosen
                waking = [e.not_before - now for e in self.endpoints if e.not_before > now]
                self._cond.wait(timeout=min([0.5, *waking]))

    def release(self, endpoint: Endpoint, failed: bool = False, retry_after: float | None = None) -> None:
        """Give a slot back; a failure counts towards sitting out, a success clears the count."""
        with self._cond:
            endpoint.in_flight -= 1
            now = self._clock()
            endpoint.failures = endpoint.failures + 1 if failed else 0
            if endpoint.failures >= SKIP_AFTER_FAILURES:
                pause = self.policy.delay(endpoint.failures - SKIP_AFTER_FAILURES)
                endpoint.not_before = max(endpoint.not_before, now + pause)
            if retry_after:
                endpoint.not_before = max(endpoint.not_before, now + retry_after)
            self._cond.notify_all()


class Dispatcher:
    """Callable that answers one chat request: budget, endpoint slot, rate limits, attempt, retries."""

    def __init__(self, pool: EndpointPool, sampling: Sampling, policy: RetryPolicy, ledger: Ledger,
                 rpm: Pacer | None = None, tpm: Pacer | None = None, ask_fn: Callable = ask,
                 log: Callable[[str], None] | None = None):
        self.pool, self.sampling, self.policy, self.ledger = pool, sampling, policy, ledger
        self.rpm, self.tpm = rpm or Pacer(None), tpm or Pacer(None)
        self.ask_fn, self.log = ask_fn, log
        self.cancel = threading.Event()

    def __call__(self, messages: list[dict]) -> dict:
        """Return the answer record for `messages`; TeacherError once the retry budget is spent."""
        try:
            return self._answer(messages)
        except TeacherError:
            self.cancel.set()  # before another worker starts a request the run will not use
            raise

    def _answer(self, messages: list[dict]) -> dict:
        prompt_estimate = estimate_prompt_tokens(messages)
        failures: list[str] = []
        for attempt in range(self.policy.max_retries + 1):
            try:
                return self._attempt(messages, prompt_estimate)
            except TransientError as exc:
                failures.append(f"{exc} from {exc.endpoint}")
                self._check_retry_after(exc)
                if attempt == self.policy.max_retries:
                    break
                retries = self.ledger.count_retry()
                delay = self.policy.delay(attempt, exc.retry_after)
                self._announce(retries, f"{exc} from {exc.endpoint}; retry {attempt + 1} of "
                               f"{self.policy.max_retries} in {delay:.1f}s")
                self._sleep(delay)
        raise TeacherError(self._gave_up(failures))

    def _attempt(self, messages: list[dict], prompt_estimate: int) -> dict:
        """Return the record of one attempt, holding budget, an endpoint slot and rate-limit slots for it."""
        held = self.ledger.reserve(prompt_estimate, self.sampling.max_tokens, self.cancel)
        usage = None
        try:
            endpoint = self.pool.acquire(self.cancel)
            failed, retry_after = False, None
            booked_tokens = prompt_estimate + self.sampling.max_tokens
            try:
                self._sleep(max(self.rpm.reserve(1), self.tpm.reserve(booked_tokens)))
                self.ledger.count_request(endpoint.label)
                record = self.ask_fn(endpoint.client, messages, self.sampling)
                usage = record["usage"]
                used = (usage.get("prompt_tokens") or prompt_estimate) + (usage.get("completion_tokens") or 0)
                self.tpm.adjust(used - booked_tokens)
                return record
            except TransientError as exc:
                failed, retry_after = True, exc.retry_after
                exc.endpoint = endpoint.label
                self.ledger.count_error(exc.kind, endpoint.label)
                self.tpm.adjust(-booked_tokens)  # a failed attempt used (close to) nothing
                raise
            finally:
                self.pool.release(endpoint, failed=failed, retry_after=retry_after)
        finally:
            self.ledger.settle(held, usage)

    def _announce(self, retries: int, text: str) -> None:
        if self.log is not None and retries <= RETRIES_LOGGED:
            more = "; further retries are only counted (metrics: ledger.retries)" if retries == RETRIES_LOGGED else ""
            self.log(f"teacher: {text}{more}")

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.cancel.wait(seconds):
            raise Cancelled()

    def _check_retry_after(self, exc: TransientError) -> None:
        """Stop the run when the server asks for a wait longer than we are willing to give a retry."""
        if exc.retry_after is not None and exc.retry_after > self.policy.backoff_max_s:
            raise TeacherError(
                f"{exc.endpoint} asks to wait {exc.retry_after:.0f}s before retrying (Retry-After), longer than "
                f"teacher.backoff_max_s {self.policy.backoff_max_s:g}: its quota may be spent; rerun later, "
                "or raise teacher.backoff_max_s to wait it out"
            )

    def _gave_up(self, failures: list[str]) -> str:
        counts: dict[str, int] = {}
        for failure in failures:
            counts[failure] = counts.get(failure, 0) + 1
        what = "; ".join(f"{text} (x{n})" if n > 1 else text for text, n in counts.items())
        return (f"no answer after 1 try + {self.policy.max_retries} retries (teacher.max_retries): {what}. "
                "Check that the endpoint is up and healthy (its logs); if it is only slow or busy, raise "
                "teacher.timeout_s, teacher.max_retries or teacher.backoff_max_s, or lower generate.concurrency")


def concurrency_note(concurrency: int, endpoints: int, per_endpoint: int) -> str | None:
    """Return a note when `concurrency` (requests in flight over all endpoints) does not match the slots.

    Above the slots the extra requests wait; below them, endpoints sit idle (two embedded servers at
    concurrency 1 answer at one server's speed). None when they match.
    """
    slots = endpoints * per_endpoint
    where = f"{endpoints} endpoint(s) x teacher.max_concurrency_per_endpoint {per_endpoint} = {slots} slots"
    if concurrency > slots:
        return f"note: generate.concurrency {concurrency} > {where}: at most {slots} in flight"
    if concurrency < slots:
        return (f"note: generate.concurrency {concurrency} < {where}: {slots - concurrency} slot(s) sit idle; "
                f"set generate.concurrency: {slots} to use them")
    return None


def endpoint_label(url: str) -> str:
    """Return a URL fit for logs and metrics: scheme, host, port and path, no credentials or query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def build_dispatcher(urls: list[str], teacher, sampling: Sampling, ledger: Ledger,
                     labels: list[str] | None = None, log: Callable[[str], None] | None = None) -> Dispatcher:
    """Return a Dispatcher over `urls` configured from the validated `teacher` params section."""
    policy = RetryPolicy(teacher.max_retries, teacher.backoff_base_s, teacher.backoff_max_s)
    labels = labels or [endpoint_label(url) for url in urls]
    endpoints = [
        Endpoint(label, make_client(url, teacher.api_key_env, teacher.timeout_s), teacher.max_concurrency_per_endpoint)
        for url, label in zip(urls, labels, strict=True)
    ]
    return Dispatcher(EndpointPool(endpoints, policy), sampling, policy, ledger,
                      rpm=Pacer(teacher.rpm), tpm=Pacer(teacher.tpm), log=log)
