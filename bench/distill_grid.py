"""Distillation experiment grid: which student, method and KD settings make the default good.

Runs on the outputs of a default `dvc repro` (models/teacher, data/curated, data/generated,
data/soft-targets). Every configuration trains through the real train stage (stages/train.py in
a subprocess, the same code `dvc repro` runs), then is measured on the validation split (choices are
made on val; the test split is reported once, by the evaluate stage or, for an on-policy arm
chosen here, by bench/report_chosen.py, and never opened here):

- KL(teacher || student) at T=1 over the full vocabulary, NLL of the teacher's tokens and top-1
  agreement with the teacher, on assistant tokens only;
- degenerate share: greedy answers (no repetition penalty, up to 128 new tokens) to the validation
  prompts whose repeated word 3-gram ratio exceeds 0.5.

One JSON row per configuration is appended to bench/results/distill_grid_val.jsonl, with 95%
bootstrap intervals over the validation prompts (the untrained students go to
distill_grid_val_before.jsonl); a configuration already in the file is skipped, so a killed grid
resumes where it stopped. Run it in the background and read the table when you like:

    nohup .venv/bin/python bench/distill_grid.py run --grid default-on-val > grid.log 2>&1 &
    .venv/bin/python bench/distill_grid.py table
    .venv/bin/python bench/distill_grid.py probe-layers     # untrained students only, no training

The data-size grid runs in a project built with the large profile (every shipped prompt plus
synthesized ones, rows split by id hash). It trains the default student on the rows of the default
run's own prompts only (`data: "shipped:360"`: the same ids, so the same split as a default run on
the hash split) and on every training row, at equal steps, and measures both, and the profile's
own model, on that project's val split, which none of them trained on:

    .venv/bin/python bench/distill_grid.py run --grid data-size --out bench/results/data_size_val.jsonl \
        --also models/merged

The on-policy campaign (`run-onpolicy`, `table-onpolicy`) starts from the default off-policy
student (models/merged) and continues it through the real train stage with `train.max_steps: 0`
and `onpolicy.steps` more steps: lmbda 0 (more KD steps on teacher text, the control at equal
steps), mixed, and on-policy only. Each row also has the on-policy KL on the model's own greedy
answers (stopped at end-of-turn), answer length against the teacher's, 95% bootstrap intervals
over the validation prompts, the tokens each arm processed (student training, student sampling,
teacher scoring) and its minutes:

    nohup .venv/bin/python bench/distill_grid.py run-onpolicy > onpolicy.log 2>&1 &
    .venv/bin/python bench/distill_grid.py table-onpolicy
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import torch
import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from potstill.evaluation.metrics import distill_metrics, heldout_rows, hf_logits_fn, teacher_logprobs  # noqa: E402
from potstill.io import read_jsonl  # noqa: E402
from potstill.models import LAYER_MAP_FILE, load_checked, prune_layers, save_model  # noqa: E402
from potstill.teacher.prompts import balanced_subset, load_prompts  # noqa: E402
from potstill.text import DEGENERATE_RATIO, repeated_ngram_ratio  # noqa: E402

RESULTS = ROOT / "bench" / "results"
WORK = RESULTS / "grid"
MAX_NEW_TOKENS = 128
# Every choice the grid informs is made on this split; the test split is for evaluate alone.
SELECTION_SPLIT = ROOT / "data/curated/val.jsonl"

EVERY_THIRD = list(range(0, 30, 3))
# Named layer choices (the teacher has 30). Deep layers of small llamas are the most redundant
# (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers"): keeping the
# first layers and the last one usually starts closer to the teacher than keeping every k-th.
LAYER_SETS = {
    "every3_10": EVERY_THIRD,
    "every2_15": list(range(0, 30, 2)),
    "first9_last1": [*range(9), 29],
    "first14_last1": [*range(14), 29],
    "first12_last3": [*range(12), 27, 28, 29],
    "first8_mid_last2": [*range(8), 12, 16, 20, 24, 28, 29][:15],
    "first10_last5": [*range(10), *range(25, 30)],
    "first7_last8": [*range(7), *range(22, 30)],
    "first5_last5": [*range(5), *range(25, 30)],
    "first4_mid_last4": [0, 1, 2, 3, 9, 16, 26, 27, 28, 29],
    "first6_mid_last6": [0, 1, 2, 3, 4, 5, 12, 18, 24, 25, 26, 27, 28, 29][:15],
}

BASE = {"layers": "every3_10", "method": "lora", "lr": 2e-4, "steps": 150, "source": "local", "top_k": 64,
        "temperature": 2.0, "alpha": 0.5, "loss": "forward_kl", "hidden_weight": 0.0, "lora_r": 16}
# The default student of params.yaml (chosen on val by "default-on-val" below).
DEFAULT_STUDENT = {"layers": "first7_last8", "method": "full", "lr": 4e-4, "temperature": 1.0, "alpha": 0.9}
GRIDS = {
    # The starting point and its SFT twin (alpha 0 = cross-entropy on the teacher's tokens only),
    # then the best untrained layer choice (probe-layers) with LoRA and with full fine-tuning.
    "campaign": [
        {},
        {"layers": "first7_last8", "method": "full", "lr": 1e-4, "temperature": 1.0, "alpha": 0.9},
        {"layers": "first7_last8", "method": "full", "lr": 1e-4, "alpha": 0.0},
        {"layers": "first7_last8", "method": "full", "lr": 2e-4, "temperature": 1.0, "alpha": 0.9},
        {"layers": "first7_last8", "method": "full", "lr": 2e-4, "alpha": 0.0},
        {"layers": "first7_last8", "temperature": 1.0, "alpha": 0.9},
        {"alpha": 0.0},
        {"layers": "first7_last8", "method": "full", "lr": 1e-4, "temperature": 2.0, "alpha": 0.5},
    ],
    # The default's choices re-made on val (the campaign above was measured on test): the default
    # (KD, lr 2e-4), the learning rate halved and doubled, and its SFT twin. The rule, fixed before
    # the run: the lowest validation KL wins; the others are reported with their intervals.
    "default-on-val": [
        {"layers": "first7_last8", "method": "full", "lr": 2e-4, "temperature": 1.0, "alpha": 0.9},
        {"layers": "first7_last8", "method": "full", "lr": 1e-4, "temperature": 1.0, "alpha": 0.9},
        {"layers": "first7_last8", "method": "full", "lr": 4e-4, "temperature": 1.0, "alpha": 0.9},
        {"layers": "first7_last8", "method": "full", "lr": 2e-4, "alpha": 0.0},
        # Added after the run above: lr 4e-4 won at the edge of the range, so the range goes one step further.
        {"layers": "first7_last8", "method": "full", "lr": 8e-4, "temperature": 1.0, "alpha": 0.9},
    ],
    # More data at equal steps (issue: 243 vs >= 1,000 rows), in a large-profile project: the default
    # run's rows alone, and every row. The profile's own run (every row, 300 steps) is measured with
    # `--also models/merged`.
    "data-size": [
        {**DEFAULT_STUDENT, "data": "shipped:360"},
        {**DEFAULT_STUDENT, "data": "all"},
    ],
}


# On-policy arms: continuations of the default student (models/merged). Params not named keep params.yaml's values.
ONPOLICY_BASE = {"start": "models/merged", "onpolicy_steps": 40, "lmbda": 0.5, "loss": "jsd", "beta": 0.5,
                 "sample_temperature": 0.7, "lr": 2e-5, "resample_every": 1, "max_new_tokens": 96}
ONPOLICY_GRIDS = {
    "onpolicy": [{"lmbda": 0.0}, {}, {"lmbda": 1.0}],
    "onpolicy-levers": [{"sample_temperature": 0.0}, {"loss": "reverse_kl"}, {"lmbda": 0.25}],
    # Equal compute counted in tokens (student trained + student sampled + teacher scored): the 40
    # on-policy-only steps processed ~69k tokens in the first campaign (27k trained, 14k sampled, 28k
    # scored) against ~28k for 40 KD steps, so the KD control gets the steps that process as many.
    "onpolicy-equal-tokens": [{"lmbda": 1.0}, {"lmbda": 0.0, "onpolicy_steps": 100}],
    # On-policy only, without the off-policy warm start: from the pruned, untrained student, at the
    # off-policy default's learning rate, for about the tokens its 150 KD steps processed (~102k
    # student tokens; one on-policy step processed ~1.7k: trained, sampled, scored).
    "onpolicy-from-pruned": [{"start": "models/student-base", "lmbda": 1.0, "onpolicy_steps": 60, "lr": 4e-4}],
    # On-policy only from the warm start, pushed further than the first arm (40 steps, lr 2e-5, JSD):
    # a larger step, twice the steps, and the mode-seeking divergence (GKD's best on-policy setting).
    "onpolicy-push": [{"lmbda": 1.0, "lr": 5e-5}, {"lmbda": 1.0, "onpolicy_steps": 80},
                      {"lmbda": 1.0, "loss": "reverse_kl"}],
    # The push's first arm alone (the one that moved the large profile's student most on val).
    "onpolicy-lr": [{"lmbda": 1.0, "lr": 5e-5}],
}


def config_key(config: dict) -> str:
    """Return a short stable id for a configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def student_dir(layers: str, teacher) -> Path:
    """Return the folder of the pruned student for a named layer set, writing it once."""
    folder = WORK / "students" / layers
    if not (folder / "model.safetensors").exists():
        model, tokenizer = teacher
        pruned = copy.deepcopy(model)
        layer_map = prune_layers(pruned, LAYER_SETS[layers])
        save_model(pruned, tokenizer, folder, {LAYER_MAP_FILE: {str(k): v for k, v in layer_map.items()}})
    return folder


