"""Prompt validation, content-addressed cache keys, and 'never pay twice' in the generate loop."""

import hashlib
import json
import re
import threading

import pytest
from conftest import shipped

from potstill.errors import InputError
from potstill.teacher.cache import ResponseCache, request_key
from potstill.teacher.client import Sampling
from potstill.teacher.generate import generate
from potstill.teacher.prompts import balanced_subset, load_prompts

SAMPLING = Sampling(model="m", temperature=0.7, top_p=0.95, max_tokens=16, logprobs=4, seed=0)


def write(tmp_path, content: bytes):
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"id": "a", "prompt": "hi"}\n{"id": "b", "prompt": "x"\n', r"prompts.jsonl:2: not valid JSON"),
        (b'{"id": "a", "prompt": "   "}\n', r"prompts.jsonl:1: \"prompt\" is missing or empty"),
        (b'{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n',
         r"prompts.jsonl:2: duplicate id 'a' \(first on line 1\)"),
        (b'{"id": "a", "prompt": "caf\xe9"}\n', r"prompts.jsonl:1: not valid UTF-8"),
        (b"", r"no prompts"),
        (b'["a list"]\n', r"prompts.jsonl:1: expected a JSON object"),
        (b'{"prompt": "no id"}\n', r"prompts.jsonl:1: missing \"id\""),
    ],
)
def test_bad_prompt_files_name_file_and_line(tmp_path, content, expected):
    with pytest.raises(InputError, match=expected):
        load_prompts(write(tmp_path, content))


def test_shipped_prompts_load_and_small_runs_cover_every_domain():
    rows = load_prompts("data/prompts.jsonl")
    domains = {row["domain"] for row in rows}
    subset = balanced_subset(rows, len(domains) * 2)
    assert {row["domain"] for row in subset} == domains
    assert len(load_prompts("data/prompts.jsonl", limit=10)) == 10


def test_request_key_changes_with_anything_that_changes_the_answer():
    messages = [{"role": "user", "content": "hi"}]
    base = request_key(messages, SAMPLING)
    assert base == request_key([{"content": "hi", "role": "user"}], SAMPLING)
    hotter = Sampling(**{**SAMPLING.__dict__, "temperature": 0.9})
    assert request_key(messages, hotter) != base
    assert request_key([{"role": "user", "content": "hi!"}], SAMPLING) != base
    # Weights potstill serves under the model name key the answer too; an endpoint's model keeps its old key.
    first, second = (Sampling(**{**SAMPLING.__dict__, "weights": w}) for w in ('{"digests": 1}', '{"digests": 2}'))
    assert len({request_key(messages, first), request_key(messages, second), base}) == 3
    before = json.dumps({"messages": messages, "model": "m", "temperature": 0.7, "top_p": 0.95, "max_tokens": 16,
                         "logprobs": 4, "seed": 0}, sort_keys=True)
    assert base == hashlib.sha256(before.encode()).hexdigest()  # caches written before `weights` still hit


def fake_teacher():
    calls = []
    lock = threading.Lock()

    def ask(messages):
        with lock:
            calls.append(messages[-1]["content"])
        return {"content": "answer to " + messages[-1]["content"], "finish_reason": "stop",
                "usage": {"prompt_tokens": 3, "completion_tokens": 2}, "logprobs": None}

    return ask, calls


def test_rerun_asks_nothing_and_an_interrupted_run_asks_only_what_is_missing(tmp_path):
    prompts = [{"id": f"p{i}", "prompt": f"question {i}"} for i in range(6)]
    cache = ResponseCache(tmp_path / "cache")
    ask, calls = fake_teacher()

    def flaky(messages):
        if messages[-1]["content"] == "question 3":
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-run
        return ask(messages)

    with pytest.raises(KeyboardInterrupt):
        generate(prompts, flaky, SAMPLING, cache, concurrency=1, progress=False)
    answered_before = len(calls)
    assert 3 <= answered_before < 6  # what finished before the interrupt (a worker may be mid-request)

    results, stats = generate(prompts, ask, SAMPLING, cache, concurrency=2, progress=False)
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 6  # nothing asked twice
    assert stats["cached"] == answered_before and stats["requested"] == 6 - answered_before
    assert [r["record"]["content"] for r in results] == [f"answer to question {i}" for i in range(6)]

    _, stats = generate(prompts, ask, SAMPLING, cache, concurrency=2, progress=False)
    assert stats["requested"] == 0 and len(calls) == 6


