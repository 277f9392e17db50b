"""Curation flags the right rows for the right reasons and splits deterministically."""

from potstill.curate import flag_rows, report, report_markdown, split_rows


def row(i, reply, domain="d1", finish="stop", prompt=None):
    return {"id": f"r{i}", "domain": domain, "finish_reason": finish,
            "messages": [{"role": "user", "content": prompt or f"question {i}"},
                         {"role": "assistant", "content": reply}]}


def test_flags_empty_short_truncated_and_duplicates():
    rows = [row(0, "A fine answer."), row(1, "  "), row(2, "k"), row(3, "cut off", finish="length"),
            row(4, "A  FINE answer.", prompt="question 0")]
    reasons = flag_rows(rows, min_response_chars=2, drop_truncated=True)
    assert reasons == [[], ["empty"], ["too_short"], ["truncated"], ["duplicate"]]
    assert flag_rows(rows, 2, drop_truncated=False)[3] == []


def test_split_is_deterministic_disjoint_and_stratified():
    rows = [row(i, "x", domain=f"d{i % 3}") for i in range(60)]
    a = split_rows(rows, 0.1, 0.2, seed=0)
    b = split_rows(list(reversed(rows)), 0.1, 0.2, seed=0)
    assert {k: [r["id"] for r in v] for k, v in a.items()} == {k: [r["id"] for r in v] for k, v in b.items()}
    ids = [r["id"] for part in a.values() for r in part]
    assert len(ids) == len(set(ids)) == 60
    assert (len(a["test"]), len(a["val"])) == (12, 6)
    assert {r["domain"] for r in a["test"]} == {"d0", "d1", "d2"}
    assert split_rows(rows, 0.1, 0.2, seed=1)["test"] != a["test"]


def test_report_counts_and_markdown():
    rows = [row(0, "ok answer"), row(1, ""), row(2, "")]
    reasons = flag_rows(rows, 2, True)
    figures = report(rows, reasons, split_rows([rows[0]], 0, 0, 0))
    assert figures["kept"] == 1 and figures["dropped"] == {"empty": 2}
    assert "| empty | 2 | r1, r2 |" in report_markdown(figures)
