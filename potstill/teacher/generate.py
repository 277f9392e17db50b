"""Answer every prompt through a bounded thread pool, from the cache where possible."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from potstill.errors import TeacherError
from potstill.teacher.cache import ResponseCache, request_key
from potstill.teacher.client import Sampling
from potstill.teacher.ledger import Cancelled, Ledger, Progress
from potstill.teacher.prompts import build_messages


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
    messages_for: Callable[[dict], list[dict]] | None = None,
) -> tuple[list[dict], dict]:
    """Answer every prompt, from the cache where possible; returns (records in prompt order, stats).

    Each answer is cached the moment it arrives, so an interrupted run loses at most the
    requests in flight and a rerun asks only for what is missing. At most `concurrency`
    requests are in flight. On the first error `cancel` is set (the dispatcher's waits watch
    it), queued requests are dropped, and those in flight finish and are cached before the
    error propagates. `instruction` is appended to each system message (see build_messages);
    `what` names the rows in the line printed before sending; `messages_for(row)` replaces
    `build_messages` where a caller builds its own chat (the classifier's few-shot labelling prompt).
    """


    ledger = ledger or Ledger()
    cancel = cancel or threading.Event()
    build = messages_for or (lambda row: build_messages(row, default_system, instruction))
    keyed = [(row, build(row)) for row in prompts]
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


def training_rows(results: list[dict], sampling: Sampling) -> tuple[list[dict], list[dict]]:
    """Return (responses.jsonl rows, logprobs.jsonl rows) from `generate`'s answers, in prompt order."""
    responses, logprobs = [], []
    for item in results:
        row, record = item["row"], item["record"]
        responses.append({
            "id": row["id"],
            "domain": row.get("domain", "general"),
            **({"answer": row["answer"]} if "answer" in row else {}),
            "messages": item["messages"] + [{"role": "assistant", "content": record["content"]}],
            "teacher": {"model": sampling.model, "temperature": sampling.temperature,
                        "top_p": sampling.top_p, "max_tokens": sampling.max_tokens, "seed": sampling.seed},
            "usage": record["usage"],
            "finish_reason": record["finish_reason"],
        })
        if record["logprobs"]:
            logprobs.append({"id": row["id"], "tokens": record["logprobs"]})
    return responses, logprobs
