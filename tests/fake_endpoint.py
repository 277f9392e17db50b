"""A fake OpenAI-compatible chat server and a fault-injecting proxy, for tests and benchmarks.

    with FakeOpenAI(delay_s=0.05) as server, FaultProxy(server.base_url, ["503", "ok"]) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)

Both listen on 127.0.0.1 only (stdlib ThreadingHTTPServer), handle at most `max_handlers`
connections at once, and stop themselves after `lifetime_s` even if a caller forgets to. The
proxy answers requests in turn from its `plan` (cycled): "ok" forwards to the upstream server,
anything else is a fault made up without asking upstream, so the upstream sees each prompt
only when the client is meant to get an answer.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429", "500", "503", "timeout", "drop", "malformed", "truncated", "400", "401", "404")
# What the teacher ledger should call each injected fault.
LEDGER_KIND = {"429": "429", "500": "5xx", "503": "5xx", "timeout": "timeout", "drop": "connection",
               "malformed": "malformed", "truncated": "malformed"}
# A key-shaped string in the 401 body: the client's error message must not repeat it.
LEAKY_KEY = "sk-proj-SECRETSECRET1234"


class _BoundedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that runs at most `max_handlers` connections at once."""

    daemon_threads = True
    request_queue_size = 128  # the default listen backlog (5) drops connections under a burst

    def __init__(self, handler, owner, max_handlers: int):
        super().__init__(("127.0.0.1", 0), handler)
        self.owner = owner
        self.slots = threading.BoundedSemaphore(max_handlers)

    def process_request(self, request, client_address):
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def read_json(self) -> tuple[bytes, dict]:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            return raw, json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return raw, {}

    def send_body(self, status: int, body: bytes, content_type: str = "application/json", headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timed out); nothing to do


class _Served:
    """Runs a _BoundedServer in a thread; a context manager that stops it (or a timer does)."""

    def __init__(self, handler, max_handlers: int, lifetime_s: float):
        self.stopping = threading.Event()
        self.server = _BoundedServer(handler, self, max_handlers)
        self.lifetime_s = lifetime_s
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True

    @property
    def base_url(self) -> str:
        """Return the OpenAI-style base URL (ending in /v1)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self):
        """Start serving; returns self."""
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving and wake any handler that is sleeping; safe to call twice."""
        with self._lock:
            if self.stopping.is_set():
                return
            self.stopping.set()
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _FakeHandler(_Handler):
    def do_GET(self) -> None:
        fake: FakeOpenAI = self.server.owner
        self.send_body(200, json.dumps({"object": "list", "data": [{"id": fake.model, "object": "model"}]}).encode())

    def do_POST(self) -> None:
        fake: FakeOpenAI = self.server.owner
        _, body = self.read_json()
        auth = self.headers.get("Authorization") or ""
        if fake.api_key is not None and auth != f"Bearer {fake.api_key}":
            fake.rejected += 1
            # Like some real servers, echo what was sent: the client must not repeat it anywhere.
            self.send_body(fake.auth_status, _error(f"Incorrect API key provided: {auth}", "invalid_request_error"))
            return
        fake.enter()
        try:
            fake.stopping.wait(fake.delay_s)
            reply = fake.completion(body) if self.path.endswith("/completions") and "chat" not in self.path \
                else fake.reply(body)
        finally:
            fake.leave()
        self.send_body(200, json.dumps(reply).encode())


