"""Generate: ask the teacher to answer every prompt; keep its responses and token logprobs.

    python stages/generate.py --params params.yaml --prompts data/prompts.jsonl --out data/generated

With `teacher.base_url: null` the teacher is served on a free loopback port for the duration of
the stage: the embedded GGUF (or a `.gguf` teacher.weights) by llama-cpp-python, a HF checkpoint
(folder or hf: id) by `transformers serve --continuous-batching`, which returns answers only.
Answers are cached by content in the state directory (`$POTSTILL_STATE_DIR`), so reruns and
experiments never pay twice. Requests are spread over the endpoints (`teacher.base_url` may list
several), retried with backoff, paced to `teacher.rpm` / `teacher.tpm` and stopped before
`teacher.max_cost` / `teacher.max_tokens_total` is crossed; the ledger (requests, retries, errors
by kind, tokens, tokens/s, cost) goes to metrics/generate.json.
With `generate.reasoning` the teacher is asked to think step by step and the trace stays in the
answer; with `generate.synthesize: N` it first writes up to N new prompts (synth_prompts.jsonl),
which are answered with the others. A lock file in the state directory keeps a second run that
shares it from starting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import typer

from potstill.cli import friendly_errors
from potstill.errors import TeacherError
from potstill.io import state_dir, write_json, write_jsonl
from potstill.params import load_params
from potstill.teacher.cache import ResponseCache
from potstill.teacher.client import Sampling
from potstill.teacher.dispatch import build_dispatcher, concurrency_note
from potstill.teacher.endpoints import TRANSFORMERS_SERVE, served_weights, start_endpoints
from potstill.teacher.generate import generate, training_rows
from potstill.teacher.ledger import Ledger, Price
from potstill.teacher.locks import exclusive_lock
from potstill.teacher.prompts import PromptLimits, balanced_subset, read_prompts
from potstill.teacher.synth import describe, synthesize_prompts


def log(line: str) -> None:
    """Print a progress or warning line on stderr (stdout keeps the one-line summary)."""
    print(line, file=sys.stderr, flush=True)


def report_bad_prompts(bad: list[dict], prompts_path: Path) -> None:
    """Print each skipped prompt line (the first 20) so that nothing is dropped silently."""
    for item in bad[:20]:
        log(f"warning: skipped {prompts_path}:{item['line']}: {item['reason']}")
    if len(bad) > 20:
        log(f"warning: ... and {len(bad) - 20} more; all are listed in the metrics")


def run_generate(params_path: Path, prompts_path: Path, out_dir: Path, progress: bool = True) -> dict:
    """Answer the prompts with the teacher; write responses, logprobs and a manifest; return stats."""
    params = load_params(params_path, "teacher", "generate")
    teacher, gen = params["teacher"], params["generate"]
    sampling = Sampling(
        model=teacher.model, temperature=teacher.temperature, top_p=teacher.top_p,
        max_tokens=teacher.max_tokens, logprobs=teacher.logprobs, seed=gen.seed,
    )
    limits = PromptLimits(
        max_tokens=teacher.max_tokens, max_chars=teacher.max_prompt_chars,
        context_tokens=teacher.context_tokens, default_system=gen.system_prompt,
        instruction=gen.reasoning_instruction if gen.reasoning else None,
    )
    shipped, bad = read_prompts(prompts_path, on_bad=gen.on_bad_prompt, limits=limits)
    report_bad_prompts(bad, prompts_path)
    prompts = balanced_subset(shipped, gen.n_examples) if gen.n_examples else shipped
    cache = ResponseCache(state_dir() / "teacher-cache")
    ledger = Ledger(Price.from_param(teacher.price_per_1k_tokens), teacher.max_cost, teacher.max_tokens_total)
    synthesized, synthesis = [], None

    with contextlib.ExitStack() as stack:
        # Two runs on one cache would each ask for what the other is asking: the second one stops.
        stack.enter_context(exclusive_lock(state_dir() / "generate.lock", "generate"))
        urls, labels, endpoint = start_endpoints(teacher, stack, servers=gen.teacher_servers)
        sampling = dataclasses.replace(sampling, weights=served_weights(endpoint))
        if endpoint["kind"] == TRANSFORMERS_SERVE and sampling.logprobs:
            log(f"note: {TRANSFORMERS_SERVE} returns no log-probs: answers only (teacher.logprobs ignored)")
            sampling = dataclasses.replace(sampling, logprobs=0)
        dispatcher = build_dispatcher(urls, teacher, sampling, ledger, labels, log=log)
        note = concurrency_note(gen.concurrency, len(urls), teacher.max_concurrency_per_endpoint)
        if note:
            log(note)
        try:
            if gen.synthesize:
                # Prompts, not token distributions: no logprobs (llama.cpp is ~4.5x slower with them).
                synthesis_sampling = dataclasses.replace(sampling, logprobs=0)

                def answer(requests: list[dict]) -> list[dict]:
                    results, _ = generate(requests, dispatcher, synthesis_sampling, cache, concurrency=gen.concurrency,
                                          progress=progress, ledger=ledger, cancel=dispatcher.cancel,
                                          what="synthesis requests")
                    return [item["record"] for item in results]

                synthesized, synthesis = synthesize_prompts(shipped, gen, answer, limits)
                log(describe(synthesis))
            results, stats = generate(
                prompts + synthesized, dispatcher, sampling, cache, concurrency=gen.concurrency, progress=progress,
                default_system=gen.system_prompt, ledger=ledger, cancel=dispatcher.cancel,
                instruction=limits.instruction,
            )
        except TeacherError:
            log(f"teacher ledger of the stopped run: {ledger.summary()}")
            raise

    responses, logprobs = training_rows(results, sampling)

    write_jsonl(out_dir / "responses.jsonl", responses)
    write_jsonl(out_dir / "logprobs.jsonl", logprobs)
    # Keys for the optional features only when they are on: with them off the outputs stay
    # byte-identical, so turning nothing on reruns nothing downstream.
    extras = {}
    if gen.reasoning:
        extras["reasoning_instruction"] = gen.reasoning_instruction
    if gen.synthesize:
        write_jsonl(out_dir / "synth_prompts.jsonl", synthesized)
        extras["synthesized_prompts"] = len(synthesized)
        stats["synthesis"] = synthesis
    write_json(out_dir / "manifest.json", {
        "teacher_model": sampling.model, "endpoint": endpoint, "logprobs_k": sampling.logprobs,
        "rows": len(responses), "rows_with_logprobs": len(logprobs), "prompts_file": str(prompts_path),
        **extras,
    })
    stats["rows_with_logprobs"] = len(logprobs)
    stats["bad_prompts"] = {"count": len(bad), "lines": bad}
    return stats


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    prompts: Annotated[Path, typer.Option(help="prompts JSONL")] = Path("data/prompts.jsonl"),
    out: Annotated[Path, typer.Option(help="output folder")] = Path("data/generated"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/generate.json"),
) -> None:
    """Generate teacher responses (and logprobs) for the prompts."""
    stats = run_generate(params, prompts, out)
    write_json(metrics, stats)
    ledger = stats["ledger"]
    errors = ", ".join(f"{kind}: {n}" for kind, n in ledger["errors"].items() if n) or "none"
    typer.echo(
        f"generate: {stats['prompts']} prompts, {stats['cached']} cached, {stats['requested']} asked in "
        f"{ledger['requests']} requests ({ledger['retries']} retries; errors {errors}), "
        f"{ledger['completion_tokens_per_s']} completion tok/s, cost {ledger['cost']}, "
        f"{stats['bad_prompts']['count']} bad prompt lines skipped"
        + (f", {stats['synthesis']['accepted']} prompts synthesized" if "synthesis" in stats else "")
    )


if __name__ == "__main__":
    app()