def test_too_long_prompts_stop_the_stage_or_are_skipped_and_listed(tmp_path):
    from potstill.teacher.prompts import PromptLimits, read_prompts

    path = write(tmp_path, b'{"id": "ok", "prompt": "hi"}\n{"id": "long", "prompt": "' + b"x" * 4000 + b'"}\n'
                           b'not json\n')
    limits = PromptLimits(max_tokens=160, context_tokens=1024, default_system="Be brief.")
    with pytest.raises(InputError, match=r"prompts.jsonl:2: prompt 'long' is ~1011 tokens \(chars/4\) \+ "
                                         r"teacher.max_tokens 160 > teacher.context_tokens 1024; shorten it"):
        read_prompts(path, limits=limits)
    rows, bad = read_prompts(path, on_bad="skip", limits=limits)
    assert [row["id"] for row in rows] == ["ok"]
    assert [(b["line"], b["id"]) for b in bad] == [(2, "long"), (3, None)]
    assert "not valid JSON" in bad[1]["reason"]
    rows, bad = read_prompts(path, on_bad="skip", limits=PromptLimits(max_tokens=160, max_chars=100))
    assert "teacher.max_prompt_chars 100" in bad[0]["reason"]


# --- reasoning traces, prompt synthesis, the state-dir lock, unmapped API logprobs ----------------

SHIPPED = [
    {"id": "m1", "prompt": "What is 17 times 23?", "domain": "math"},
    {"id": "m2", "prompt": "Is 221 a prime number?", "domain": "math"},
    {"id": "s1", "prompt": "Why is the sky blue during the day?", "domain": "science"},
    {"id": "s2", "prompt": "How does a vaccine train the immune system?", "domain": "science"},
]
TRACE = "Step 1: read the question.\nStep 2: work it out: 17 * 23 = 391.\n391"
NEW_TOPICS = ["How do volcanoes form under the ocean floor?", "What makes a good unit test for a parser?",
              "Describe the water cycle for a ten year old."]


def run_stage(tmp_path, server, prompts_rows, **generate_overrides):
    """Return (exit code and output, responses, metrics) of the generate stage run in-process against `server`."""
    import json

    import yaml
    from typer.testing import CliRunner

    from stages.generate import app

    params = yaml.safe_load(open("params.yaml"))
    params["teacher"].update({"base_url": server.base_url, "max_tokens": 64, "backoff_base_s": 0.01,
                              "backoff_max_s": 0.2})
    params["generate"].update({"n_examples": 0, "concurrency": 1, **generate_overrides})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in prompts_rows))
    out, metrics = tmp_path / "generated", tmp_path / "metrics.json"
    result = CliRunner().invoke(app, ["--params", str(tmp_path / "params.yaml"), "--prompts",
                                      str(tmp_path / "prompts.jsonl"), "--out", str(out), "--metrics", str(metrics)])
    assert result.exit_code == 0, result.output
    responses = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    return result, responses, json.loads(metrics.read_text())


