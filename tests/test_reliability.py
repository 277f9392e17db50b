"""Reliability and security (tracker issue 10): kills mid-stage, secrets, safe loading, load, bad input.

Stages run as real subprocesses where a SIGKILL or the captured output matters, against the fake
OpenAI server of tests/fake_endpoint.py; the rest call the library or the Typer apps in-process.
"""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import shipped
from fake_endpoint import FakeOpenAI, FaultProxy

from potstill.errors import InputError
from potstill.export.quantize import load_quantized
from potstill.models import load_checked
from potstill.params import QUANTIZE_FORMATS
from potstill.tasks import load_tasks
from potstill.teacher.cache import ResponseCache
from potstill.teacher.client import Sampling
from potstill.teacher.dispatch import build_dispatcher
from potstill.teacher.generate import generate
from potstill.teacher.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-potstill-SECRET-1234567890"
SAMPLING = Sampling(model="teacher", temperature=0.7, top_p=0.95, max_tokens=4, logprobs=0, seed=0)


def prompt_rows(n: int, start: int = 0) -> list[dict]:
    """Return n prompt rows {id: p<i>, prompt: question <i>}."""
    return [{"id": f"p{i}", "prompt": f"question {i}"} for i in range(start, start + n)]


def write_prompts(path: Path, rows: list[dict]) -> Path:
    """Return `path` after writing `rows` to it as JSONL."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def stage_params(tmp_path: Path, sections: dict | None = None, **teacher) -> Path:
    """Return a params.yaml for fast stage runs (short answers, quick retries) with overrides applied."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["teacher"].update({"max_tokens": 8, "backoff_base_s": 0.01, "backoff_max_s": 0.2, "timeout_s": 5,
                              **teacher})
    params["generate"].update({"n_examples": 0, "on_bad_prompt": "error", "concurrency": 4})
    for section, values in (sections or {}).items():
        params[section].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def stage_env(tmp_path: Path, **extra: str) -> dict:
    """Return the environment for a stage subprocess: its own state dir, the repo importable, offline."""
    env = {**os.environ, "POTSTILL_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}
    env.pop("POTSTILL_TEST_KEY", None)
    env.update(extra)
    return env


def stage_cmd(script: str, *args) -> list[str]:
    """Return the command line running stages/<script>.py with the project's interpreter."""
    return [sys.executable, str(ROOT / "stages" / f"{script}.py"), *map(str, args)]


def cached_answers(state: Path) -> int:
    """Return how many answers the teacher cache under `state` holds (finished files only)."""
    return sum(1 for _ in (state / "teacher-cache").glob("*/*.json"))


def kill_when_tmp_sibling_appears(cmd: list[str], env: dict, out: Path, delay_s: float = 0.0,
                                  timeout_s: float = 90) -> tuple[bool, int]:
    """Return (saw the `.<out>.tmp-*` sibling, exit code) after SIGKILLing `cmd` `delay_s` after it appears."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, saw_tmp = time.monotonic() + timeout_s, False
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if any(out.parent.glob(f".{out.name}.tmp-*")):
                saw_tmp = True
                time.sleep(delay_s)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return saw_tmp, proc.returncode


# --- 1. crashes --------------------------------------------------------------------------------


def test_generate_killed_midway_reruns_asking_only_the_missing_prompts(tmp_path):
    """Checks a SIGKILLed generate leaves no torn output and its rerun asks only for uncached prompts."""
    rows = prompt_rows(40)
    prompts, out, metrics = write_prompts(tmp_path / "prompts.jsonl", rows), tmp_path / "gen", tmp_path / "m.json"
    env = stage_env(tmp_path)
    with FakeOpenAI(delay_s=0.2, max_handlers=16) as server:
        params = stage_params(tmp_path, base_url=server.base_url, max_concurrency_per_endpoint=4)
        cmd = stage_cmd("generate", "--params", params, "--prompts", prompts, "--out", out, "--metrics", metrics)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while proc.poll() is None and cached_answers(tmp_path / "state") < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        assert not (out / "responses.jsonl").exists() and not metrics.exists()
        while server.in_flight:  # the killed run's last requests still finish (and count) server-side
            time.sleep(0.01)
        cached, asked_before = cached_answers(tmp_path / "state"), sum(server.answered.values())
        assert 8 <= cached < 40

        rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        asked_again = sum(server.answered.values()) - asked_before
    stats = json.loads(metrics.read_text())
    assert stats["cached"] == cached and stats["requested"] == asked_again == 40 - cached
    assert set(server.answered) == {row["prompt"] for row in rows}
    lines = (out / "responses.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]  # every line parses
    assert sorted(ids) == sorted(row["id"] for row in rows) and len(ids) == len(set(ids)) == 40


def test_a_second_generate_on_the_same_state_dir_waits_for_the_first_then_asks_nothing(tmp_path):
    """Checks two generate runs on one state dir: the second waits (naming the lock and the first's PID), then
    takes every answer from the cache the first one filled (what `dvc queue start -j 2` needs)."""
    prompts, env = write_prompts(tmp_path / "prompts.jsonl", prompt_rows(12)), stage_env(tmp_path)
    lock, release = tmp_path / "state" / "generate.lock", threading.Event()

    def held_answer(messages: list[dict]) -> str:
        release.wait(60)  # the first run stays mid-request until the second one is seen waiting
        return "an answer"

    with FakeOpenAI(responder=held_answer) as server:
        params = stage_params(tmp_path, base_url=server.base_url, max_concurrency_per_endpoint=1, timeout_s=90)

        def cmd(name: str) -> list[str]:
            return stage_cmd("generate", "--params", params, "--prompts", prompts, "--out", tmp_path / name,
                             "--metrics", tmp_path / f"{name}.json")

        first = subprocess.Popen(cmd("first"), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        deadline = time.monotonic() + 60
        while not server.arrivals and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the first run holds the lock and is asking
        second_log = tmp_path / "second.stderr"
        with second_log.open("w") as second_stderr:
            second = subprocess.Popen(cmd("second"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=second_stderr, text=True)
            deadline = time.monotonic() + 120
            while "holds this lock" not in second_log.read_text() and second.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.1)  # the second run starts up and reaches the lock
            assert second.poll() is None, second_log.read_text()[-3000:]  # waiting, not failed
            release.set()
            _, first_err = first.communicate(timeout=120)
            second.wait(timeout=120)
        second_err = second_log.read_text()
    assert first.returncode == 0, first_err[-3000:]
    assert second.returncode == 0, second_err[-3000:]
    assert f"{lock}: another generate run (PID {first.pid}) holds this lock" in second_err
    assert sorted(server.answered.values()) == [1] * 12  # the second run asked nothing
    assert len((tmp_path / "second" / "responses.jsonl").read_text().splitlines()) == 12
    third = subprocess.run(cmd("third"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and "all answered in the cache" in third.stderr  # released at exit


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tokenizer, tmp_path_factory) -> Path:
    """Return a LoRA adapter folder (with tokenizer) trained on nothing but randomly initialised."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("adapter") / "adapter"
    model = get_peft_model(load_checked(tiny_model_dir), LoraConfig(r=4, target_modules="all-linear",
                                                                    init_lora_weights=False))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("delay_s", [0.0, 0.04])  # as the folder is made; part-way through the save
def test_merge_killed_while_saving_leaves_no_half_folder_and_reruns(delay_s, tiny_model_dir, adapter_dir, tmp_path):
    """Checks a merge SIGKILLed mid-save leaves models/merged absent or complete, and a rerun loads."""
    out, env = tmp_path / "merged", stage_env(tmp_path)
    cmd = stage_cmd("merge", "--student", tiny_model_dir, "--adapter", adapter_dir, "--out", out)
    saw_tmp, code = kill_when_tmp_sibling_appears(cmd, env, out, delay_s)
    assert saw_tmp or code == 0, f"merge exited {code} before writing anything"
    if out.exists():  # only if the save finished before the kill landed
        load_checked(out)
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert list(tmp_path.glob(".merged.tmp-*")) == []  # the stale sibling was cleaned up
    load_checked(out)


@pytest.mark.parametrize("delay_s", [0.0, 0.04])  # as the folder is made; part-way through the save
def test_quantize_killed_while_saving_leaves_no_half_folder_and_reruns(delay_s, tiny_model_dir, tmp_path):
    """Checks a quantize SIGKILLed mid-save leaves its folder absent or complete, and a rerun loads."""
    out, metrics, env = tmp_path / "quantized", tmp_path / "quantize.json", stage_env(tmp_path)
    params = stage_params(tmp_path)
    cmd = stage_cmd("quantize", "--params", params, "--format", "quanto-int8", "--merged", tiny_model_dir, "--out",
                    out, "--metrics", metrics)
    saw_tmp, code = kill_when_tmp_sibling_appears(cmd, env, out, delay_s)
    assert saw_tmp or code == 0, f"quantize exited {code} before writing anything"
    if out.exists():
        load_quantized(out)
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert list(tmp_path.glob(".quantized.tmp-*")) == []
    load_quantized(out)
    assert json.loads(metrics.read_text())["reload_drift"] <= 1e-4


# --- 2. secrets --------------------------------------------------------------------------------


def test_api_key_never_reaches_outputs_metrics_cache_or_logs(tmp_path):
    """Checks the API key appears in no file a generate run wrote and in none of its output, 401/403 included."""
    prompts = write_prompts(tmp_path / "prompts.jsonl", prompt_rows(5))
    outputs = []
    with FakeOpenAI(api_key=SECRET) as good, FakeOpenAI(api_key="sk-other-key-0000000", auth_status=401) as r401, \
            FakeOpenAI(api_key="sk-other-key-0000000", auth_status=403) as r403:
        for name, server in (("ok", good), ("401", r401), ("403", r403)):
            folder = tmp_path / name
            folder.mkdir()
            env = stage_env(folder, POTSTILL_TEST_KEY=SECRET)  # own state dir: no answer comes from a cache
            params = stage_params(folder, base_url=server.base_url, api_key_env="POTSTILL_TEST_KEY")
            cmd = stage_cmd("generate", "--params", params, "--prompts", prompts, "--out", folder / "gen",
                            "--metrics", folder / "metrics.json")
            outputs.append(subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120))
    ok, refused, forbidden = outputs
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert good.rejected == 0 and sum(good.answered.values()) == 5  # the key was sent, and accepted
    assert refused.returncode == 2 and "rejected the API key (401)" in refused.stderr and r401.rejected >= 1
    assert forbidden.returncode == 2 and "refused access (403)" in forbidden.stderr
    assert "Bearer [redacted]" in forbidden.stderr  # the server echoed the key; the message blanked it
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any("teacher-cache" in str(path) for path in written) and len(written) > 8
    assert [path for path in written if SECRET.encode() in path.read_bytes()] == []
    for proc in outputs:
        assert SECRET not in proc.stdout and SECRET not in proc.stderr


def files_holding(secret: bytes, roots: list[Path]) -> tuple[list[Path], int]:
    """Return (files under `roots` whose bytes contain `secret`, files scanned).

    Read in chunks (the models are hundreds of MB) with an overlap, so a secret across a chunk
    boundary is still found; git's loose objects are zlib-compressed and are scanned inflated.
    """
    import zlib

    found, scanned = [], 0
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            scanned += 1
            with path.open("rb") as handle:
                tail = b""
                while chunk := handle.read(1 << 24):
                    if secret in tail + chunk:
                        found.append(path)
                        break
                    tail = chunk[-len(secret):]
            if ".git/objects/" in path.as_posix() and path not in found:
                try:
                    if secret in zlib.decompress(path.read_bytes()):
                        found.append(path)
                except zlib.error:
                    pass  # a pack or index file, not a loose object
    return found, scanned


@pytest.mark.slow
def test_the_api_key_is_nowhere_in_what_the_whole_pipeline_wrote(pipeline, state_dir):
    """Checks dvc repro run with the key set leaves it in no file (project, DVC cache, state, logs, output)."""
    from conftest import PIPELINE_KEY_ENV, PIPELINE_SECRET
    from dvc.repo import Repo

    assert yaml.safe_load((pipeline / "params.yaml").read_text())["teacher"]["api_key_env"] == PIPELINE_KEY_ENV
    assert os.environ[PIPELINE_KEY_ENV] == PIPELINE_SECRET  # the stages built their clients with it
    with Repo(str(pipeline)) as repo:
        site_cache = Path(repo.site_cache_dir)
    logs, tmp = pipeline.parent / "repro-logs", pipeline.parent / "repro-tmp"
    roots = [pipeline, state_dir, logs, tmp, *([site_cache] if site_cache.is_dir() else [])]
    found, scanned = files_holding(PIPELINE_SECRET.encode(), roots)
    assert found == [], found
    # the scan saw what the run wrote: outputs, the DVC cache and lock, the teacher cache, the logs
    for must_exist in (pipeline / "dvc.lock", pipeline / "data/generated/responses.jsonl",
                       pipeline / "metrics/generate.json", logs / "stdout.txt", logs / "stderr.txt"):
        assert must_exist.is_file(), must_exist
    assert any((pipeline / ".dvc" / "cache").rglob("*")) and any((state_dir / "teacher-cache").rglob("*.json"))
    assert any(tmp.glob("llama-server-*.log")), "the llama.cpp server log was not written where it was scanned"
    assert PIPELINE_KEY_ENV in (pipeline / "dvc.lock").read_text()  # the name is recorded; the value is not
    assert scanned > 50


# --- 3. safe loading ---------------------------------------------------------------------------


def python_sources() -> list[Path]:
    """Return every .py file of the library and the stage scripts."""
    return sorted([*(ROOT / "potstill").rglob("*.py"), *(ROOT / "stages").rglob("*.py")])


def call_arguments(text: str, start: int) -> str:
    """Return the text of a call's arguments, from just after its "(" up to the matching ")"."""
    depth = 1
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index]
    return text[start:]


