"""The teacher client under faults, load and budgets: a fault-injecting proxy in front of real and fake servers.

Every prompt is answered exactly once whatever the endpoint does; the ledger counts each kind of
fault; budgets, rate limits and concurrency caps hold; hopeless errors stop the run at once.
"""

import io
import json
import time

import pytest
import yaml
from conftest import shipped
from fake_endpoint import LEAKY_KEY, FakeOpenAI, FaultProxy

from potstill.errors import BudgetExceeded, TeacherError
from potstill.params import TeacherParams
from potstill.teacher.cache import ResponseCache
from potstill.teacher.client import Sampling, redact
from potstill.teacher.dispatch import SKIP_AFTER_FAILURES, Pacer, RetryPolicy, build_dispatcher, concurrency_note
from potstill.teacher.generate import generate
from potstill.teacher.ledger import Ledger, Price, Progress
from potstill.teacher.server import llama_cpp_server

SAMPLING = Sampling(model="teacher", temperature=0.7, top_p=0.95, max_tokens=8, logprobs=0, seed=0)
# One of every retryable fault, each followed by a good answer: half the requests fail.
EVERY_FAULT = ["429", "ok", "500", "ok", "503", "ok", "timeout", "ok", "drop", "ok", "malformed", "ok",
               "truncated", "ok"]


def prompts(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"p{i}", "prompt": f"question {i}"} for i in range(start, start + n)]


def teacher_params(**overrides) -> TeacherParams:
    values = {"model": "teacher", "temperature": 0.7, "top_p": 0.95, "max_tokens": 8, "logprobs": 0,
              "timeout_s": 2.0, "max_retries": 6, "backoff_base_s": 0.01, "backoff_max_s": 0.2,
              "max_concurrency_per_endpoint": 1}
    return shipped("teacher", **{**values, **overrides})


def ask_all(rows, urls, cache, concurrency=1, ledger=None, **teacher):
    """Run generate through a real dispatcher; returns (results, stats, dispatcher)."""
    dispatcher = build_dispatcher(urls, teacher_params(**teacher), SAMPLING, ledger or Ledger())
    results, stats = generate(rows, dispatcher, SAMPLING, cache, concurrency=concurrency, progress=False,
                              ledger=dispatcher.ledger, cancel=dispatcher.cancel)
    return results, stats, dispatcher


def test_real_llama_server_behind_a_faulty_proxy_answers_each_prompt_once(teacher_gguf, tmp_path):
    rows, cache = prompts(10), ResponseCache(tmp_path / "cache")
    with llama_cpp_server(teacher_gguf, "teacher") as url, \
            FaultProxy(url, EVERY_FAULT + ["ok"] * 6, timeout_sleep_s=4.5, retry_after_s=0.05) as proxy:
        # One request at a time, as llama.cpp serves them (with two workers on one slot and this
        # strict alternation, one worker would draw every fault).
        results, stats, _ = ask_all(rows, [proxy.base_url], cache, timeout_s=4.0)
        again, stats_again, _ = ask_all(rows, [proxy.base_url], cache, timeout_s=4.0)
    assert [r["row"]["id"] for r in results] == [row["id"] for row in rows]
    assert all(r["record"]["content"].strip() and r["record"]["usage"]["completion_tokens"] for r in results)
    assert sorted(proxy.delivered.values()) == [1] * 10  # the real server answered each prompt once
    ledger = stats["ledger"]
    assert {k: v for k, v in ledger["errors"].items() if v} == proxy.injected_by_kind()
    assert ledger["retries"] == sum(proxy.injected.values()) == 7
    assert ledger["requests"] == 17 and ledger["answers"] == 10 and ledger["completion_tokens"] > 0
    assert stats_again["cached"] == 10 and stats_again["ledger"]["requests"] == 0  # never pay twice
    assert [r["record"] for r in again] == [r["record"] for r in results]


