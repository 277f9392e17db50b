"""Ask the teacher for soft labels: one cached, ledgered, paced request per text, as generate does.

The requests go through the chat pipeline's teacher machinery (endpoints, dispatcher, request
cache, ledger, progress), so an API teacher is paced and budgeted the same way and an
interrupted run asks again only for what is missing.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from potstill.classify.labels import LabelTokens, argmax, labelling_messages, soft_labels
from potstill.errors import InputError
from potstill.io import state_dir
from potstill.models import find_teacher_gguf
from potstill.teacher.cache import ResponseCache
from potstill.teacher.client import Sampling
from potstill.teacher.dispatch import build_dispatcher
from potstill.teacher.endpoints import TRANSFORMERS_SERVE, served_teacher, start_endpoints
from potstill.teacher.generate import generate
from potstill.teacher.ledger import Ledger, Price
from potstill.teacher.locks import exclusive_lock


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def teacher_tokenizer(teacher, classify):
    """Return the tokenizer the label tokens are checked with: classify.teacher_tokenizer, else the served GGUF's."""
    from transformers import AutoTokenizer

    if classify.teacher_tokenizer:
        try:
            return AutoTokenizer.from_pretrained(classify.teacher_tokenizer)
        except OSError as exc:
            raise InputError(f"classify.teacher_tokenizer: cannot load a tokenizer from "
                             f"{classify.teacher_tokenizer!r} ({exc}); give a local folder with tokenizer files"
                             ) from None
    if teacher.base_url is not None:
        raise InputError("classify.teacher_tokenizer is null but teacher.base_url points at your own endpoint: "
                         "the label tokens must be checked with that teacher's tokenizer; set "
                         "classify.teacher_tokenizer to a local folder holding it")
    source = served_teacher(teacher)
    if source.kind in ("folder", "hub"):  # served by transformers serve (base_url is null here)
        raise InputError(f"classify labels from the teacher's top_logprobs, but teacher.weights {teacher.weights!r} "
                         f"with teacher.base_url null is served by {TRANSFORMERS_SERVE}, which returns no "
                         "log-probs: serve it with vLLM and set teacher.base_url, or give a .gguf teacher.weights")
    if source.kind == "gguf":
        gguf = Path(source.where)
    else:
        gguf, _ = find_teacher_gguf(teacher.gguf_package)
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def labelling_sampling(teacher, classify) -> Sampling:
    """Return the request settings: one answer token, greedy, with the top-k alternatives of it."""
    return Sampling(model=teacher.model, temperature=0.0, top_p=1.0, max_tokens=1,
                    logprobs=classify.top_logprobs, seed=classify.seed)


def label_rows(rows: list[dict], teacher, classify, tokens: LabelTokens, progress: bool = True,
               what: str = "texts") -> tuple[list[dict], dict]:
    """Return (rows with the teacher's soft labels, stats) for text rows; answers come from the cache where possible."""
    sampling = labelling_sampling(teacher, classify)
    cache = ResponseCache(state_dir() / "teacher-cache")
    ledger = Ledger(Price.from_param(teacher.price_per_1k_tokens), teacher.max_cost, teacher.max_tokens_total)
    with contextlib.ExitStack() as stack:
        stack.enter_context(exclusive_lock(state_dir() / "classify-label.lock", "classify label"))
        urls, labels, endpoint = start_endpoints(teacher, stack, servers=classify.teacher_servers)
        dispatcher = build_dispatcher(urls, teacher, sampling, ledger, labels, log=log)
        concurrency = len(urls) * teacher.max_concurrency_per_endpoint
        results, stats = generate(
            rows, dispatcher, sampling, cache, concurrency=concurrency, progress=progress, ledger=ledger,
            cancel=dispatcher.cancel, what=what,
            messages_for=lambda row: labelling_messages(classify.labels, classify.instruction, row["text"]),
        )
    labelled = []
    for item in results:
        soft = soft_labels(item["record"], tokens)
        probs = soft["probs"]
        labelled.append({
            **item["row"],
            "teacher_probs": [round(p, 6) for p in probs] if probs else None,
            "teacher_label": tokens.names[argmax(probs)] if probs else None,
            "label_mass": round(soft["mass"], 6),
        })
    stats["endpoint"] = endpoint
    return labelled, stats


def time_teacher(rows: list[dict], teacher, classify) -> dict:
    """Return the teacher's items/s: one uncached labelling request per text, sent one after another.

    The cache is bypassed (a fresh seed per run would change the answers; instead nothing is
    read or written), so the figure is the endpoint's, measured now.
    """
    sampling = labelling_sampling(teacher, classify)
    ledger = Ledger()
    with contextlib.ExitStack() as stack:
        urls, labels, _ = start_endpoints(teacher, stack)
        dispatcher = build_dispatcher(urls[:1], teacher, sampling, ledger, labels[:1] if labels else None, log=log)
        dispatcher(labelling_messages(classify.labels, classify.instruction, rows[0]["text"]))  # warm-up
        start = time.perf_counter()
        for row in rows:
            dispatcher(labelling_messages(classify.labels, classify.instruction, row["text"]))
        elapsed = time.perf_counter() - start
    return {"items_per_s": len(rows) / elapsed, "texts": len(rows), "batch_size": 1,
            "how": "one labelling request per text through the teacher's server, sequential"}
