"""Teacher ledger: what a generate run sent, what failed and why, what it cost; the budget guard; progress."""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass

from potstill.errors import BudgetExceeded
from potstill.teacher.prompts import estimate_prompt_tokens

# 429 rate limited; 5xx server error; timeout (teacher.timeout_s, or 408); connection refused or
# dropped; malformed (not JSON, not a chat completion, or a body cut short); other (409).
ERROR_KINDS = ("429", "5xx", "timeout", "connection", "malformed", "other")



class Cancelled(Exception):
    """The run is stopping (another request failed or the user interrupted); this request gives up quietly."""


@dataclass(frozen=True)
class Price:
    """Dollars per 1,000 prompt tokens and per 1,000 completion tokens."""

    prompt: float
    completion: float

    @classmethod
    def from_param(cls, value) -> Price | None:
        """Return the Price for teacher.price_per_1k_tokens (a number, or {prompt, completion}), None if unset."""
        if value is None:
            return None
        if isinstance(value, int | float):
            return cls(float(value), float(value))
        return cls(float(value.prompt), float(value.completion))

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Return the dollars that many tokens cost."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1000.0


@dataclass
class Reservation:
    """Worst-case tokens and dollars held for one attempt until its usage is known."""

    prompt_tokens: int  # the chars/4 estimate, scaled up by what answers so far reported
    completion_tokens: int
    cost: float
    prompt_estimate: int  # the plain chars/4 estimate


class Ledger:
    """Counts what a run sends and spends (thread-safe); refuses an attempt that could cross the budget.

    Spend is this run's: cached answers cost nothing. Failed attempts are counted as requests
    and errors but charged no tokens (endpoints do not report usage for them).
    """

    def __init__(self, price: Price | None = None, max_cost: float | None = None,
                 max_tokens_total: int | None = None, clock=time.monotonic):
        self.price, self.max_cost, self.max_tokens_total = price, max_cost, max_tokens_total
        self._clock = clock
        self._cond = threading.Condition()
        self._started = clock()
        self._begun = False
        self.requests = self.retries = self.answers = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.usage_missing = 0
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.endpoints: dict[str, dict] = {}
        self._held_tokens, self._held_cost = 0, 0.0
        self._estimated_prompt = self._reported_prompt = 0  # over answers that reported usage

    def begin(self) -> None:
        """Start the wall clock when the first request is about to go; later calls keep it running.

        A run that asks in phases (prompt synthesis, then answers) then reports one wall time.
        """
        if not self._begun:
            self._started, self._begun = self._clock(), True

    def elapsed(self) -> float:
        """Return seconds since begin()."""
        return self._clock() - self._started

    def cost(self) -> float | None:
        """Return the dollars spent so far, None without a price."""
        return self.price.cost(self.prompt_tokens, self.completion_tokens) if self.price else None

    # -- before sending --------------------------------------------------------------------
    def estimate(self, messages_to_send: list[list[dict]], max_tokens: int) -> dict:
        """Return an upper estimate of what sending these costs: prompt ~ chars/4, completion <= max_tokens."""
        prompt = sum(estimate_prompt_tokens(messages) for messages in messages_to_send)
        completion = len(messages_to_send) * max_tokens
        cost = self.price.cost(prompt, completion) if self.price else None
        return {"requests": len(messages_to_send), "prompt_tokens": prompt, "completion_tokens_max": completion,
                "cost_max": None if cost is None else round(cost, 6)}

    def describe_estimate(self, estimate: dict, prompts: int, cached: int, what: str = "prompts") -> str:
        """Return the line printed before sending: what is cached, what will be asked, what it may cost."""
        if not estimate["requests"]:
            return f"teacher: {prompts} {what}, all answered in the cache: nothing to send"
        total = estimate["prompt_tokens"] + estimate["completion_tokens_max"]
        line = (f"teacher: {prompts} {what}, {cached} cached, {estimate['requests']} requests to send: "
                f"~{estimate['prompt_tokens']:,} prompt tokens (chars/4) + at most "
                f"{estimate['completion_tokens_max']:,} completion tokens")
        if estimate["cost_max"] is not None:
            line += f", at most ${estimate['cost_max']:.4f}"
        if self.max_tokens_total is not None and total > self.max_tokens_total:
            line += (f"\nteacher: this may cross teacher.max_tokens_total {self.max_tokens_total:,}: the run stops "
                     "before it does, keeping what is answered")
        if self.max_cost is not None and (estimate["cost_max"] or 0) > self.max_cost:
            line += (f"\nteacher: this may cross teacher.max_cost ${self.max_cost}: the run stops before it does, "
                     "keeping what is answered")
        return line

    def reserve(self, prompt_tokens: int, max_tokens: int, cancel: threading.Event | None = None) -> Reservation:
        """Return a hold on the worst case of one attempt; raise BudgetExceeded if it could cross the budget.

        While other attempts hold budget it waits for them to settle (they usually use less than
        their worst case) and only gives up when nothing else is outstanding.
        """
        with self._cond:
            # chars/4 undercounts some text (code, other scripts): scale by what the endpoint reported
            scale = max(1.0, self._reported_prompt / self._estimated_prompt) if self._estimated_prompt else 1.0
            prompt = math.ceil(prompt_tokens * scale)
            cost = self.price.cost(prompt, max_tokens) if self.price else 0.0
            need = Reservation(prompt, max_tokens, cost, prompt_tokens)
            while self._would_cross(need):
                if not self._held_tokens:
                    raise BudgetExceeded(self._budget_message(need))
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                self._cond.wait(timeout=0.2)
            self._held_tokens += need.prompt_tokens + need.completion_tokens
            self._held_cost += need.cost
        return need

    def _would_cross(self, need: Reservation) -> bool:
        tokens = self.prompt_tokens + self.completion_tokens + self._held_tokens
        if self.max_tokens_total is not None and tokens + need.prompt_tokens + need.completion_tokens > \
                self.max_tokens_total:
            return True
        return self.max_cost is not None and (self.cost() or 0.0) + self._held_cost + need.cost > self.max_cost

    def _budget_message(self, need: Reservation) -> str:
        spent = f"{self.prompt_tokens + self.completion_tokens:,} tokens"
        if self.price:
            spent += f" (${self.cost():.4f})"
        worst = f"{need.prompt_tokens + need.completion_tokens:,} tokens"
        if self.price:
            worst += f" (${need.cost:.4f})"
        caps = []
        if self.max_tokens_total is not None:
            caps.append(f"teacher.max_tokens_total {self.max_tokens_total:,}")
        if self.max_cost is not None:
            caps.append(f"teacher.max_cost ${self.max_cost}")
        return (f"budget reached: this run has spent {spent} on {self.answers} answers and the next request could "
                f"take up to {worst}, which would cross {' / '.join(caps)}. Raise the budget, or lower "
                "generate.n_examples or teacher.max_tokens")

    # -- after each attempt ----------------------------------------------------------------
    def settle(self, held: Reservation, usage: dict | None) -> None:
        """Release a hold; on an answer, charge its reported usage (the held worst case where it reports none)."""
        with self._cond:
            self._held_tokens -= held.prompt_tokens + held.completion_tokens
            self._held_cost -= held.cost
            if usage is not None:
                self.answers += 1
                prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
                if prompt is None or completion is None:
                    self.usage_missing += 1
                if prompt is not None:
                    self._estimated_prompt += held.prompt_estimate
                    self._reported_prompt += prompt
                self.prompt_tokens += held.prompt_tokens if prompt is None else prompt
                self.completion_tokens += held.completion_tokens if completion is None else completion
            self._cond.notify_all()

    def count_request(self, endpoint: str) -> None:
        """Count one attempt sent to `endpoint`."""
        with self._cond:
            self.requests += 1
            self.endpoints.setdefault(endpoint, {"requests": 0, "errors": 0})["requests"] += 1

    def count_error(self, kind: str, endpoint: str) -> None:
        """Count one failed attempt of `kind` (one of ERROR_KINDS) at `endpoint`."""
        with self._cond:
            self.errors[kind] += 1
            self.endpoints.setdefault(endpoint, {"requests": 0, "errors": 0})["errors"] += 1

    def count_retry(self) -> int:
        """Count one retry (an attempt after a failed one); return the run's retries so far."""
        with self._cond:
            self.retries += 1
            return self.retries

    def summary(self) -> dict:
        """Return the ledger as plain JSON for metrics/generate.json."""
        with self._cond:
            wall = self.elapsed()
            cost = self.cost()
            return {
                "requests": self.requests, "answers": self.answers, "retries": self.retries,
                "errors": dict(self.errors), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "usage_missing": self.usage_missing,
                "wall_s": round(wall, 2),
                "completion_tokens_per_s": round(self.completion_tokens / wall, 2) if wall > 0 else 0.0,
                "cost": None if cost is None else round(cost, 6),
                "endpoints": {name: dict(counts) for name, counts in self.endpoints.items()},
            }