def test_many_faults_under_load_every_prompt_once_and_every_fault_counted(tmp_path):
    rows, cache = prompts(120), ResponseCache(tmp_path / "cache")
    with FakeOpenAI(delay_s=0.005) as server, \
            FaultProxy(server.base_url, EVERY_FAULT, timeout_sleep_s=0.8) as proxy:
        # half the requests fail, so give each prompt enough retries never to run out (0.5^21)
        results, stats, _ = ask_all(rows, [proxy.base_url], cache, concurrency=8, timeout_s=0.5,
                                    max_concurrency_per_endpoint=8, max_retries=20)
    assert sorted(server.answered.values()) == [1] * 120
    assert [r["record"]["content"].split()[:4] for r in results] == [
        ["answer", "to", "question", str(i)] for i in range(120)]
    ledger = stats["ledger"]
    assert {k: v for k, v in ledger["errors"].items() if v} == proxy.injected_by_kind()
    assert set(proxy.injected) == {"429", "500", "503", "timeout", "drop", "malformed", "truncated"}
    assert ledger["requests"] == proxy.requests == 120 + ledger["retries"]


def test_faults_on_every_request_stop_after_the_retry_budget_keeping_the_cache(tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    with FakeOpenAI() as server, FaultProxy(server.base_url, ["503"]) as broken:
        ask_all(prompts(3), [server.base_url], cache)
        with pytest.raises(TeacherError) as err:
            ask_all(prompts(6), [broken.base_url], cache, max_retries=3)
        message = str(err.value)
        assert "no answer after 1 try + 3 retries (teacher.max_retries)" in message
        assert "503 server error" in message and "(x4)" in message and "teacher.max_retries" in message
        assert "3 of 6 answers are in the cache" in message
        assert broken.requests == 4  # one prompt, 1 try + 3 retries, then the run stopped
        _, stats, _ = ask_all(prompts(6), [server.base_url], cache)
    assert stats["cached"] == 3 and stats["requested"] == 3
    assert sorted(server.answered.values()) == [1] * 6


def test_ctrl_c_under_concurrency_loses_nothing_and_pays_nothing_twice(tmp_path):
    rows, cache = prompts(24), ResponseCache(tmp_path / "cache")
    with FakeOpenAI(delay_s=0.05) as server:
        dispatcher = build_dispatcher([server.base_url], teacher_params(max_concurrency_per_endpoint=4), SAMPLING,
                                      Ledger())
        calls = []

        def interrupted(messages):
            calls.append(1)
            if len(calls) == 9:
                raise KeyboardInterrupt  # the user pressed Ctrl-C while 4 requests were in flight
            return dispatcher(messages)

        with pytest.raises(KeyboardInterrupt):
            generate(rows, interrupted, SAMPLING, cache, concurrency=4, progress=False, cancel=dispatcher.cancel)
        answered_before = sum(server.answered.values())
        assert 8 <= answered_before < 24  # the in-flight ones finished and were cached
        _, stats, _ = ask_all(rows, [server.base_url], cache, concurrency=4, max_concurrency_per_endpoint=4)
    assert stats["cached"] == answered_before and stats["requested"] == 24 - answered_before
    assert sorted(server.answered.values()) == [1] * 24


def test_identical_prompts_share_one_request(tmp_path):
    rows = prompts(4) + [{"id": "copy", "prompt": "question 0"}]
    with FakeOpenAI(delay_s=0.05) as server:
        results, stats, _ = ask_all(rows, [server.base_url], ResponseCache(tmp_path / "c"), concurrency=4,
                                    max_concurrency_per_endpoint=4)
    assert server.answered["question 0"] == 1 and stats["shared_answers"] == 1 and stats["requested"] == 4
    assert results[-1]["record"] == results[0]["record"] and results[-1]["row"]["id"] == "copy"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("401", "rejected the API key (401); check teacher.api_key_env"),
     ("404", "404 (unknown model 'teacher' or wrong base_url): The model `nope` does not exist; check teacher.model"),
     ("400", "rejected the request (400): This model's maximum context length")],
)
def test_hopeless_errors_stop_at_once_with_what_to_fix(tmp_path, fault, expected):
    with FakeOpenAI() as server, FaultProxy(server.base_url, [fault]) as proxy:
        with pytest.raises(TeacherError) as err:
            ask_all(prompts(8), [proxy.base_url], ResponseCache(tmp_path / "cache"), concurrency=2,
                    max_concurrency_per_endpoint=2)
    assert expected in str(err.value)
    assert LEAKY_KEY not in str(err.value)
    assert proxy.requests <= 2  # no retries: at most what was already in flight


