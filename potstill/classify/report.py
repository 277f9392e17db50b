"""The classifier's evaluation report: the teacher first, then every model side by side, targets, gates."""

from __future__ import annotations

MODEL_NOTES = {
    "teacher": "the LLM labeller itself (its first-token label distribution)",
    "majority": "always the teacher's most frequent training label",
    "tfidf_logreg": "TF-IDF (1-2 grams) + logistic regression on the teacher's labels",
    "student_hard": "encoder trained on the teacher's argmax labels",
    "student_soft": "encoder trained on the teacher's distributions (KD)",
    "onnx_int8": "student_soft exported to ONNX, int8 weights (onnxruntime)",
}


def _fmt(scores: dict, key: str) -> str:
    value = scores["gold"].get(key)
    if value is None:
        return "-"
    low, high = scores["ci95"][key]
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def targets(results: dict, speeds: dict) -> list[tuple[str, bool, str]]:
    """Return (target, met, measured) for the targets the issue sets, measured in this run."""
    teacher, soft, hard = results["teacher"]["gold"], results["student_soft"]["gold"], results["student_hard"]["gold"]
    tfidf, onnx = results["tfidf_logreg"]["gold"], results["onnx_int8"]["gold"]
    ratio = speeds["onnx_int8"]["items_per_s"] / speeds["teacher"]["items_per_s"]
    return [
        ("student agrees with the teacher on >= 90% of gold texts", soft["agree"] >= 0.90, f"{soft['agree']:.3f}"),
        ("... and more than the TF-IDF baseline does", soft["agree"] > tfidf["agree"],
         f"{soft['agree']:.3f} vs {tfidf['agree']:.3f}"),
        ("student accuracy within 3 points of the teacher's", soft["acc"] >= teacher["acc"] - 0.03,
         f"{soft['acc']:.3f} vs {teacher['acc']:.3f}"),
        ("soft-label student ECE below the hard-label student's", soft["ece"] < hard["ece"],
         f"{soft['ece']:.3f} vs {hard['ece']:.3f}"),
        ("ONNX int8 >= 100x the teacher's items/s", ratio >= 100, f"{ratio:.0f}x"),
        ("... at <= 1 point accuracy loss", onnx["acc"] >= soft["acc"] - 0.01,
         f"{onnx['acc']:.3f} vs {soft['acc']:.3f}"),
    ]


def eval_markdown(results: dict, speeds: dict, gate_results: list, per_label: dict, n_gold: int,
                  unlabelled_by_teacher: int) -> str:
    """Return reports/classify/eval.md."""
    teacher, soft = results["teacher"]["gold"], results["student_soft"]["gold"]
    met = targets(results, speeds)
    lines = [
        "# Classifier distillation: evaluation on the gold set", "",
        f"**The teacher's own accuracy on the {n_gold} gold labels: {_fmt(results['teacher'], 'acc')}** "
        f"(macro-F1 {teacher['macro_f1']:.3f}). Agreement with the teacher is only worth what the teacher is: "
        "read it beside this figure.", "",
        f"**Is the student usable?** The soft-label student is right on {soft['acc']:.1%} of gold texts "
        f"(teacher {teacher['acc']:.1%}) and says what the teacher says on {soft['agree']:.1%}; its ONNX int8 "
        f"export classifies {speeds['onnx_int8']['items_per_s']:.0f} texts/s on this CPU against the teacher's "
        f"{speeds['teacher']['items_per_s']:.1f}. {sum(ok for _, ok, _ in met)} of {len(met)} targets met (below).",
        "",
        "| model | accuracy | macro-F1 | agreement with teacher | ECE | items/s (batch) |",
        "|---|---|---|---|---|---|",
    ]
    for name, scores in results.items():
        speed = speeds.get(name)
        rate = f"{speed['items_per_s']:.1f} ({speed['batch_size']})" if speed else "-"
        agree = "-" if name == "teacher" else _fmt(scores, "agree")
        lines.append(f"| {name} | {_fmt(scores, 'acc')} | {_fmt(scores, 'macro_f1')} | {agree} | "
                     f"{_fmt(scores, 'ece')} | {rate} |")
    lines += ["", "95% intervals: bootstrap over gold texts. items/s: texts classified per second end to end "
              "(tokenising included) on this machine's CPU; the teacher: one labelling request per text through "
              "its server, sequential.", ""]
    lines += [f"- **{name}**: {note}" for name, note in MODEL_NOTES.items()]
    if unlabelled_by_teacher:
        lines += ["", f"The teacher put no mass on any label for {unlabelled_by_teacher} gold texts; they count as its "
                  "first label (usually wrong)."]
    lines += ["", "## Targets (measured in this run)", "", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {what} | {'yes' if ok else '**no**'} | {value} |" for what, ok, value in met]
    lines += ["", "## Accuracy per gold label", "", "| label | gold texts | teacher | student_soft |",
              "|---|---|---|---|"]
    lines += [f"| {label} | {row['n']} | {row['teacher']:.3f} | {row['student_soft']:.3f} |"
              for label, row in per_label.items()]
    lines += ["", "## Gates", ""]
    for result in gate_results:
        mark = "warn" if result.warning else ("pass" if result.passed else "FAIL")
        lines.append(f"- {mark}: {result.message}")
    lines += ["", "![reliability](reliability.png)", ""]
    return "\n".join(lines)