class FakeOpenAI(_Served):
    """OpenAI-compatible chat server answering "answer to <prompt>" after `delay_s`; records its load.

    `max_in_flight` is the most requests it ever handled at once, `arrivals` the monotonic time
    each request came in, `answered` how often each user prompt was answered. With `api_key` set,
    a request without `Authorization: Bearer <api_key>` gets `auth_status` (401 or 403) with the
    header it sent echoed in the error message, and counts in `rejected`. `responder(messages)`,
    when given, writes the reply text instead; `system_prompts` counts the system messages seen.
    """

    def __init__(self, delay_s: float = 0.0, completion_tokens: int = 8, model: str = "fake",
                 max_handlers: int = 64, lifetime_s: float = 120.0, api_key: str | None = None,
                 auth_status: int = 401, responder: Callable[[list[dict]], str] | None = None,
                 prompt_logprobs: bool = False, decode: Callable[[int], str] | None = None,
                 tokenize: Callable[[str], list[str]] | None = None):
        super().__init__(_FakeHandler, max_handlers, lifetime_s)
        # Like vLLM when True: /v1/completions honours `prompt_logprobs`; like llama.cpp when False (ignored).
        self.prompt_logprobs, self.decode = prompt_logprobs, decode or str
        self.api_key, self.auth_status, self.rejected = api_key, auth_status, 0
        self.delay_s, self.completion_tokens, self.model = delay_s, completion_tokens, model
        # Given, chat log-probs come per token of the reply as `tokenize` splits it (an endpoint
        # sharing the student's tokenizer, as kd.source api needs); else per word.
        self.responder, self.tokenize = responder, tokenize
        self.system_prompts: Counter[str] = Counter()
        self.in_flight = self.max_in_flight = 0
        self.arrivals: list[float] = []
        self.answered: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def enter(self) -> None:
        with self._count_lock:
            self.arrivals.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._count_lock:
            self.in_flight -= 1

    def completion(self, body: dict) -> dict:
        """Return a /v1/completions reply; with prompt_logprobs on, each choice scores its prompt (vLLM)."""
        prompts = body.get("prompt") or [[]]
        prompts = [prompts] if prompts and isinstance(prompts[0], int) else prompts
        choices = []
        for index, ids in enumerate(prompts):
            choice = {"index": index, "text": " more", "finish_reason": "length", "logprobs": None}
            if self.prompt_logprobs and body.get("prompt_logprobs") is not None:
                choice["prompt_logprobs"] = fake_prompt_logprobs(ids, max(int(body["prompt_logprobs"]), 1),
                                                                 self.decode)
            choices.append(choice)
        return {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                "model": body.get("model", self.model), "choices": choices,
                "usage": {"prompt_tokens": sum(len(p) for p in prompts), "completion_tokens": len(prompts),
                          "total_tokens": sum(len(p) for p in prompts) + len(prompts)}}

    def reply(self, body: dict) -> dict:
        """Return the chat completion for a request body (with top logprobs if it asked for them)."""
        messages = body.get("messages") or [{"content": ""}]
        prompt = messages[-1].get("content") or ""
        with self._count_lock:
            self.answered[prompt] += 1
            for message in messages:
                if message.get("role") == "system":
                    self.system_prompts[message.get("content") or ""] += 1
        tokens = min(int(body.get("max_tokens") or self.completion_tokens), self.completion_tokens)
        if self.responder is not None:
            content = self.responder(messages)
            words, finish_reason = content.split(), "stop"
        else:
            words = (f"answer to {prompt} " + "more " * tokens).split()[:max(tokens, 1)]
            content, finish_reason = " ".join(words), "length" if tokens < self.completion_tokens else "stop"
        choice = {"index": 0, "message": {"role": "assistant", "content": content},
                  "finish_reason": finish_reason, "logprobs": None}
        if body.get("logprobs"):
            k = int(body.get("top_logprobs") or 1)
            if self.tokenize is None:
                choice["logprobs"] = {"content": [
                    {"token": word, "logprob": -0.5, "bytes": None,
                     "top_logprobs": [{"token": word, "logprob": -0.5, "bytes": None}] * k} for word in words]}
            else:
                alternatives = [(" the", -2.0), (" a", -2.5), (" and", -3.0)]
                choice["logprobs"] = {"content": [
                    {"token": token, "logprob": -0.5, "bytes": None,
                     "top_logprobs": [{"token": t, "logprob": lp, "bytes": None}
                                      for t, lp in [(token, -0.5), *alternatives][:k]]}
                    for token in self.tokenize(content)]}
        prompt_tokens = sum(len(m.get("content") or "") for m in messages) // 4 + 1
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", self.model), "choices": [choice],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                          "total_tokens": prompt_tokens + len(words)}}


def fake_prompt_logprobs(ids: list[int], k: int, decode: Callable[[int], str] = str) -> list[dict | None]:
    """Return what the fake server reports for a token-id prompt, vLLM's shape: None, then per token
    {id: {logprob, rank, decoded_token}}: the token itself at log(0.5), rank 1, and k - 1 neighbours
    (id + j) at log(0.5 / 2^j), as vLLM lists the top-k plus the token actually there."""
    entries: list[dict | None] = [None]
    for token in ids[1:]:
        entry = {str(token): {"logprob": math.log(0.5), "rank": 1, "decoded_token": decode(token)}}
        for j in range(1, k):
            entry[str(token + j)] = {"logprob": math.log(0.5 / 2**j), "rank": j + 1, "decoded_token": decode(token + j)}
        entries.append(entry)
    return entries


def _error(message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind}}).encode()