def test_no_code_trusts_remote_code_and_model_loads_ask_for_safetensors():
    """Checks no source passes trust_remote_code=True and every AutoModel load insists on safetensors."""
    offenders, loads = [], []
    for path in python_sources():
        text = path.read_text()
        offenders += [f"{path}:{m.start()}" for m in re.finditer(r"trust_remote_code\s*=\s*True", text)]
        for match in re.finditer(r"AutoModelForCausalLM\.from_pretrained\(", text):
            call = call_arguments(text, match.end())
            loads.append((path.name, "use_safetensors=True" in call or "gguf_file=" in call))
    assert offenders == []
    assert loads and all(ok for _, ok in loads), loads
    assert ("models.py", True) in loads and ("run.py", True) in loads  # prepare/evaluate and train load models


def test_a_pickle_only_checkpoint_is_refused_naming_the_folder(tiny_model_dir, tmp_path):
    """Checks load_checked raises InputError (folder named, safetensors required) on a pytorch_model.bin folder."""
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    torch.save({"model.embed_tokens.weight": torch.zeros(4, 4)}, folder / "pytorch_model.bin")
    with pytest.raises(InputError) as err:
        load_checked(folder)
    message = str(err.value)
    assert str(folder) in message and "safetensors is required" in message and "pytorch_model.bin" in message


