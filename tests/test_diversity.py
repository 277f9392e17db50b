"""Diversity measures on hand-made inputs, and the shipped prompt set against its quality bar."""

import importlib.util
import json
from itertools import combinations
from pathlib import Path

import pytest

from potstill.teacher.diversity import (
    distinct_ngram_ratio,
    diversity_report,
    domain_counts,
    jaccard,
    near_duplicate_pairs,
    shingles,
    tokenize,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED_PROMPTS = REPO / "data" / "prompts.jsonl"
# Measured 0.956 on the shipped set (394 prompts); a little slack so rewording a prompt or two
# does not fail the suite, while a batch of templated prompts would.
MIN_DISTINCT_3GRAM_RATIO = 0.93


def test_tokenize_lowercases_and_strips_punctuation():
    assert tokenize("Don't STOP, now! x_1 (ok)") == ["dont", "stop", "now", "x_1", "ok"]


def test_distinct_ratio_of_a_repeated_text_is_low():
    assert distinct_ngram_ratio(["the cat sat on the mat"] * 10) == pytest.approx(4 / 40)


def test_distinct_ratio_of_unrelated_texts_is_one():
    texts = ["the cat sat on the mat", "a dog ran across a field", "why is the sky blue"]
    assert distinct_ngram_ratio(texts) == 1.0


def test_distinct_ratio_does_not_join_texts_and_handles_no_ngrams():
    # "a b" + "c" would make the 3-gram (a, b, c) if texts were concatenated.
    assert distinct_ngram_ratio(["a b", "c"]) == 0.0
    assert distinct_ngram_ratio([]) == 0.0
    assert distinct_ngram_ratio(["a b a b"], n=1) == pytest.approx(2 / 4)


def test_near_duplicate_pair_is_found_and_unrelated_text_is_not():
    texts = [
        "Write a Python function that reverses a string without using slicing.",
        "Why is the sky blue on a clear day?",
        "Write a Python function that reverses a list without using slicing.",
    ]
    pairs = near_duplicate_pairs(texts, threshold=0.5)  # at or above the threshold counts
    assert [(i, j) for i, j, _ in pairs] == [(0, 2)]
    # 11 words make 9 shingles each; "string" vs "list" breaks 3, so 6 shared of 12 in the union.
    assert pairs[0][2] == pytest.approx(6 / 12)
    assert near_duplicate_pairs(texts, threshold=0.51) == []


def test_identical_short_texts_are_duplicates_and_empty_texts_are_not():
    texts = ["Hello there!", "hello, THERE", "", "   "]
    assert near_duplicate_pairs(texts) == [(0, 1, 1.0)]
    assert shingles("Hello there!") == {("hello", "there")}


def test_near_duplicate_pairs_match_brute_force():
    texts = [
        "how do I keep a sourdough starter alive",
        "how do I keep kitchen knives sharp",
        "how do I keep a conversation going",
        "what is the capital of australia",
        "what is the capital of canada",
        "what is the capital of kenya please",
        "name the seven continents",
    ]
    for threshold in (0.1, 0.3, 0.5):
        expected = {
            (i, j, jaccard(shingles(texts[i]), shingles(texts[j])))
            for i, j in combinations(range(len(texts)), 2)
        }
        expected = {pair for pair in expected if pair[2] >= threshold}
        assert set(near_duplicate_pairs(texts, threshold=threshold)) == expected
    assert near_duplicate_pairs(texts)[0][:2] == (3, 4)  # 3 of 5 shingles shared: the top pair


def test_near_duplicate_pairs_rejects_a_meaningless_threshold():
    with pytest.raises(ValueError, match="threshold=0"):
        near_duplicate_pairs(["a b c"], threshold=0)


def test_domain_counts_and_report():
    rows = [
        {"id": "a", "prompt": "What is the capital of Australia?", "domain": "factual"},
        {"id": "b", "prompt": "What is the capital of Australia, please?", "domain": "factual"},
        {"id": "c", "prompt": "Write a haiku about snow.", "domain": "writing"},
        {"id": "d", "prompt": "Say hi."},
    ]
    assert domain_counts(rows) == {"factual": 2, "(none)": 1, "writing": 1}
    report = diversity_report(rows)
    assert report["n_prompts"] == 4
    assert report["near_duplicate_pairs"] == 1
    assert report["near_duplicates"] == [{"a": "a", "b": "b", "jaccard": 0.8}]
    json.dumps(report)  # JSON-ready for metrics files


@pytest.fixture(scope="module")
def shipped_rows():
    with SHIPPED_PROMPTS.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def test_shipped_prompts_are_well_formed(shipped_rows):
    assert len(shipped_rows) >= 300
    ids = [row["id"] for row in shipped_rows]
    assert len(ids) == len(set(ids)), "duplicate ids"
    for row in shipped_rows:
        assert isinstance(row["prompt"], str) and row["prompt"].strip(), row["id"]
        assert row["id"].startswith(f"{row['domain']}-"), row["id"]
        assert isinstance(row.get("system", ""), str), row["id"]


def test_shipped_prompts_cover_the_domains(shipped_rows):
    counts = domain_counts(shipped_rows)
    assert len(counts) >= 6
    assert all(count >= 30 for count in counts.values()), counts


def test_shipped_math_prompts_have_integer_answers(shipped_rows):
    math_rows = [row for row in shipped_rows if row["domain"] == "math"]
    assert math_rows
    for row in math_rows:
        assert isinstance(row.get("answer"), str), f"{row['id']} has no answer"
        int(row["answer"])  # a checkable integer


def test_shipped_prompts_are_diverse(shipped_rows):
    report = diversity_report(shipped_rows, threshold=0.5)
    assert report["near_duplicates"] == []
    assert report["distinct_3gram_ratio"] > MIN_DISTINCT_3GRAM_RATIO


def _bench_module():
    typer = pytest.importorskip("typer")
    path = REPO / "bench" / "prompt_diversity.py"
    spec = importlib.util.spec_from_file_location("prompt_diversity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = typer.Typer()
    app.command()(module.main)
    return module, app


def test_bench_cli_writes_json_and_fails_on_near_duplicates(tmp_path):
    module, app = _bench_module()  # skips without typer
    from typer.testing import CliRunner

    runner = CliRunner()

    out = tmp_path / "report.json"
    result = runner.invoke(app, [str(SHIPPED_PROMPTS), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "distinct 3-gram ratio" in result.output
    assert json.loads(out.read_text())["near_duplicate_pairs"] == 0

    clashing = tmp_path / "clashing.jsonl"
    clashing.write_text(
        '{"id": "x-1", "prompt": "What is the capital of Australia?", "domain": "x"}\n'
        '{"id": "x-2", "prompt": "What is the capital of Australia again?", "domain": "x"}\n'
    )
    result = runner.invoke(app, [str(clashing)])
    assert result.exit_code == 1
    assert "x-1 ~ x-2" in result.output

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "ok", "prompt": "fine"}\n{not json}\n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not valid JSON"):
        module.read_prompt_rows(broken)
