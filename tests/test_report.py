"""Static report: PNG charts that render offline and a markdown page that embeds them."""

import json

from potstill.evaluation.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_eval(nll: float) -> dict:
    return {"potstill_mc": {"acc": 0.4, "acc_stderr": 0.05}, "potstill_gen": {"exact_match": 0.25},
            "heldout_nll": nll}


def test_report_writes_valid_pngs_and_markdown_that_links_them(tmp_path):
    eval_json = tmp_path / "eval.json"
    eval_json.write_text(json.dumps({"teacher": fake_eval(3.3), "student_base": fake_eval(14.2),
                                     "merged": fake_eval(7.7), "quantized": fake_eval(7.8)}))
    curves = tmp_path / "plots" / "metrics"
    (curves / "eval").mkdir(parents=True)
    (curves / "ce_loss.tsv").write_text("step\tce_loss\n0\t9.1\n1\t8.7\n2\t8.2\n")
    (curves / "kd_loss.tsv").write_text("step\tkd_loss\n0\t16.9\n1\t16.8\n2\t15.0\n")
    (curves / "eval" / "kd_loss.tsv").write_text("step\teval/kd_loss\n2\t15.5\n")

    written = write_report(json.loads(eval_json.read_text()), tmp_path / "reports", curves)

    pngs = sorted(path.name for path in written if path.suffix == ".png")
    assert pngs == ["overall_heldout_nll.png", "potstill_gen_exact_match.png", "potstill_mc_acc.png",
                    "train_losses.png"]  # only metrics some model has get a chart
    markdown = (tmp_path / "reports" / "eval.md").read_text()
    for name in pngs:
        png = tmp_path / "reports" / "plots" / name
        assert png.read_bytes()[:8] == PNG_MAGIC, name
        assert f"(plots/{name})" in markdown, name
    assert "| merged | 0.4000 ± 0.0500 | 0.2500 | 7.7000 |  |" in markdown


def test_report_without_loss_curves_or_a_metric_still_draws(tmp_path):
    report = {"teacher": fake_eval(3.3), "merged": {"heldout_nll": 7.0}}  # merged: no lm-eval scores
    written = write_report(report, tmp_path / "reports", tmp_path / "missing")
    assert not (tmp_path / "reports" / "plots" / "train_losses.png").exists()
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in written if path.suffix == ".png")
    markdown = (tmp_path / "reports" / "eval.md").read_text()
    assert "No DVCLive loss curves found" in markdown and "| merged | n/a | n/a | 7.0000 |" in markdown


def full_record(acc: float, nll: float, size_mb: float, answer: str) -> dict:
    return {**fake_eval(nll), "potstill_mc": {"acc": acc, "acc_stderr": 0.03}, "kl_vs_teacher": nll - 1.2,
            "top1_vs_teacher": 0.6, "ece": 0.1, "size_mb": size_mb, "ms_per_token": 20.0, "tokens_per_s": 50.0,
            "samples": [{"prompt": "What is 2+2?", "answer": answer},
                        {"prompt": "Name a colour.", "answer": "Red|blue"}]}


def test_report_puts_every_model_and_format_side_by_side_with_samples_gates_and_the_embedding_note(tmp_path):
    from potstill.evaluation.gates import GateResult

    report = {"teacher": full_record(0.79, 1.26, 517.0, "4"), "student_base": full_record(0.29, 14.3, 243.0, "22"),
              "adapter": {"heldout_nll": 7.59, "kl_vs_teacher": 6.4, "top1_vs_teacher": 0.5},
              "merged": full_record(0.30, 7.59, 243.0, "four"), "quanto-int8": full_record(0.30, 7.60, 142.0, "four"),
              "gguf-q8_0": full_record(0.29, 7.61, 66.0, "Four\nlines"),
              "gates": {"merge_exact": {"passed": 1, "value": 0.0}}}
    gates = [GateResult("merge_exact", True, 0.0, "gate merge_exact: heldout_nll of merged vs adapter: ok")]
    written = write_report(report, tmp_path / "reports", None, gates=gates, formats=["quanto-int8", "gguf-q8_0"])
    names = {path.name for path in written}
    for chart in ("overall_kl_vs_teacher.png", "overall_top1_vs_teacher.png", "overall_ece.png",
                  "overall_ms_per_token.png", "overall_size_mb.png", "potstill_mc_acc.png"):
        assert chart in names, names
    markdown = (tmp_path / "reports" / "eval.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:7]] == ["| teacher", "| student_base", "| adapter", "| merged",
                                                         "| quanto-int8", "| gguf-q8_0"]
    assert all(row.count(" | ") == rows[0].count(" | ") for row in rows[1:7])  # no stray pipes in labels
    assert "| gguf-q8_0 | Four <br> lines |" in markdown and "Red\\|blue" in markdown
    assert "tied embedding" in markdown and "| merge_exact | pass |" in markdown
    assert "gates" not in [row.split(" | ")[0].strip("| ") for row in rows]


def test_the_report_opens_with_a_plain_verdict_on_the_student(tmp_path):
    def model(acc, degenerate, kl, words=30):
        return {"potstill_mc": {"acc": acc}, "degenerate_share": degenerate, "answer_words": words,
                "kl_vs_teacher": kl, "ci95": {"degenerate_share": [degenerate / 2, degenerate * 1.5],
                                              "kl_vs_teacher": [kl * 0.9, kl * 1.1]}, "engine": "transformers (cpu)"}

    teacher = model(0.79, 0.07, 0.0)
    looping = {"teacher": teacher, "student_base": model(0.52, 0.6, 5.3), "merged": model(0.64, 0.23, 2.0, 45)}
    write_report(looping, tmp_path / "a")
    text = (tmp_path / "a" / "eval.md").read_text()
    head = text[:text.index("## Every model")]
    assert "**Not yet usable as a stand-in for the teacher:**" in head
    assert "23% of its answers loop (> 10%)" in head and "potstill_mc acc 0.640 is below 90% of the teacher's" in head
    assert "Greedy answers that loop: **23%** (95% CI 12%-34%) for the student, 7% for the teacher" in head
    assert "62% of the gap closed" in head
    assert "| merged | 0.6400 | 2.0000 [1.800, 2.200] |" in text and "| transformers (cpu) |" in text
    good = {"teacher": teacher, "merged": model(0.75, 0.05, 0.5)}
    write_report(good, tmp_path / "b")
    assert "**Usable:**" in (tmp_path / "b" / "eval.md").read_text()


def test_the_report_breaks_task_scores_down_by_category(tmp_path):
    def model(items):
        return {"potstill_mc": {"acc": sum(items) / len(items)}, "items": {"potstill_mc": {"acc": items}},
                "categories": {"potstill_mc": ["capital", "capital", "antonym", "capital"]}}

    write_report({"teacher": model([1.0, 1.0, 0.0, 1.0]), "merged": model([1.0, 0.0, 1.0, 0.0])}, tmp_path)
    text = (tmp_path / "eval.md").read_text()
    assert "### potstill_mc acc by category" in text and "| model | antonym (1) | capital (3) |" in text
    assert "| teacher | 0.0000 | 1.0000 |" in text and "| merged | 1.0000 | 0.3333 |" in text