class _ProxyHandler(_Handler):
    def do_GET(self) -> None:
        proxy: FaultProxy = self.server.owner
        status, body, content_type = proxy.forward("GET", self.path, None, self.headers)
        self.send_body(status, body, content_type)

    def do_POST(self) -> None:
        proxy: FaultProxy = self.server.owner
        raw, body = self.read_json()
        fault = proxy.next_fault()
        if fault == "ok":
            status, reply, content_type = proxy.forward("POST", self.path, raw, self.headers)
            if status == 200:
                proxy.note_delivered(body)
            self.send_body(status, reply, content_type)
        elif fault in ("drop", "timeout"):
            if fault == "timeout":
                proxy.stopping.wait(proxy.timeout_sleep_s)
            self.close_connection = True  # HTTP/1.0: closing without a word is a dropped connection
        elif fault == "malformed":
            self.send_body(200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"mess')
        elif fault == "truncated":
            self.send_truncated()
        else:
            self.send_status_fault(fault, proxy)

    def send_truncated(self) -> None:
        whole = json.dumps({"id": "chatcmpl-x", "object": "chat.completion", "choices": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(whole)))
        self.end_headers()
        self.wfile.write(whole[: len(whole) // 2])
        self.wfile.flush()
        self.close_connection = True

    def send_status_fault(self, fault: str, proxy: FaultProxy) -> None:
        messages = {
            "429": ("Rate limit reached for requests", "rate_limit_exceeded"),
            "500": ("The server had an error while processing your request", "server_error"),
            "503": ("The engine is currently overloaded", "server_error"),
            "400": ("This model's maximum context length is 2048 tokens", "invalid_request_error"),
            "401": (f"Incorrect API key provided: {LEAKY_KEY}", "invalid_request_error"),
            "404": ("The model `nope` does not exist", "invalid_request_error"),
        }
        message, kind = messages[fault]
        headers = {"Retry-After": f"{proxy.retry_after_s:g}"} if fault == "429" else {}
        self.send_body(int(fault), _error(message, kind), headers=headers)


class FaultProxy(_Served):
    """Proxy to `upstream` (an OpenAI-style base URL) that answers requests in turn from `plan`.

    `plan` is cycled, one entry per POST: "ok" forwards, any of FAULTS is injected instead.
    `injected` counts the faults sent, `delivered` the answers forwarded per user prompt.
    """

    def __init__(self, upstream: str, plan: list[str], timeout_sleep_s: float = 1.0, retry_after_s: float = 0.05,
                 upstream_timeout_s: float = 60.0, max_handlers: int = 64, lifetime_s: float = 120.0):
        unknown = sorted(set(plan) - set(FAULTS) - {"ok"})
        if unknown:
            raise ValueError(f"unknown faults {unknown}; choose from {FAULTS} or 'ok'")
        super().__init__(_ProxyHandler, max_handlers, lifetime_s)
        parts = urllib.parse.urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or 80
        self.plan, self.timeout_sleep_s, self.retry_after_s = list(plan), timeout_sleep_s, retry_after_s
        self.upstream_timeout_s = upstream_timeout_s
        self.injected: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        self.requests = 0
        self._plan_lock = threading.Lock()

    def next_fault(self) -> str:
        """Return what to do with the next request, per the plan; counts injected faults."""
        with self._plan_lock:
            fault = self.plan[self.requests % len(self.plan)]
            self.requests += 1
            if fault != "ok":
                self.injected[fault] += 1
            return fault

    def note_delivered(self, body: dict) -> None:
        with self._plan_lock:
            self.delivered[(body.get("messages") or [{}])[-1].get("content")] += 1

    def injected_by_kind(self) -> dict[str, int]:
        """Return the injected retryable faults counted the way the teacher ledger names them."""
        kinds: Counter[str] = Counter()
        for fault, count in self.injected.items():
            if fault in LEDGER_KIND:
                kinds[LEDGER_KIND[fault]] += count
        return dict(kinds)

    def forward(self, method: str, path: str, body: bytes | None, headers) -> tuple[int, bytes, str]:
        """Return (status, body, content type) of the same request sent upstream."""
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.upstream_timeout_s)
        try:
            send = {name: headers[name] for name in ("Content-Type", "Authorization") if headers.get(name)}
            conn.request(method, path, body=body, headers=send)
            reply = conn.getresponse()
            return reply.status, reply.read(), reply.getheader("Content-Type", "application/json")
        except OSError as exc:
            return 502, _error(f"upstream unreachable: {exc}", "proxy_error"), "application/json"
        finally:
            conn.close()
