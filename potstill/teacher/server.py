"""Local OpenAI-compatible servers on loopback: llama.cpp for the embedded GGUF teacher, and
`transformers serve` (continuous batching) for a local checkpoint."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from potstill.errors import ServerError


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def llama_cpp_server(
    gguf_path: Path, model_alias: str, n_threads: int | None = None, n_ctx: int = 2048,
    startup_timeout_s: float = 180.0,
) -> Iterator[str]:
    """Yield the base URL of a llama.cpp server on a free loopback port; stop it on exit."""
    port = free_port()
    # Half the cores, as llama.cpp itself defaults to: with every core busy its OpenMP threads
    # spin against each other (measured here on 2 cores: 57 tok/s with 1 thread, 1.4 with 2
    # while another process ran).
    threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf_path), "--model_alias", model_alias,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_threads", str(threads), "--n_ctx", str(n_ctx),
    ]
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with _supervised("llama.cpp server", "llama-server-", cmd, port, env, startup_timeout_s) as base_url:
        yield base_url


@contextlib.contextmanager
def transformers_server(model_dir: Path, device: str = "cpu", startup_timeout_s: float = 300.0,
                        served_name: str | None = None) -> Iterator[str]:
    """Yield the base URL of `transformers serve --continuous-batching` for a local checkpoint.

    A concurrent OpenAI-compatible server (paged attention, requests batched as they arrive),
    the loopback stand-in for vLLM. The server is pinned to one model, whose id requests must
    carry: `served_name` (the folder is linked under that name in a scratch folder the server
    runs in, so requests keep the name the user chose), else `str(model_dir)`.
    Needs the `transformers[serving]` extra (fastapi, uvicorn), which every install has.
    """
    port = free_port()
    cli = Path(sys.executable).with_name("transformers")
    with tempfile.TemporaryDirectory(prefix="potstill-serve-") as scratch:
        model_id = str(Path(model_dir).resolve())
        if served_name:
            link = Path(scratch) / served_name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path(model_dir).resolve(), target_is_directory=True)
            model_id = served_name
        cmd = [
            str(cli) if cli.exists() else "transformers", "serve", model_id, "--continuous-batching",
            "--device", device, "--host", "127.0.0.1", "--port", str(port),
        ]
        with _supervised("transformers serve", "transformers-serve-", cmd, port, {}, startup_timeout_s,
                         cwd=scratch) as base_url:
            yield base_url


@contextlib.contextmanager
def _supervised(name: str, log_prefix: str, cmd: list[str], port: int, env: dict[str, str],
                startup_timeout_s: float, cwd: str | Path | None = None) -> Iterator[str]:
    """Run `cmd` until its /v1/models answers, yield its base URL, and always stop it on exit.

    The server runs in its own process group so that Ctrl-C, an exception or a failed start
    always takes it down with the caller. Its output goes to a `log_prefix`*.log file in the
    temporary directory (the secrets test scans llama-server-*.log there).
    """
    log = tempfile.NamedTemporaryFile(prefix=log_prefix, suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **env}, cwd=cwd)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise ServerError(
                    f"{name} exited with code {proc.returncode} before it was ready; "
                    f"its log: {log.name}\n{Path(log.name).read_text(errors='replace')[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"{name} not ready after {startup_timeout_s:.0f}s; log: {log.name}")
            time.sleep(0.3)
        yield base_url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
