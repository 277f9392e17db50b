"""Generate: ask the teacher to answer every prompt; keep its responses and token logprobs.

    python stages/generate.py --params params.yaml --prompts data/prompts.jsonl --out data/generated

With `teacher.base_url: null` the embedded GGUF is served by llama-cpp-python on a free loopback
port for the duration of the stage. Answers are cached by content in the state directory
(`$POTSTILL_STATE_DIR`), so reruns and experiments never pay twice.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from potstill.cli import friendly_errors
from potstill.io import state_dir, write_json, write_jsonl
from potstill.models import find_teacher_gguf
from potstill.params import load_params
from potstill.server import llama_cpp_server
from potstill.teacher import ResponseCache, Sampling, ask, generate, load_prompts, make_client

# llama-cpp-python computes logprobs from the raw logits whatever the sampling temperature
# (tests/test_teacher_server.py checks this against transformers).
EMBEDDED_LOGPROB_TEMPERATURE = 1.0


def run_generate(params_path: Path, prompts_path: Path, out_dir: Path, progress: bool = True) -> dict:
    """Answer the prompts with the teacher; write responses, logprobs and a manifest; return stats."""
    params = load_params(params_path, "teacher", "generate")
    teacher, gen = params["teacher"], params["generate"]
    prompts = load_prompts(prompts_path, limit=gen.n_examples)
    sampling = Sampling(
        model=teacher.model, temperature=teacher.temperature, top_p=teacher.top_p,
        max_tokens=teacher.max_tokens, logprobs=teacher.logprobs, seed=gen.seed,
    )
    cache = ResponseCache(state_dir() / "teacher-cache")

    with contextlib.ExitStack() as stack:
        if teacher.base_url is None:
            gguf, version = find_teacher_gguf(teacher.gguf_package)
            base_url = stack.enter_context(llama_cpp_server(gguf, teacher.model))
            endpoint = {"kind": "embedded-llama.cpp", "package": teacher.gguf_package,
                        "package_version": version, "logprob_temperature": EMBEDDED_LOGPROB_TEMPERATURE}
        else:
            base_url = teacher.base_url
            # OpenAI and vLLM (default logprobs mode) report logprobs of the unscaled model.
            endpoint = {"kind": "openai-compatible", "logprob_temperature": 1.0}
        client = make_client(base_url, teacher.api_key_env, teacher.timeout_s)
        results, stats = generate(
            prompts, lambda messages: ask(client, messages, sampling), sampling, cache,
            concurrency=gen.concurrency, progress=progress, default_system=gen.system_prompt,
        )

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

    write_jsonl(out_dir / "responses.jsonl", responses)
    write_jsonl(out_dir / "logprobs.jsonl", logprobs)
    write_json(out_dir / "manifest.json", {
        "teacher_model": sampling.model, "endpoint": endpoint, "logprobs_k": sampling.logprobs,
        "rows": len(responses), "rows_with_logprobs": len(logprobs), "prompts_file": str(prompts_path),
    })
    stats["rows_with_logprobs"] = len(logprobs)
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
    typer.echo(f"generate: {stats}")


if __name__ == "__main__":
    app()