# --- 4. load -----------------------------------------------------------------------------------


def open_fds() -> int:
    """Return how many file descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    """Return this process's resident set size now (not the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def settled() -> tuple[int, int]:
    """Return (open fds, RSS) once finished threads and sockets have had a moment to go."""
    gc.collect()
    time.sleep(0.3)
    gc.collect()
    return open_fds(), rss_bytes()


def test_concurrency_64_loses_no_rows_and_leaks_no_fds_or_memory(tmp_path):
    """Checks 300 prompts at concurrency 64 are each answered once, with fds and RSS flat after warm-up."""
    values = {"model": "teacher", "temperature": 0.7, "top_p": 0.95, "max_tokens": 4, "logprobs": 0,
              "timeout_s": 10.0, "max_retries": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.2,
              "max_concurrency_per_endpoint": 64}
    cache = ResponseCache(tmp_path / "cache")
    # 50 ms a reply: long enough that 64 requests really overlap even on 2 busy cores.
    with FakeOpenAI(delay_s=0.05, completion_tokens=4, max_handlers=128) as server:
        dispatcher = build_dispatcher([server.base_url], shipped("teacher", **values), SAMPLING, Ledger())

        def run(rows):
            return generate(rows, dispatcher, SAMPLING, cache, concurrency=64, progress=False,
                            ledger=dispatcher.ledger, cancel=dispatcher.cancel)

        run(prompt_rows(64, start=10_000))  # warm-up: thread pool, connection pool, imports
        fds_before, rss_before = settled()
        rows = prompt_rows(300)
        results, stats = run(rows)
        fds_after, rss_after = settled()
    assert [r["row"]["id"] for r in results] == [row["id"] for row in rows]
    assert stats["requested"] == 300 and server.max_in_flight > 8
    assert sorted(server.answered.values()) == [1] * 364
    assert fds_after <= fds_before + 10, (fds_before, fds_after)
    assert rss_after <= rss_before + 50 * 2**20, (rss_before, rss_after)