def token_metrics(model, references: tuple[list[dict], list[torch.Tensor]]) -> dict:
    """Return KL(teacher || model) at T=1, NLL of the teacher's tokens and top-1 agreement.

    Computed by potstill.evaluation.metrics, as evaluate does.

    `references` = (held-out rows tokenized as in training, the teacher's log-probs on them).
    """
    figures = distill_metrics(hf_logits_fn(model), *references)
    return {"kl": figures["kl_vs_teacher"], "nll": figures["heldout_nll"], "top1": figures["top1_vs_teacher"]}


@torch.no_grad()
def greedy_answers(model, tokenizer, rows: list[dict], batch_size: int = 10) -> list[str]:
    """Return greedy answers (no sampling, no repetition penalty) to each row's prompt."""
    tokenizer.padding_side = "left"
    answers = []
    for first in range(0, len(rows), batch_size):
        prompts = [tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
                   for row in rows[first:first + batch_size]]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, repetition_penalty=None,
                             pad_token_id=tokenizer.pad_token_id)
        answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return answers


def training_split(spec: str, folder: Path) -> Path:
    """Return the curated folder a configuration trains from: data/curated, or a subset of its train rows.

    "all" = every curated training row; "shipped:N" = only the rows answering the N shipped prompts a
    default run asks (generate.n_examples N: balanced_subset of data/prompts.jsonl), val unchanged.
    """
    curated = ROOT / "data/curated"
    if spec == "all":
        return curated
    kind, _, count = spec.partition(":")
    if kind != "shipped" or not count.isdigit():
        raise typer.BadParameter(f'data: "all" or "shipped:N", got {spec!r}')
    keep = {row["id"] for row in balanced_subset(load_prompts(ROOT / "data/prompts.jsonl"), int(count))}
    out = folder / "curated"
    out.mkdir(parents=True, exist_ok=True)
    with (curated / "train.jsonl").open() as source, (out / "train.jsonl").open("w") as target:
        target.writelines(line for line in source if json.loads(line)["id"] in keep)
    (out / "val.jsonl").write_bytes((curated / "val.jsonl").read_bytes())
    return out