def test_a_long_retry_after_stops_instead_of_hanging(tmp_path):
    with FakeOpenAI() as server, FaultProxy(server.base_url, ["429"], retry_after_s=3600) as proxy:
        with pytest.raises(TeacherError, match=r"asks to wait 3600s .*longer than teacher.backoff_max_s"):
            ask_all(prompts(2), [proxy.base_url], ResponseCache(tmp_path / "cache"))
    assert proxy.requests == 1


def test_retry_after_is_honoured(tmp_path):
    with FakeOpenAI() as server, FaultProxy(server.base_url, ["429", "ok"], retry_after_s=0.4) as proxy:
        started = time.monotonic()
        ask_all(prompts(1), [proxy.base_url], ResponseCache(tmp_path / "cache"), backoff_max_s=1.0)
        assert time.monotonic() - started >= 0.4
    assert proxy.injected["429"] == 1 and server.arrivals


def test_concurrency_is_capped_overall_and_per_endpoint(tmp_path):
    with FakeOpenAI(delay_s=0.05) as one, FakeOpenAI(delay_s=0.05) as two:
        _, stats, _ = ask_all(prompts(24), [one.base_url, two.base_url], ResponseCache(tmp_path / "a"),
                              concurrency=8, max_concurrency_per_endpoint=2)
        assert one.max_in_flight == 2 and two.max_in_flight == 2  # 8 workers, 2 per endpoint
        assert sum(one.answered.values()) + sum(two.answered.values()) == 24
        assert min(sum(one.answered.values()), sum(two.answered.values())) >= 8  # spread over both
        assert set(stats["ledger"]["endpoints"]) == {one.base_url, two.base_url}
    with FakeOpenAI(delay_s=0.05) as server:
        ask_all(prompts(12), [server.base_url], ResponseCache(tmp_path / "b"), concurrency=3,
                max_concurrency_per_endpoint=16)
        assert server.max_in_flight == 3


def test_an_endpoint_that_keeps_failing_is_skipped_while_another_answers(tmp_path):
    with FakeOpenAI(delay_s=0.01) as good, FakeOpenAI() as behind, FaultProxy(behind.base_url, ["503"]) as bad:
        _, stats, _ = ask_all(prompts(30), [bad.base_url, good.base_url], ResponseCache(tmp_path / "cache"),
                              concurrency=2, backoff_base_s=1.0, backoff_max_s=2.0, max_retries=8)
    assert sorted(good.answered.values()) == [1] * 30
    assert bad.requests <= SKIP_AFTER_FAILURES + 1  # sat out after 3 failures in a row
    assert stats["ledger"]["errors"]["5xx"] == bad.requests


def test_concurrency_that_leaves_slots_idle_or_waiting_is_named():
    # Two embedded servers at concurrency 1 answer at one server's speed: the stage says so.
    idle = concurrency_note(1, 2, 1)
    assert idle and "1 slot(s) sit idle" in idle and "set generate.concurrency: 2" in idle
    assert "at most 2 in flight" in concurrency_note(8, 2, 1)
    assert concurrency_note(64, 2, 32) is None


def test_rate_limit_spaces_requests(tmp_path):
    with FakeOpenAI() as server:
        ask_all(prompts(8), [server.base_url], ResponseCache(tmp_path / "cache"), concurrency=4,
                max_concurrency_per_endpoint=4, rpm=600)  # one request per 0.1 s
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    assert len(gaps) == 7 and min(gaps) >= 0.08, gaps
    assert server.arrivals[-1] - server.arrivals[0] >= 0.65


def test_pacer_books_requests_and_tokens_per_minute():
    now = [100.0]
    requests, tokens = Pacer(60, clock=lambda: now[0]), Pacer(600, clock=lambda: now[0])
    assert [requests.reserve() for _ in range(3)] == [0.0, 1.0, 2.0]  # one a second, booked ahead
    assert tokens.reserve(50) == 0.0 and tokens.reserve(10) == pytest.approx(5.0)  # 10 tokens/s
    tokens.adjust(-30)  # the first request used 20 tokens, not the 50 booked
    now[0] += 10
    assert tokens.reserve(10) == 0.0 and Pacer(None).reserve(1e9) == 0.0