def test_reasoning_asks_for_a_trace_keeps_it_verbatim_and_toggling_back_asks_nothing(tmp_path, monkeypatch):
    from fake_endpoint import FakeOpenAI

    from potstill.params import load_params

    monkeypatch.setenv("POTSTILL_STATE_DIR", str(tmp_path / "state"))
    gen = load_params("params.yaml", "generate")["generate"]
    with_instruction = f"{gen.system_prompt}\n\n{gen.reasoning_instruction}"

    def teacher(messages):
        thinking = messages[0]["role"] == "system" and gen.reasoning_instruction in messages[0]["content"]
        return TRACE if thinking else "391"

    with FakeOpenAI(responder=teacher) as server:
        _, plain, stats = run_stage(tmp_path, server, SHIPPED[:2])
        assert stats["requested"] == 2 and set(server.system_prompts) == {gen.system_prompt}
        _, traced, stats = run_stage(tmp_path, server, SHIPPED[:2], reasoning=True)
        assert stats["requested"] == 2 and server.system_prompts[with_instruction] == 2  # new requests, only these
        assert [r["messages"][-1] for r in traced] == [{"role": "assistant", "content": TRACE}] * 2  # verbatim
        assert traced[0]["messages"][0] == {"role": "system", "content": with_instruction}
        manifest = json.loads((tmp_path / "generated" / "manifest.json").read_text())
        assert manifest["reasoning_instruction"] == gen.reasoning_instruction
        _, again, stats = run_stage(tmp_path, server, SHIPPED[:2], reasoning=False)
        assert stats["requested"] == 0 and again == plain  # toggled back: all from the cache
        _, _, stats = run_stage(tmp_path, server, SHIPPED[:2], reasoning=True)
        assert stats["requested"] == 0 and sum(server.answered.values()) == 4


def synthesis_teacher():
    """Return a fake teacher's responder: synthesis requests get a list with junk, answers get 'ok'."""
    calls = []

    def respond(messages):
        if not messages[-1]["content"].startswith("Write "):
            return "ok"
        calls.append(1)
        return "\n".join([
            "Here are five new prompts:",
            "1. How do tides work?",
            "2.",                                      # empty
            "3. How do tides work",                    # near-duplicate of line 1
            f"4. {SHIPPED[2]['prompt']}",              # a shipped prompt again
            "5. Explain " + "very " * 100 + "slowly.",  # too long (synthesis_max_chars 400)
            f'6. "{NEW_TOPICS[len(calls) - 1]}"',
        ])

    return respond, calls


def test_synthesis_keeps_new_varied_prompts_rejects_the_rest_by_reason_and_answers_them(tmp_path, monkeypatch):
    from fake_endpoint import FakeOpenAI

    monkeypatch.setenv("POTSTILL_STATE_DIR", str(tmp_path / "state"))
    respond, calls = synthesis_teacher()
    with FakeOpenAI(responder=respond) as server:
        result, responses, stats = run_stage(tmp_path, server, SHIPPED, synthesize=3, synthesis_per_request=5)
        synthesized = [json.loads(line) for line in (tmp_path / "generated" / "synth_prompts.jsonl").open()]
        # request 1 gives "How do tides work?" and topic 0; request 2 only topic 1 (the rest repeat)
        assert [row["prompt"] for row in synthesized] == ["How do tides work?", NEW_TOPICS[0], NEW_TOPICS[1]]
        assert all(re.fullmatch(r"synth-[0-9a-f]{12}", row["id"]) for row in synthesized)
        assert [row["domain"] for row in synthesized] == ["math", "math", "science"]  # domains in turn
        assert set(synthesized[0]["synthesized_from"]) <= {"m1", "m2"}
        assert stats["synthesis"] == {
            "target": 3, "requests": 2, "asked": 10, "candidates": 14, "accepted": 3, "unused": 0,
            "rejected": {"empty": 2, "preamble": 2, "truncated": 0, "too_long": 2, "near_duplicate_of_shipped": 2,
                         "near_duplicate_of_synthesized": 3}}
        assert [r["id"] for r in responses] == [row["id"] for row in SHIPPED + synthesized]
        assert all(server.answered[row["prompt"]] == 1 for row in synthesized)
        assert stats["ledger"]["requests"] == 2 + 7 and "3 prompts synthesized" in result.output
        before = (tmp_path / "generated" / "synth_prompts.jsonl").read_bytes()
        _, _, stats = run_stage(tmp_path, server, SHIPPED, synthesize=3, synthesis_per_request=5)
        assert stats["ledger"]["requests"] == 0 and len(calls) == 2  # a rerun asks nothing
        assert (tmp_path / "generated" / "synth_prompts.jsonl").read_bytes() == before