def train_config(config: dict, folder: Path, student: Path) -> tuple[float, dict]:
    """Return (minutes, token counts) of the real train stage fitting `config` into folder/adapter."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["kd"].update({"source": config["source"], "top_k": config["top_k"], "alpha": config["alpha"],
                         "temperature": config["temperature"], "loss": config["loss"],
                         "hidden_weight": config["hidden_weight"]})
    params["train"].update({"method": config["method"], "learning_rate": config["lr"],
                            "max_steps": config["steps"]})
    params["lora"].update({"r": config["lora_r"], "alpha": 2 * config["lora_r"]})
    curated = training_split(config.get("data", "all"), folder)
    minutes, tokens = train_stage(params, folder, student, curated)
    return minutes, {**tokens, "examples": sum(1 for _ in read_jsonl(curated / "train.jsonl"))}


def train_stage(params: dict, folder: Path, student: Path, curated: Path, *extra: str) -> tuple[float, dict]:
    """Run the real train stage with `params` into folder/adapter; return (minutes, its final token counts)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "stages/train.py"), "--params", str(folder / "params.yaml"),
                    "--student", str(student), "--teacher", str(ROOT / "models/teacher"),
                    "--curated", str(curated), "--generated", str(ROOT / "data/generated"),
                    "--soft-targets", str(ROOT / "data/soft-targets"), "--out", str(folder / "adapter"),
                    "--live", str(folder / "live"), *extra], check=True, cwd=ROOT)
    final = json.loads((folder / "live" / "metrics.json").read_text())
    return (time.monotonic() - started) / 60, {key.removeprefix("final/"): value for key, value in final.items()
                                               if key.startswith("final/tokens_")}


