"""The experiment table: fits 120 columns, shows what changed and the headline, marks the best."""

from __future__ import annotations

from potstill.evaluation.compare import compare_table, flatten


def run(name, r, lr, mc, kl, loops, **params):
    summary = {"merged": {"potstill_mc": mc, "potstill_gen": 0.01, "kl_vs_teacher": kl, "top1_vs_teacher": 0.35,
                          "degenerate_share": loops, "size_mb": 310.6, "ms_per_token": 62.2},
               "gguf-q8_0": {"potstill_mc": mc - 0.01, "kl_vs_teacher": kl + 0.01}}
    return {"name": name, "params": flatten({"lora": {"r": r}, "train": {"learning_rate": lr, "seed": 0}, **params}),
            "summary": summary}


def test_rows_changed_params_headline_and_best_marks():
    rows = [run("workspace", 16, 2e-4, 0.639, 2.04, 0.23), run("rank8", 8, 2e-4, 0.612, 2.31, 0.30),
            run("lr-high", 16, 5e-4, 0.655, 1.98, 0.27)]
    table = compare_table(rows)
    lines = table.splitlines()
    header = lines[0].split()
    assert header == ["experiment", "lora.r", "train.learning_rate", "mc", "gen", "KL", "top1", "loops", "MiB",
                      "ms/tok"]  # unchanged params (train.seed) are not columns
    assert max(len(line) for line in lines) <= 120
    by_name = {line.split()[0]: line.split() for line in lines[1:4]}
    assert by_name["lr-high"][3] == "0.655*" and by_name["lr-high"][5] == "1.98*"  # best accuracy, lowest KL
    assert by_name["workspace"][7] == "0.23*"  # fewest loops
    assert by_name["rank8"][3] == "0.612" and lines[-1].startswith("metrics of merged")
    quantized = compare_table(rows, model="gguf-q8_0").splitlines()
    assert quantized[3].split()[3] == "0.645*" and "metrics of gguf-q8_0" in quantized[-1]


def test_many_changed_params_are_cut_to_fit_and_counted():
    rows = [run(f"exp-{i}", i, 1e-4 * (i + 1), 0.6, 2.0, 0.2,
                **{"kd": {f"knob_{j}": i * j for j in range(12)}}) for i in range(3)]
    table = compare_table(rows, width=100)
    assert max(len(line) for line in table.splitlines()) <= 100
    assert "more changed params: dvc exp show --only-changed" in table.splitlines()[-1]
    assert table.splitlines()[0].split()[-7:] == ["mc", "gen", "KL", "top1", "loops", "MiB", "ms/tok"]


def test_the_plot_draws_every_runs_curve_and_bars(tmp_path):
    from potstill.evaluation.compare import compare_plot

    rows = [run("workspace", 16, 2e-4, 0.639, 2.04, 0.23), run("rank8", 8, 2e-4, 0.612, 2.31, 0.30)]
    compare_plot(rows, {"workspace": ([1, 2, 3], [2.0, 1.5, 1.2]), "rank8": ([1, 2, 3], [2.1, 1.7, 1.4])}, "merged",
                 tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_fields_that_are_not_columns_are_not_taken_for_task_scores():
    from potstill.evaluation.compare import _task_columns

    rows = [{"summary": {"merged": {"potstill_mc": 0.6, "potstill_gen": 0.1, "kl_vs_teacher": 2.0,
                                    "onpolicy_kl": 1.9, "answer_tokens_vs_teacher": 1.1}}}]
    assert [title for _, title, _ in _task_columns(rows, "merged")] == ["mc", "gen"]