# --- 5. bad input not covered elsewhere ----------------------------------------------------------


def invoke(app, args: list) -> object:
    """Return the CliRunner result of a Typer app called with `args` (stringified)."""
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    ("teacher", "expected"),
    [({"temprature": 0.5}, "teacher.temprature: unknown key"),
     ({"max_tokens": "many"}, "teacher.max_tokens: Input should be a valid integer"),
     ({"temperature": -0.1}, "teacher.temperature"),
     ({"model": None}, "teacher.model")],
)
def test_generate_stage_exits_2_on_bad_params_naming_file_and_key(tmp_path, monkeypatch, teacher, expected):
    """Checks the generate stage exits 2 with the params file and the key named, before any request."""
    from stages.generate import app

    monkeypatch.setenv("POTSTILL_STATE_DIR", str(tmp_path / "state"))
    params = stage_params(tmp_path, base_url="http://127.0.0.1:9/v1", **teacher)
    prompts = write_prompts(tmp_path / "prompts.jsonl", prompt_rows(2))
    result = invoke(app, ["--params", params, "--prompts", prompts, "--out", tmp_path / "g", "--metrics",
                          tmp_path / "m.json"])
    assert result.exit_code == 2, result.output
    assert expected in result.output and str(params) in result.output


def test_quantize_stage_exits_2_on_an_unknown_format(tmp_path, tiny_model_dir):
    """Checks quantize.formats: [int3] stops the quantize stage with exit 2 naming the key and the allowed values."""
    from stages.quantize import app

    params = stage_params(tmp_path, sections={"quantize": {"formats": ["int3"]}})
    result = invoke(app, ["--params", params, "--format", "int3", "--merged", tiny_model_dir, "--out", tmp_path / "q",
                          "--metrics", tmp_path / "m.json"])
    assert result.exit_code == 2 and "quantize.formats" in result.output and str(params) in result.output
    assert f"allowed: {', '.join(QUANTIZE_FORMATS)}" in result.output and "gguf-q8_0-gptq" in QUANTIZE_FORMATS
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b'{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": \n', r"prompts.jsonl:2: not valid JSON"),
     (b'{"id": "a", "prompt": ""}\n', r"prompts.jsonl:1: \"prompt\" is missing or empty"),
     (b'{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n', r"prompts.jsonl:2: duplicate id 'a'"),
     (b'{"id": "a", "prompt": "caf\xe9"}\n', r"prompts.jsonl:1: not valid UTF-8"),
     (b'{"id": "a", "prompt": "' + b"word " * 2000 + b'"}\n', r"prompts.jsonl:1: prompt 'a' is ~\d+ tokens"),
     (b"\n", r"prompts.jsonl: no prompts")],
)
def test_generate_stage_exits_2_on_bad_prompt_files_naming_file_and_line(tmp_path, monkeypatch, content,
                                                                        expected):
    """Checks each kind of bad prompts file stops the generate stage with exit 2 naming file:line and the fix."""
    from stages.generate import app

    monkeypatch.setenv("POTSTILL_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "prompts.jsonl").write_bytes(content)
    with FakeOpenAI() as server:
        params = stage_params(tmp_path, base_url=server.base_url)
        result = invoke(app, ["--params", params, "--prompts", tmp_path / "prompts.jsonl", "--out", tmp_path / "g",
                              "--metrics", tmp_path / "m.json"])
    assert result.exit_code == 2, result.output
    assert re.search(expected, result.output), result.output
    assert sum(server.answered.values()) == 0 and not (tmp_path / "g").exists()


def closed_port() -> int:
    """Return a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("fault", ["refused", "404"])
def test_generate_stage_exits_2_on_a_dead_or_wrong_endpoint(tmp_path, monkeypatch, fault):
    """Checks a refused connection and an unknown model (404) exit 2 naming the endpoint or the param to fix."""
    from stages.generate import app

    monkeypatch.setenv("POTSTILL_STATE_DIR", str(tmp_path / "state"))
    prompts = write_prompts(tmp_path / "prompts.jsonl", prompt_rows(3))
    args = ["--prompts", prompts, "--out", tmp_path / "g", "--metrics", tmp_path / "m.json"]
    if fault == "refused":
        url = f"http://127.0.0.1:{closed_port()}/v1"
        result = invoke(app, ["--params", stage_params(tmp_path, base_url=url, max_retries=1), *args])
        expected = ["connection failed", url, "teacher.max_retries", "Check that the endpoint is up"]
    else:
        with FakeOpenAI() as server, FaultProxy(server.base_url, ["404"]) as proxy:
            result = invoke(app, ["--params", stage_params(tmp_path, base_url=proxy.base_url), *args])
        expected = ["404 (unknown model", "check teacher.model and teacher.base_url"]
    assert result.exit_code == 2, result.output
    assert all(text in result.output for text in expected), result.output
    assert not (tmp_path / "g").exists()


def test_a_task_yaml_that_does_not_parse_is_named_with_its_line(tmp_path):
    """Checks an unparsable eval task YAML is reported as FILE:LINE, not only as an undefined task."""
    (tmp_path / "broken.yaml").write_text("task: broken\ndataset_path: json\n  oops: [unclosed\n")
    with pytest.raises(InputError) as err:
        load_tasks(tmp_path, ["broken"])
    assert f"{tmp_path / 'broken.yaml'}:3 is not valid YAML" in str(err.value)
    assert "evaluate.tasks: ['broken'] not defined" in str(err.value)


def test_a_task_naming_a_missing_data_file_is_reported(tmp_path):
    """Checks a task YAML whose data file is missing raises InputError naming the folder and the file."""
    shipped = (ROOT / "data/eval_tasks/potstill_gen.yaml").read_text()
    missing = tmp_path / "nowhere.jsonl"
    (tmp_path / "gen.yaml").write_text(shipped.replace("data/eval_tasks/potstill_gen.jsonl", str(missing)))
    with pytest.raises(InputError) as err:
        load_tasks(tmp_path, ["potstill_gen"])
    assert str(tmp_path) in str(err.value) and "data file was not found" in str(err.value)
    assert str(missing) in str(err.value)