def test_backoff_grows_with_jitter_and_honours_retry_after():
    policy = RetryPolicy(max_retries=5, backoff_base_s=1.0, backoff_max_s=8.0)
    for retry, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = [policy.delay(retry) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(set(delays)) > 1
    assert 3.0 <= policy.delay(0, retry_after=3.0) <= 3.3


@pytest.mark.parametrize("budget", [{"max_tokens_total": 50}, {"price_per_1k_tokens": 1.0, "max_cost": 0.05}])
def test_budget_stops_the_run_before_it_is_crossed_keeping_the_cache(tmp_path, budget):
    cache = ResponseCache(tmp_path / "cache")
    teacher = teacher_params(**budget)
    ledger = Ledger(Price.from_param(teacher.price_per_1k_tokens), teacher.max_cost, teacher.max_tokens_total)
    with FakeOpenAI(completion_tokens=8) as server:
        with pytest.raises(BudgetExceeded) as err:
            ask_all(prompts(10), [server.base_url], cache, ledger=ledger, **budget)
        # each answer costs 3 + 8 = 11 tokens; a request may take up to 7 + 8 = 15: 4 fit in 50
        assert sum(server.answered.values()) == 4
        assert ledger.prompt_tokens + ledger.completion_tokens == 44
        assert "4 of 10 answers are in the cache" in str(err.value)
        assert ("teacher.max_tokens_total 50" if "max_tokens_total" in budget else "teacher.max_cost $0.05") \
            in str(err.value)
        _, stats, _ = ask_all(prompts(10), [server.base_url], cache)  # no budget: finishes the rest
    assert stats["cached"] == 4 and stats["requested"] == 6


def test_budget_learns_when_chars_per_4_undercounts_the_prompt():
    ledger = Ledger(max_tokens_total=1000)
    held = ledger.reserve(prompt_tokens=100, max_tokens=50)
    assert held.prompt_tokens == 100
    ledger.settle(held, {"prompt_tokens": 200, "completion_tokens": 50})  # code: twice the tokens we guessed
    held = ledger.reserve(prompt_tokens=100, max_tokens=50)
    assert held.prompt_tokens == 200
    ledger.settle(held, None)  # that attempt failed: nothing charged
    with pytest.raises(BudgetExceeded, match=r"spent 250 tokens on 1 answers .* up to 850 tokens"):
        ledger.reserve(prompt_tokens=300, max_tokens=250)  # 250 + 2 * 300 + 250 > 1000


def test_estimate_names_the_budget_it_may_cross():
    ledger = Ledger(Price(0.5, 1.5), max_cost=0.001, max_tokens_total=None)
    estimate = ledger.estimate([[{"role": "user", "content": "x" * 400}]] * 2, max_tokens=100)
    assert estimate == {"requests": 2, "prompt_tokens": 208, "completion_tokens_max": 200, "cost_max": 0.404}
    text = ledger.describe_estimate(estimate, prompts=5, cached=3)
    assert "5 prompts, 3 cached, 2 requests to send" in text and "at most $0.4040" in text
    assert "may cross teacher.max_cost $0.001" in text


def test_progress_logs_every_tenth_when_not_a_terminal():
    now = [0.0]
    ledger = Ledger(clock=lambda: now[0])
    stream = io.StringIO()
    with Progress(40, ledger, stream=stream, clock=lambda: now[0]) as progress:
        for _ in range(40):
            now[0] += 0.5
            progress.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("teacher: 4/40 answered (10%), 2.00 req/s")
    assert "ETA 18s" in lines[0] and lines[-1].startswith("teacher: 40/40 answered (100%)")
    stream = io.StringIO()
    with Progress(1000, ledger, stream=stream, clock=lambda: now[0]) as progress:
        progress.update()  # well under 10%, but the first line comes after 30 s
        now[0] += 31
        progress.update()
    assert stream.getvalue().count("\n") == 1


def test_progress_rates_count_only_their_own_batch_of_requests():
    """Synthesis then answers share one ledger: the answers' rate and ETA must not include synthesis time."""
    now = [0.0]
    ledger = Ledger(clock=lambda: now[0])
    ledger.begin()
    ledger.completion_tokens = 5000  # an earlier batch: 600 s and 5,000 tokens
    now[0] = 600.0
    stream = io.StringIO()
    with Progress(100, ledger, stream=stream, clock=lambda: now[0]) as progress:
        for _ in range(10):
            now[0] += 1.0
            ledger.completion_tokens += 40
            progress.update()
    first = stream.getvalue().splitlines()[0]
    assert first.startswith("teacher: 10/100 answered (10%), 1.00 req/s, 40.0 completion tok/s")
    assert first.endswith("ETA 1m30s")


def test_redact_blanks_keys():
    assert "sk-" not in redact("bad key sk-abcdef123456 sent").replace("sk-[redacted]", "")
    assert redact("token mysecretvalue leaked", "mysecretvalue") == "token [redacted] leaked"
    assert "Bearer [redacted]" in redact("Authorization: Bearer abcdefgh12345")


def stage_params(tmp_path, **teacher) -> str:
    params = yaml.safe_load(open("params.yaml"))
    params["teacher"].update({"max_tokens": 8, "backoff_base_s": 0.01, "backoff_max_s": 0.2, **teacher})
    params["generate"].update({"n_examples": 0, "on_bad_prompt": "skip", "concurrency": 4})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def test_generate_stage_over_two_endpoints_skips_bad_lines_and_writes_the_ledger(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stages.generate import app

    monkeypatch.setenv("POTSTILL_STATE_DIR", str(tmp_path / "state"))
    lines = [json.dumps(row) for row in prompts(6)]
    lines.insert(2, '{"id": "broken", "prompt": ')  # not JSON
    lines.append(json.dumps({"id": "p1", "prompt": "same id again"}))
    lines.append(json.dumps({"id": "long", "prompt": "word " * 100}))
    (tmp_path / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    out, metrics = tmp_path / "generated", tmp_path / "metrics.json"
    with FakeOpenAI() as one, FakeOpenAI() as two, FaultProxy(two.base_url, ["503", "ok"]) as proxy:
        args = ["--prompts", str(tmp_path / "prompts.jsonl"), "--out", str(out), "--metrics", str(metrics)]
        params = stage_params(tmp_path, base_url=[one.base_url, proxy.base_url], max_prompt_chars=400,
                              max_concurrency_per_endpoint=2, price_per_1k_tokens={"prompt": 1, "completion": 2})
        result = CliRunner().invoke(app, ["--params", params, *args])
        assert result.exit_code == 0, result.output
        responses = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
        assert [r["id"] for r in responses] == [f"p{i}" for i in range(6)]
        stats = json.loads(metrics.read_text())
        assert stats["bad_prompts"]["count"] == 3
        assert [(b["line"], b["id"]) for b in stats["bad_prompts"]["lines"]] == [(3, None), (8, "p1"), (9, "long")]
        assert "teacher.max_prompt_chars 400" in stats["bad_prompts"]["lines"][2]["reason"]
        assert "warning: skipped" in result.output and "0 cached, 6 requests to send" in result.output
        assert "teacher: 503 server error from http://127.0.0.1:" in result.output  # retries are announced
        ledger = stats["ledger"]
        assert ledger["answers"] == 6 and ledger["errors"]["5xx"] == proxy.injected["503"] >= 1
        assert ledger["cost"] == pytest.approx((ledger["prompt_tokens"] + 2 * ledger["completion_tokens"]) / 1000)
        assert json.loads((out / "manifest.json").read_text())["rows"] == 6

        params = stage_params(tmp_path, base_url=one.base_url, max_tokens_total=30)
        (tmp_path / "prompts.jsonl").write_text("\n".join(json.dumps(r) for r in prompts(8, start=100)) + "\n")
        result = CliRunner().invoke(app, ["--params", params, *args])
    assert result.exit_code == 2, result.output
    assert "error: while asking for prompt" in result.output and "budget reached" in result.output
