"""The real embedded teacher: llama.cpp server start/stop, and the temperature of its logprobs."""

import socket
import urllib.parse

import pytest
import torch

from potstill.chat import tokenize_chat
from potstill.models import load_gguf_teacher
from potstill.teacher.client import Sampling, ask, make_client
from potstill.teacher.server import llama_cpp_server

MESSAGES = [{"role": "user", "content": "Name a fruit that is yellow."}]


def port_open(base_url: str) -> bool:
    parts = urllib.parse.urlparse(base_url)
    with socket.socket() as sock:
        return sock.connect_ex((parts.hostname, parts.port)) == 0


@pytest.fixture(scope="module")
def served(teacher_gguf):
    """One short answer (with top-5 logprobs) from the real server, sampled at T=0.7."""
    sampling = Sampling(model="teacher", temperature=0.7, top_p=1.0, max_tokens=12, logprobs=5, seed=3)
    with llama_cpp_server(teacher_gguf, "teacher") as base_url:
        client = make_client(base_url, None, timeout_s=120)
        record = ask(client, MESSAGES, sampling)
    return base_url, record


def test_server_answers_then_stops(served):
    base_url, record = served
    assert record["content"].strip()
    assert record["usage"]["completion_tokens"] >= 1
    assert len(record["logprobs"]) == record["usage"]["completion_tokens"]
    assert all(len(item["top"]) == 5 for item in record["logprobs"])
    assert not port_open(base_url)


def test_server_is_stopped_when_the_stage_fails(teacher_gguf):
    with pytest.raises(RuntimeError, match="boom"), llama_cpp_server(teacher_gguf, "teacher") as base_url:
        assert port_open(base_url)
        raise RuntimeError("boom")
    assert not port_open(base_url)


STAGE_WITH_A_SERVER = """
import sys, time
from pathlib import Path
from potstill.cli import friendly_errors
from potstill.teacher.server import llama_cpp_server

@friendly_errors
def main():
    with llama_cpp_server(Path(sys.argv[1]), "teacher") as base_url:
        print(base_url, flush=True)
        time.sleep(120)

main()
"""


def test_a_stage_stopped_with_sigterm_stops_its_teacher_server(teacher_gguf, tmp_path):
    """CI cancelling a job sends SIGTERM: the stage must take its server down, as on Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "stage.py"
    script.write_text(STAGE_WITH_A_SERVER)
    proc = subprocess.Popen([sys.executable, str(script), str(teacher_gguf)], stdout=subprocess.PIPE, text=True)
    base_url = proc.stdout.readline().strip()
    assert port_open(base_url)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 10
    while port_open(base_url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not port_open(base_url)


def test_llama_cpp_logprobs_are_at_temperature_one(served, teacher_gguf):
    """Sampling at T=0.7, llama.cpp still reports log-softmax of the raw logits (T=1).

    generate records this as the 'logprob temperature' in its manifest; train re-tempers from it.
    """
    _, record = served
    model, tokenizer = load_gguf_teacher(teacher_gguf)
    messages = MESSAGES + [{"role": "assistant", "content": record["content"]}]
    encoded = tokenize_chat(tokenizer, messages, 512)
    start = encoded["response_start"]
    reported = torch.tensor([item["logprob"] for item in record["logprobs"]])
    ids = torch.tensor([encoded["input_ids"]])
    with torch.no_grad():
        logits = model(ids).logits[0, start - 1:start - 1 + len(reported)]
    targets = torch.tensor(encoded["input_ids"][start:start + len(reported)])
    at = {t: torch.log_softmax(logits / t, -1).gather(-1, targets[:, None]).squeeze(-1) for t in (1.0, 0.7)}
    error_t1 = (at[1.0] - reported).abs().mean()
    error_t07 = (at[0.7] - reported).abs().mean()
    assert error_t1 < 0.25, (error_t1, reported, at[1.0])
    assert error_t1 < error_t07


def test_generate_serves_a_checkpoint_teacher_with_transformers_serve_under_its_own_name(tiny_model_dir, tmp_path):
    """teacher.weights a HF folder and teacher.base_url null: the generate stage serves it with `transformers serve
    --continuous-batching` (3 requests in flight); requests, cache and manifest carry teacher.model (no machine
    path), log-probs are not asked for, and the server is gone when the stage ends."""
    import json
    import subprocess

    import yaml

    from potstill.io import read_jsonl
    from stages.generate import run_generate
    from tests.conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["teacher"].update(base_url=None, weights=str(tiny_model_dir), revision=None, model="acme/teacher-chat",
                             temperature=0.0, max_tokens=6, max_concurrency_per_endpoint=3, timeout_s=120)
    params["generate"].update(n_examples=0, concurrency=3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prompts = [{"id": f"p-{i}", "prompt": f"Name {i + 1} colours.", "domain": "general"} for i in range(3)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in prompts))

    stats = run_generate(tmp_path / "params.yaml", tmp_path / "prompts.jsonl", tmp_path / "out", progress=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["endpoint"]["kind"] == "transformers-serve" and manifest["teacher_model"] == "acme/teacher-chat"
    assert manifest["endpoint"]["weights"] == str(tiny_model_dir) and "config.json" in manifest["endpoint"]["digests"]
    assert manifest["logprobs_k"] == 0 and manifest["rows_with_logprobs"] == 0
    responses = [row for _, row in read_jsonl(tmp_path / "out" / "responses.jsonl")]
    assert [row["id"] for row in responses] == ["p-0", "p-1", "p-2"]
    assert stats["requested"] == 3 and stats["ledger"]["completion_tokens"] == stats["completion_tokens"] > 0
    # the server went with the stage: no `transformers serve` process is left behind
    assert subprocess.run(["pgrep", "-f", "transformers serve"], capture_output=True).returncode == 1


def test_generate_spreads_over_two_embedded_servers_with_the_answers_one_gives(tmp_path, monkeypatch):
    """generate.teacher_servers 2: two llama.cpp processes answer side by side; each gets requests,
    the answers are the ones a single server gives (seeded per request), and the teacher cache is
    shared across server counts, so changing the count asks the teacher nothing again."""
    import json

    import yaml

    from potstill.io import read_jsonl
    from stages.generate import run_generate
    from tests.conftest import ROOT

    prompts = [{"id": f"p-{i}", "prompt": f"Name {i + 2} animals that live in the sea.", "domain": "general"}
               for i in range(4)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in prompts))

    def run(servers: int, state: str) -> tuple[dict, list[dict]]:
        monkeypatch.setenv("POTSTILL_STATE_DIR", str(tmp_path / state))
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["teacher"].update(base_url=None, max_tokens=12, temperature=0.7)
        params["generate"].update(n_examples=0, synthesize=0, concurrency=servers, teacher_servers=servers)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        out = tmp_path / f"out-{servers}-{state}"
        stats = run_generate(tmp_path / "params.yaml", tmp_path / "prompts.jsonl", out, progress=False)
        return stats, [row for _, row in read_jsonl(out / "responses.jsonl")]

    two, answers_two = run(2, "state-a")
    assert two["requested"] == 4
    served = two["ledger"]["endpoints"]
    assert set(served) == {"embedded-1", "embedded-2"} and all(e["requests"] >= 1 for e in served.values()), served
    one, answers_one = run(1, "state-b")
    assert set(one["ledger"]["endpoints"]) == {"embedded"}
    assert [r["messages"][-1] for r in answers_two] == [r["messages"][-1] for r in answers_one]
    again, answers_again = run(1, "state-a")
    assert again["requested"] == 0 and answers_again == answers_two
