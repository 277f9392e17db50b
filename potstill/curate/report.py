"""The curation report: counts per reason, examples, and a markdown page a person can skim."""

from __future__ import annotations

from collections import Counter, defaultdict

from potstill.curate.filters import response_text

# Below this many training examples a student memorizes rather than generalizes (DESIGN.md).
MEMORIZE_BELOW = 500


class CurationReport:
    """Counts per reason and the first few examples of each, gathered as rows stream past."""

    def __init__(self, examples_per_reason: int = 3):
        self.rows_in = 0
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self.examples: dict[str, list[dict]] = defaultdict(list)
        self.examples_per_reason = examples_per_reason

    def add(self, row: dict, why: dict[str, str]) -> None:
        """Count one row with its reasons (empty = kept)."""
        self.rows_in += 1
        self.kept += not why
        for reason, detail in why.items():
            self.dropped[reason] += 1
            if len(self.examples[reason]) < self.examples_per_reason:
                self.examples[reason].append(
                    {"id": row["id"], "detail": detail, "response": response_text(row)[:160]})

    def figures(self, split_sizes: dict[str, int], warnings: list[str], near_misses: list[dict] = ()) -> dict:
        """Return the report: rows in, kept, rows dropped and rows per reason, examples, split sizes, near misses."""
        return {
            "near_misses": list(near_misses),
            "rows_in": self.rows_in,
            "kept": self.kept,
            "dropped_rows": self.rows_in - self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "split": split_sizes,
            "examples": dict(sorted(self.examples.items())),
            "warnings": warnings,
        }


def size_warning(kept: int) -> str | None:
    """Return a warning when too few rows are kept for the student to generalize, else None."""
    if kept >= MEMORIZE_BELOW:
        return None
    return (f"only {kept} examples kept (< {MEMORIZE_BELOW}): the student will memorize them rather "
            "than generalize; generate more (generate.n_examples) or loosen the curate filters")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report_markdown(figures: dict) -> str:
    """Return the curation report as markdown tables a person can skim."""
    lines = [
        "# Curation report", "",
        f"{figures['rows_in']} rows in, {figures['kept']} kept, {figures['dropped_rows']} dropped "
        "(a row can fail several checks).", "",
    ]
    lines += [f"**Warning:** {w}" for w in figures.get("warnings", [])]
    lines += ["", "| reason | rows | examples (id: why) |", "|---|---|---|"]
    for reason, count in figures["dropped"].items():
        shown = "<br>".join(f"{e['id']}: {_cell(e['detail'])}" for e in figures["examples"].get(reason, []))
        lines.append(f"| {reason} | {count} | {shown} |")
    lines += ["", "| split | rows |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in figures["split"].items()]
    near = figures.get("near_misses") or []
    if near:
        lines += ["", f"## Near misses ({len(near)}): kept, but close to an eval item", "",
                  "Check these by eye; `curate.decontam_*` sets what counts as contamination.", "",
                  "| row | closest eval item |", "|---|---|"]
        lines += [f"| {entry['id']} | {_cell(entry['detail'])} |" for entry in near]
    return "\n".join(lines) + "\n"