def load_trained(folder: Path, student: Path):
    """Return the trained student (LoRA merged in memory, or the full weights)."""
    adapter = folder / "adapter"
    if not (adapter / "adapter_config.json").exists():
        return load_checked(adapter)
    from peft import PeftModel

    return PeftModel.from_pretrained(load_checked(student), adapter).merge_and_unload().eval()


def done_keys(path: Path) -> set[str]:
    return {row["key"] for _, row in read_jsonl(path)} if path.exists() else set()


def append_row(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def setup():
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(ROOT / "models/teacher")
    teacher = load_checked(ROOT / "models/teacher")
    return tokenizer, teacher, [row for _, row in read_jsonl(SELECTION_SPLIT)]


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def run(grid: Annotated[str, typer.Option(help=f"one of {sorted(GRIDS)}")] = "campaign",
        out: Annotated[Path, typer.Option()] = RESULTS / "distill_grid_val.jsonl",
        also: Annotated[list[Path] | None, typer.Option(
            help="a student trained elsewhere (e.g. the pipeline's models/merged), measured too; repeatable")] = None,
        before_answers: Annotated[bool, typer.Option(
            help="also answer the val prompts with each untrained student (its loops run to the token cap: "
                 "~15 min on 137 prompts); without, its teacher-forced figures only")] = True,
        ) -> None:
    """Train and measure every configuration of the grid not yet in `out` (untrained students go to out_before)."""
    from potstill.io import folder_digest

    tokenizer, teacher, _ = setup()
    references = val_references(tokenizer, teacher)
    for model in also or []:
        key = f"model-{folder_digest(model)[:10]}"
        if key not in done_keys(out):
            print(f"{key}: measuring {model}", flush=True)
            append_row(out, {"key": key, "model": str(model), "val_prompts": len(references[0]),
                             **quality(load_checked(model), tokenizer, references)})
    before_path = out.with_name(f"{out.stem}_before.jsonl")
    for overrides in GRIDS[grid]:
        config = {**BASE, **overrides}
        key = config_key(config)
        if key in done_keys(out):
            print(f"{key}: done already", flush=True)
            continue
        student = student_dir(config["layers"], (teacher, tokenizer))
        if config["layers"] not in done_keys(before_path):
            before = (quality(load_checked(student), tokenizer, references) if before_answers
                      else token_metrics(load_checked(student), (references[1], references[3])))
            append_row(before_path, {"key": config["layers"], **before})
        before = next(row for _, row in read_jsonl(before_path) if row["key"] == config["layers"])
        print(f"{key}: training {config}", flush=True)
        minutes, counts = train_config(config, WORK / key, student)
        after = quality(load_trained(WORK / key, student), tokenizer, references)
        row = {"key": key, **config, "n_layers": len(LAYER_SETS[config["layers"]]), "minutes": round(minutes, 1),
               **counts, "val_prompts": len(references[0]), "kl_before": before["kl"], **after,
               "kl_gap_closed": 1 - after["kl"] / before["kl"]}
        append_row(out, row)
        print(f"{key}: kl {row['kl']:.3f} (before {before['kl']:.3f}) nll {row['nll']:.3f} top1 {row['top1']:.3f} "
              f"degenerate {row['degenerate']:.0%} in {minutes:.1f} min", flush=True)


def val_references(tokenizer, teacher):
    """Return the validation prompts, rows and the teacher's logits_fn, log-probs and answers (measured once)."""
    from potstill.evaluation.metrics import answer_prompts, held_out_prompts, hf_generate_fn

    prompts = held_out_prompts(tokenizer, SELECTION_SPLIT)
    scored = heldout_rows(tokenizer, SELECTION_SPLIT)
    logits = hf_logits_fn(teacher)
    teacher_answers = answer_prompts(hf_generate_fn(teacher, tokenizer), tokenizer, prompts, MAX_NEW_TOKENS)
    return prompts, scored, logits, teacher_logprobs(logits, scored), teacher_answers


def quality(model, tokenizer, references) -> dict:
    """Return teacher-forced and on-policy figures of one model on the validation split, with 95% intervals.

    The answers are greedy, stop at end-of-turn (as a user's would) and are cut at MAX_NEW_TOKENS.
    """
    from potstill.evaluation.metrics import answer_record, intervals

    record = answer_record(model, tokenizer, references, MAX_NEW_TOKENS)
    ids = [row["id"] for _, row in read_jsonl(SELECTION_SPLIT)]
    return {"by_origin": origin_figures(record, ids),
            "kl": record["kl_vs_teacher"], "nll": record["heldout_nll"], "top1": record["top1_vs_teacher"],
            "onpolicy_kl": record["onpolicy_kl"], "degenerate": record["degenerate_share"],
            "answer_tokens": record["answer_tokens"], "length_vs_teacher": record["length_vs_teacher"],
            "ci95": intervals(record), "samples": [a["answer"] for a in record["answers"][:4]],
            # per prompt, in val order: two arms' rows pair for `paired-onpolicy`
            "prompt_rows": {"onpolicy_kl": record["onpolicy_rows"]["kl"],
                            "onpolicy_tokens": record["onpolicy_rows"]["tokens"]}}


def origin_figures(record: dict, ids: list[str]) -> dict:
    """Return KL, on-policy KL and degenerate share apart for shipped and synthesized val prompts (ids synth-*).

    A model trained on synthesized prompts meets their kind again in val; the shipped ones are the
    default run's own kind. Figures with 95% intervals over the prompts of each group.
    """
    from potstill.evaluation.metrics import bootstrap_interval

    rows, onpolicy, answers = record["rows"], record["onpolicy_rows"], record["answers"]
    if not len(ids) == len(rows["tokens"]) == len(onpolicy["tokens"]) == len(answers):
        return {}
    out = {}
    for origin in ("shipped", "synthesized"):
        picked = [i for i, row_id in enumerate(ids) if row_id.startswith("synth-") == (origin == "synthesized")]
        if not picked:
            continue

        def ratio(values, weights, picked=picked):
            top, bottom = [values[i] for i in picked], [weights[i] for i in picked]
            return sum(top) / sum(bottom), bootstrap_interval(top, bottom)

        kl, kl_ci = ratio(rows["kl"], rows["tokens"])
        on, on_ci = ratio(onpolicy["kl"], onpolicy["tokens"])
        loops, loops_ci = ratio([float(a["degenerate"]) for a in answers], [1.0] * len(answers))
        out[origin] = {"prompts": len(picked), "kl": kl, "onpolicy_kl": on, "degenerate": loops,
                       "ci95": {"kl": list(kl_ci), "onpolicy_kl": list(on_ci), "degenerate": list(loops_ci)}}
    return out


def train_onpolicy(config: dict, folder: Path) -> tuple[float, dict]:
    """Return (minutes, final train metrics) of the real train stage continuing config["start"] on-policy."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["max_steps"] = 0
    params["onpolicy"].update({"steps": config["onpolicy_steps"], "lmbda": config["lmbda"], "loss": config["loss"],
                               "beta": config["beta"], "sample_temperature": config["sample_temperature"],
                               "learning_rate": config["lr"], "resample_every": config["resample_every"],
                               "max_new_tokens": config["max_new_tokens"]})
    return train_stage(params, folder, ROOT / config["start"], ROOT / "data/curated",
                       "--rollouts", str(folder / "rollouts.jsonl"))


@app.command("run-onpolicy")
def run_onpolicy(grid: Annotated[str, typer.Option(help=f"one of {sorted(ONPOLICY_GRIDS)}")] = "onpolicy",
                 out: Annotated[Path, typer.Option()] = RESULTS / "onpolicy_grid.jsonl") -> None:
    """Continue the default student on-policy (and its controls) and measure every arm on val."""
    from potstill.io import folder_digest

    tokenizer, teacher, _ = setup()
    references = val_references(tokenizer, teacher)
    start = ROOT / ONPOLICY_BASE["start"]
    start_key = f"start-{folder_digest(start)[:10]}"
    if start_key not in done_keys(out):
        print(f"{start_key}: measuring the starting student {start}", flush=True)
        append_row(out, {"key": start_key, "arm": "start (off-policy default)",
                         **quality(load_checked(start), tokenizer, references)})
    for overrides in ONPOLICY_GRIDS[grid]:
        config = {**ONPOLICY_BASE, **overrides, "start_digest": start_key}
        key = config_key(config)
        if key in done_keys(out):
            print(f"{key}: done already", flush=True)
            continue
        print(f"{key}: training {config}", flush=True)
        minutes, tokens = train_onpolicy(config, WORK / key)
        row = {"key": key, "arm": ", ".join(f"{k}={v}" for k, v in overrides.items()) or "default on-policy",
               **config, "minutes": round(minutes, 1), **tokens,
               **quality(load_checked(WORK / key / "adapter"), tokenizer, references)}
        append_row(out, row)
        print(f"{key}: kl {row['kl']:.3f} onpolicy_kl {row['onpolicy_kl']:.3f} degenerate {row['degenerate']:.0%} "
              f"length x{row['length_vs_teacher']:.2f} in {minutes:.1f} min", flush=True)


@app.command("table-onpolicy")
def table_onpolicy(path: Annotated[Path, typer.Option()] = RESULTS / "onpolicy_grid.jsonl") -> None:
    """Print the on-policy campaign as a markdown table (95% intervals in brackets)."""
    parts = ("tokens_student_train", "tokens_student_sampled", "tokens_teacher_scored")
    columns = ("onpolicy_steps", "kl", "onpolicy_kl", "degenerate", "length_vs_teacher", "top1", "minutes",
               *parts, "tokens_total")
    print("| arm | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))

    for _, row in read_jsonl(path):
        if row.get(parts[0]) is not None:   # compute counted in tokens: what the student and the teacher processed
            row["tokens_total"] = sum(row[p] for p in parts)
        print(f"| {row['arm']} | " + " | ".join(cell(row, c) for c in columns) + " |")


@app.command("paired-onpolicy")
def paired_onpolicy(a: Annotated[str, typer.Option(help="key of the arm compared against (e.g. the KD control)")],
                    b: Annotated[str, typer.Option(help="key of the arm compared")],
                    path: Annotated[Path, typer.Option()] = RESULTS / "onpolicy_grid.jsonl") -> None:
    """Print b's val on-policy KL over a's, paired over the same val prompts, with its 95% interval."""
    from compare_runs import paired_ratio_interval

    rows = {row["key"]: row for _, row in read_jsonl(path)}
    missing = [key for key in (a, b) if "prompt_rows" not in rows.get(key, {})]
    if missing:
        raise SystemExit(f"{path}: no per-prompt rows for {missing} (measured before they were kept, or no such key)")
    pa, pb = rows[a]["prompt_rows"], rows[b]["prompt_rows"]
    ratio, (low, high) = paired_ratio_interval((pa["onpolicy_kl"], pa["onpolicy_tokens"]),
                                               (pb["onpolicy_kl"], pb["onpolicy_tokens"]))
    print(f"on-policy KL, {rows[b]['arm']} / {rows[a]['arm']} (paired over {len(pa['onpolicy_kl'])} val prompts): "
          f"{ratio:.3f} [{low:.3f}, {high:.3f}]")


@app.command("add-prompt-rows")
def add_prompt_rows(keys: Annotated[list[str], typer.Option("--key", help="arm keys to re-measure")],
                    path: Annotated[Path, typer.Option()] = RESULTS / "onpolicy_grid.jsonl") -> None:
    """Re-measure arms measured before per-prompt rows were kept, and add the rows to their lines.

    Greedy answers are deterministic, so the re-measured on-policy KL must equal the stored one;
    an arm whose figure differs (its model changed since) is refused, not overwritten.
    """
    from potstill.io import folder_digest

    rows = [row for _, row in read_jsonl(path)]
    tokenizer, teacher, _ = setup()
    references = val_references(tokenizer, teacher)
    for row in rows:
        if row["key"] not in keys or "prompt_rows" in row:
            continue
        if row["key"].startswith("start-"):
            model = ROOT / ONPOLICY_BASE["start"]
            if row["key"] != f"start-{folder_digest(model)[:10]}":
                raise SystemExit(f"{row['key']}: {model} is not the starting student it measured")
        else:
            model = WORK / row["key"] / "adapter"
        again = quality(load_checked(model), tokenizer, references)
        if abs(again["onpolicy_kl"] - row["onpolicy_kl"]) > 1e-4:
            raise SystemExit(f"{row['key']}: on-policy KL {again['onpolicy_kl']:.4f} now, {row['onpolicy_kl']:.4f} "
                             f"stored: not the model it measured")
        row["prompt_rows"] = again["prompt_rows"]
        print(f"{row['key']}: per-prompt rows added", flush=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(json.dumps(row) + "\n" for row in rows))
    temporary.replace(path)


@app.command("probe-layers")
def probe_layers() -> None:
    """Print KL/NLL/top-1 of each untrained layer choice and of the teacher (no training)."""
    tokenizer, teacher, _ = setup()
    scored = heldout_rows(tokenizer, SELECTION_SPLIT)
    references = scored, teacher_logprobs(hf_logits_fn(teacher), scored)
    print(f"teacher: {token_metrics(teacher, references)}", flush=True)
    for name in LAYER_SETS:
        student = load_checked(student_dir(name, (teacher, tokenizer)))
        print(f"{name} ({len(LAYER_SETS[name])} layers): {token_metrics(student, references)}", flush=True)


@app.command("side-by-side")
def side_by_side(key: Annotated[str, typer.Option(help="the grid row of the distilled student")],
                 prompts: Annotated[int, typer.Option()] = 4,
                 path: Annotated[Path, typer.Option()] = RESULTS / "distill_grid_val.jsonl") -> None:
    """Print greedy answers of the teacher, the untrained student and a distilled one, as markdown."""
    row = next(row for _, row in read_jsonl(path) if row["key"] == key)
    before = next(b for _, b in read_jsonl(path.with_name(f"{path.stem}_before.jsonl")) if b["key"] == row["layers"])
    tokenizer, teacher, rows = setup()
    teacher_answers = greedy_answers(teacher, tokenizer, rows)
    degenerate = sum(repeated_ngram_ratio(answer) > DEGENERATE_RATIO for answer in teacher_answers) / len(rows)
    print(f"teacher: degenerate {degenerate:.0%} of {len(rows)} validation prompts\n")

    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")[:300]

    def answers(record: dict) -> list[str]:
        return record.get("samples") or record["answers"]   # rows before intervals kept every answer

    print(f"| prompt | teacher | student before ({row['layers']}) | distilled ({key}) |")
    print("|---|---|---|---|")
    for index in range(min(prompts, len(answers(row)))):
        print(f"| {cell(rows[index]['messages'][-2]['content'])} | {cell(teacher_answers[index])} | "
              f"{cell(answers(before)[index])} | {cell(answers(row)[index])} |")


CI_NAMES = {"kl": "kl_vs_teacher", "nll": "heldout_nll", "top1": "top1_vs_teacher", "degenerate": "degenerate_share"}


def cell(row: dict, column: str) -> str:
    """One table cell: the value, and its 95% interval in brackets where the row has one."""
    value, ci = row.get(column), (row.get("ci95") or {}).get(CI_NAMES.get(column, column))
    if not isinstance(value, int | float):
        return "" if value is None else str(value)
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    return f"{text} [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else text


@app.command()
def table(path: Annotated[Path, typer.Option()] = RESULTS / "distill_grid_val.jsonl") -> None:
    """Print the grid as a markdown table (95% intervals over the validation prompts in brackets)."""
    columns = ("model", "layers", "n_layers", "method", "lr", "steps", "source", "top_k", "temperature", "alpha",
               "loss", "hidden_weight", "data", "examples", "tokens_student_offpolicy", "minutes", "kl_before", "kl",
               "kl_gap_closed", "nll", "top1", "degenerate", "onpolicy_kl", "length_vs_teacher")
    print("| key | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for _, row in read_jsonl(path):
        print(f"| {row['key']} | " + " | ".join(cell(row, c) for c in columns) + " |")


if __name__ == "__main__":
    app()