def _clock_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Shows how far the requests are: a tqdm bar on a terminal, else a log line every ~10% or 30 s.

    Rates and the ETA count this batch's requests only, from its own start: a ledger shared with an
    earlier batch (prompt synthesis before the answers) does not dilute them.
    """

    def __init__(self, total: int, ledger: Ledger, enabled: bool = True, stream=None, every_s: float = 30.0,
                 clock=time.monotonic):
        self.total, self.ledger, self.done = total, ledger, 0
        self.stream = stream or sys.stderr
        self.every_s, self.clock = every_s, clock
        self.enabled = enabled and total > 0
        self.bar = None
        self._last_time, self._last_step = clock(), 0
        self._started, self._tokens_before = clock(), ledger.completion_tokens
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="teacher requests", unit="req", file=self.stream)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.done and self.done != self._last_step:
            self._log()

    def update(self, n: int = 1) -> None:
        """Count `n` more answers and show them (bar) or log a line when ~10% or 30 s have passed."""
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(retries=self.ledger.retries, refresh=False)
            return
        step = max(1, self.total // 10)
        if self.done // step > self._last_step // step or self.clock() - self._last_time >= self.every_s:
            self._log()

    def line(self) -> str:
        """Return the plain progress line: answered, rate, tokens/s, retries, errors, ETA."""
        wall = max(self.clock() - self._started, 1e-9)
        rate = self.done / wall
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        errors = sum(self.ledger.errors.values())
        return (f"teacher: {self.done}/{self.total} answered ({100 * self.done / self.total:.0f}%), "
                f"{rate:.2f} req/s, {(self.ledger.completion_tokens - self._tokens_before) / wall:.1f} "
                f"completion tok/s, "
                f"{self.ledger.retries} retries, {errors} errors, "
                f"ETA {_clock_text(eta) if eta != float('inf') else '?'}")

    def _log(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last_time, self._last_step = self.clock(), self.done
