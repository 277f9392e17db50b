"""Prompt validation, content-addressed cache keys, and 'never pay twice' in the generate loop."""

import threading

import pytest

from potstill.io import InputError
from potstill.teacher import ResponseCache, Sampling, balanced_subset, generate, load_prompts, request_key

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
    from potstill.teacher import PromptLimits, read_prompts

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