def test_synthesis_requests_are_deterministic_and_the_template_is_checked():
    from potstill.teacher.synth import synthesis_request

    gen = shipped("generate", n_examples=0, concurrency=1, synthesis_examples=1)
    seeds = {"math": SHIPPED[:2], "science": SHIPPED[2:]}
    first = [synthesis_request(i, seeds, gen) for i in range(4)]
    assert first == [synthesis_request(i, seeds, gen) for i in range(4)]
    assert [r["domain"] for r in first] == ["math", "science", "math", "science"]
    assert "about math" in first[0]["prompt"] and len(first[0]["seeds"]) == 1
    assert f"- {SHIPPED[int(first[0]['seeds'][0][1]) - 1]['prompt']}\n" in first[0]["prompt"]
    with pytest.raises(ValueError, match="only the placeholders"):
        shipped("generate", n_examples=0, concurrency=1, synthesis_instruction="Write {count} prompts")


def test_a_second_holder_of_the_state_lock_is_refused_naming_file_and_pid(tmp_path):
    import os

    from potstill.errors import LockHeld
    from potstill.teacher.locks import exclusive_lock

    path = tmp_path / "generate.lock"
    with exclusive_lock(path, "generate"):
        with pytest.raises(LockHeld) as err, exclusive_lock(path, "generate", wait_s=0.2):
            pass
        assert str(path) in str(err.value) and f"PID {os.getpid()}" in str(err.value)
        assert "POTSTILL_STATE_DIR" in str(err.value)
    with exclusive_lock(path, "generate"):  # released on exit: the next run gets it
        pass


def test_top_k_alternatives_that_map_to_no_token_are_counted(tokenizer):
    from potstill.distill.api_targets import align_api_logprobs, token_string_index
    from potstill.distill.kd import MISSING_LOGPROB

    text = "The sky is blue."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    nonsense = " qzxqzxqzxqzxqzx"  # decodes from no single token
    tokens = [{"token": tokenizer.decode([i]), "logprob": -0.1,
               "top": [[tokenizer.decode([i]), -0.1], [nonsense, -2.0], ["\ufffd", -3.0]]} for i in ids]
    counts: dict = {}
    kd_ids, kd_logprobs = align_api_logprobs(tokenizer, text, tokens, token_string_index(tokenizer), k=3,
                                             counts=counts)
    assert counts == {"top_alternatives": 3 * len(ids), "top_alternatives_unmapped": 2 * len(ids)}
    assert [row[0] for row in kd_ids] == ids and all(row[1:] == [MISSING_LOGPROB] * 2 for row in kd_logprobs)


def test_load_api_soft_targets_reports_the_unmapped_count(tokenizer, tmp_path, capsys):
    from potstill.distill.api_targets import load_api_soft_targets

    text = "Blue."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    tokens = [{"token": tokenizer.decode([i]), "logprob": -0.1,
               "top": [[tokenizer.decode([i]), -0.1], [" qzxqzxqzxqzxqzx", -2.0]]} for i in ids]
    row = {"id": "r1", "messages": [{"role": "user", "content": "Colour?"}, {"role": "assistant", "content": text}]}
    (tmp_path / "responses.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "logprobs.jsonl").write_text(json.dumps({"id": "r1", "tokens": tokens}) + "\n")
    targets, stats = load_api_soft_targets(tokenizer, tmp_path, k=2)
    assert stats == {"rows_aligned": 1, "rows_misaligned": 0, "top_alternatives": 2 * len(ids),
                     "top_alternatives_unmapped": len(ids)}
    assert set(targets) == {"r1"} and f"{len(ids)} of {2 * len(ids)} top-k alternatives" in capsys.readouterr().err
