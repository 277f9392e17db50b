"""Training data and the distillation Trainer: chat-template tokenisation, soft targets, KD loss."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections import defaultdict
from pathlib import Path

import torch
from transformers import Trainer

from potstill.io import InputError, folder_digest, read_jsonl, state_dir
from potstill.kd import (
    MISSING_LOGPROB,
    chunked_distillation_loss,
    distillation_loss,
    hidden_projections,
    hidden_state_loss,
)

# The trainable projections of hidden-state matching hang on the student under this name (so the
# optimizer and DDP see them) and are saved in each checkpoint as this file (so a resume has them).
PROJECTION_MODULE = "potstill_hidden_projections"
PROJECTION_FILE = "hidden_projections.safetensors"


def tokenize_chat(tokenizer, messages: list[dict], max_seq_len: int) -> dict:
    """Return input_ids, labels (assistant tokens only) and where the response starts.

    The prompt is rendered with the tokenizer's chat template; the assistant reply is tokenised
    on its own and closed with the end-of-turn token, so its token boundaries are exactly the
    ones a teacher sharing this tokenizer produced (needed to line up API logprobs).
    """
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + response_ids + [tokenizer.eos_token_id])[:max_seq_len]
    labels = ([-100] * len(prompt_ids) + response_ids + [tokenizer.eos_token_id])[:max_seq_len]
    return {"input_ids": ids, "labels": labels, "response_start": len(prompt_ids)}


def token_string_index(tokenizer) -> dict[str, int]:
    """Return {decoded token string: id} for strings that decode from exactly one token id.

    Endpoints return top-logprob candidates as decoded strings; byte-level pieces of one UTF-8
    character all decode to the same replacement string, so ambiguous strings are left out.
    """
    index: dict[str, int] = {}
    ambiguous: set[str] = set()
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if text in index:
            ambiguous.add(text)
        index[text] = token_id
    for text in ambiguous:
        del index[text]
    return index


def align_api_logprobs(
    tokenizer, response: str, tokens: list[dict], index: dict[str, int], k: int, counts: dict | None = None
) -> tuple[list[list[int]], list[list[float]]] | None:
    """Return per-token top-k (ids, logprobs) for a response, or None if they do not line up.

    Re-tokenising the response must give the same tokens the endpoint reported, one for one;
    otherwise the teacher does not share the student's tokenizer and its logprobs are unusable.
    A top-k alternative whose string maps to no single token id (unknown, or ambiguous like the
    replacement character) is left out of the targets; with `counts` given, a row that lines up
    adds its alternatives to counts["top_alternatives"] and the left-out ones to
    counts["top_alternatives_unmapped"], so they are reported rather than dropped silently.
    """
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if len(response_ids) != len(tokens):
        return None
    ids, logprobs = [], []
    alternatives = unmapped = 0
    for token_id, item in zip(response_ids, tokens, strict=True):
        if tokenizer.decode([token_id]) != item["token"]:
            return None
        row_ids, row_lps = [], []
        for text, logprob in item["top"][:k]:
            alternatives += 1
            if text not in index:
                unmapped += 1
            elif logprob is not None:
                row_ids.append(index[text])
                row_lps.append(float(logprob))
        row_ids += [0] * (k - len(row_ids))
        row_lps += [MISSING_LOGPROB] * (k - len(row_lps))
        ids.append(row_ids)
        logprobs.append(row_lps)
    if counts is not None:
        counts["top_alternatives"] = counts.get("top_alternatives", 0) + alternatives
        counts["top_alternatives_unmapped"] = counts.get("top_alternatives_unmapped", 0) + unmapped
    return ids, logprobs


def load_api_soft_targets(tokenizer, generated: Path, k: int) -> tuple[dict[str, dict], dict]:
    """Return ({row id: {kd_ids, kd_logprobs}}, alignment stats) from generate's outputs.

    Each response text (responses.jsonl) is re-tokenised with the student's tokenizer and must
    give back, token for token, what the endpoint reported (logprobs.jsonl); rows that do not
    are counted and trained on their text alone. Top-k alternatives that map to no token id are
    counted (top_alternatives_unmapped of top_alternatives) and reported on stderr.
    """
    responses = {row["id"]: row["messages"][-1]["content"]
                 for _, row in read_jsonl(generated / "responses.jsonl")}
    index = token_string_index(tokenizer)
    targets: dict[str, dict] = {}
    stats = {"rows_aligned": 0, "rows_misaligned": 0, "top_alternatives": 0, "top_alternatives_unmapped": 0}
    for _, row in read_jsonl(generated / "logprobs.jsonl"):
        if row["id"] not in responses:
            continue
        aligned = align_api_logprobs(tokenizer, responses[row["id"]], row["tokens"], index, k, counts=stats)
        if aligned is None:
            stats["rows_misaligned"] += 1
            continue
        stats["rows_aligned"] += 1
        targets[row["id"]] = {"kd_ids": aligned[0], "kd_logprobs": aligned[1]}
    if stats["top_alternatives_unmapped"]:
        import sys

        print(f"train: {stats['top_alternatives_unmapped']} of {stats['top_alternatives']} top-k alternatives in "
              f"{generated / 'logprobs.jsonl'} map to no single token id of the student's tokenizer (unknown or "
              "ambiguous strings); their probability joins the mass outside the top-k (kd.tail; metrics: "
              "top_alternatives_unmapped)",
              file=sys.stderr)
    return targets, stats


def build_dataset(tokenizer, split_files: dict[str, Path], soft_targets: dict[str, dict],
                  k: int, max_seq_len: int):
    """Return a datasets.DatasetDict of tokenised rows with their soft targets attached."""
    from datasets import load_dataset

    # An empty split file (a tiny run's validation set, say) is not a split at all to `datasets`.
    present = {name: str(path) for name, path in split_files.items() if Path(path).stat().st_size}
    raw = load_dataset("json", data_files=present)
    fingerprint = hashlib.sha256(
        json.dumps([tokenizer.name_or_path, len(tokenizer), k, max_seq_len,
                    sorted(soft_targets)], sort_keys=True).encode()
    ).hexdigest()[:16]

    def encode(row: dict) -> dict:
        encoded = tokenize_chat(tokenizer, row["messages"], max_seq_len)
        target = soft_targets.get(row["id"])
        if target and row["messages"][-1]["content"]:
            n_response = max(0, len(encoded["input_ids"]) - encoded["response_start"])
            encoded["kd_ids"] = target["kd_ids"][:n_response]
            encoded["kd_logprobs"] = target["kd_logprobs"][:n_response]
        else:
            encoded["kd_ids"], encoded["kd_logprobs"] = [], []
        return encoded

    return {
        name: split.map(encode, remove_columns=split.column_names,
                        new_fingerprint=f"{fingerprint}-{name}", desc=f"tokenising {name}")
        for name, split in raw.items()
    }


class DistillCollator:
    """Pads a batch; lays each row's soft targets onto the positions of its response tokens."""

    def __init__(self, pad_token_id: int, k: int):
        self.pad_token_id = pad_token_id
        self.k = k

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(row["input_ids"]) for row in rows)
        batch = len(rows)
        input_ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, length), -100, dtype=torch.long)
        attention = torch.zeros((batch, length), dtype=torch.long)
        kd_ids = torch.zeros((batch, length, self.k), dtype=torch.long)
        kd_logprobs = torch.full((batch, length, self.k), MISSING_LOGPROB)
        kd_mask = torch.zeros((batch, length), dtype=torch.bool)
        for b, row in enumerate(rows):
            n = len(row["input_ids"])
            input_ids[b, :n] = torch.tensor(row["input_ids"])
            labels[b, :n] = torch.tensor(row["labels"])
            attention[b, :n] = 1
            if row["kd_ids"]:
                start, m = row["response_start"], len(row["kd_ids"])
                kd_ids[b, start:start + m] = torch.tensor(row["kd_ids"])
                kd_logprobs[b, start:start + m] = torch.tensor(row["kd_logprobs"])
                kd_mask[b, start:start + m] = True
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                "kd_ids": kd_ids, "kd_logprobs": kd_logprobs, "kd_mask": kd_mask}


def decoder_layers(model) -> torch.nn.ModuleList:
    """Return the decoder layers of a causal LM, looking through a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model.layers


@contextlib.contextmanager
def recording_layer_outputs(model):
    """Yield a list that fills with each decoder layer's output hidden state during a forward pass.

    Not `output_hidden_states=True`: transformers puts the final norm on the last entry of
    `hidden_states`, so a student layer copied from a middle teacher layer would be compared
    normed against un-normed. Hooks see the raw output of every layer alike.
    """
    outputs: list[torch.Tensor] = []

    def keep(module, args, output):
        outputs.append(output[0] if isinstance(output, tuple) else output)

    handles = [layer.register_forward_hook(keep) for layer in decoder_layers(model)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def read_layer_map(student_dir: Path) -> dict[int, int]:
    """Return {student layer: teacher layer} from the map prepare wrote beside the student."""
    from potstill.models import LAYER_MAP_FILE

    path = Path(student_dir) / LAYER_MAP_FILE
    if not path.exists():
        raise InputError(f"{path}: not found; kd.hidden_weight > 0 needs a student pruned from the teacher "
                         "by the prepare stage, or kd.hidden_layer_map (or set kd.hidden_weight: 0)")
    return {int(student): int(teacher) for student, teacher in json.loads(path.read_text()).items()}


def check_hidden_matching(student, teacher, layer_map: dict[int, int]) -> None:
    """Raise InputError unless every mapped student and teacher layer exists.

    Widths may differ: the trainer then learns a projection per mapped layer.
    """
    n_student, n_teacher = len(decoder_layers(student)), len(decoder_layers(teacher))
    fits = all(0 <= s < n_student and 0 <= t < n_teacher for s, t in layer_map.items())
    if not layer_map or not fits:
        raise InputError(f"kd.hidden_weight: the layer map {layer_map} does not fit a {n_student}-layer "
                         f"student and a {n_teacher}-layer teacher; fix kd.hidden_layer_map or rerun prepare "
                         "(or set kd.hidden_weight: 0)")


def chunkable_head(model) -> torch.nn.Linear | None:
    """Return the student's LM head if the chunked loss can stand in for it, else None.

    The chunked loss multiplies the final hidden states by the head's weight itself; that is only
    the model's own logits for a plain bias-free Linear head (not one wrapped by peft, e.g. LoRA on
    lm_head) in a model that does no more to its logits (Gemma-2's soft-capping) and can skip
    them (`logits_to_keep`).
    """
    import inspect

    head = model.get_output_embeddings()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    if getattr(base.config, "final_logit_softcapping", None) or getattr(base.config, "logit_scale", None):
        return None
    if "logits_to_keep" not in inspect.signature(base.forward).parameters:
        return None
    return head


class DistillTrainer(Trainer):
    """HF Trainer whose loss mixes CE, KD on stored teacher top-k and optional hidden-state matching.

    Each term is logged apart (ce_loss, kd_loss, hidden_loss). The model returns its final hidden
    states, not its logits: the loss projects them chunk by chunk (`kd_chunk_rows` rows at a time).
    With `hidden_weight` > 0 the teacher runs frozen on the same batch; it is kept off the model so
    it never reaches the optimizer or DDP. A student of another width than its teacher gets a
    trainable projection per mapped layer, attached to the model (the optimizer and DDP see it) and
    saved beside each checkpoint (a resumed run gets it back).
    """

    def __init__(self, model, *args, kd_alpha: float, kd_temperature: float, capture_temperature: float,
                 kd_tail: str, kd_loss: str = "forward_kl", jsd_beta: float = 0.5, kd_chunk_rows: int = 1024,
                 teacher=None, layer_map: dict[int, int] | None = None, hidden_weight: float = 0.0,
                 hidden_loss: str = "cosine", **kwargs):
        if hidden_weight > 0:
            if teacher is None or not layer_map:
                raise ValueError("hidden_weight > 0 needs a teacher and a layer map")
            teacher.eval().requires_grad_(False)
            projections = hidden_projections(layer_map, model.config.hidden_size, teacher.config.hidden_size)
            if len(projections):
                model.add_module(PROJECTION_MODULE, projections)
        super().__init__(model, *args, **kwargs)
        self.kd_alpha, self.kd_temperature = kd_alpha, kd_temperature
        self.capture_temperature, self.kd_tail = capture_temperature, kd_tail
        self.kd_loss, self.jsd_beta, self.kd_chunk_rows = kd_loss, jsd_beta, kd_chunk_rows
        self.hidden_weight, self.hidden_loss, self.layer_map = hidden_weight, hidden_loss, layer_map
        self.teacher = teacher
        self._terms: dict[str, list[float]] = defaultdict(list)

    def _teacher_layers(self, inputs) -> list[torch.Tensor]:
        self.teacher.to(inputs["input_ids"].device)
        with torch.no_grad(), recording_layer_outputs(self.teacher) as layers:
            self.teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return layers

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        kd_ids, kd_logprobs, kd_mask = inputs.pop("kd_ids"), inputs.pop("kd_logprobs"), inputs.pop("kd_mask")
        labels = inputs.pop("labels")
        matching = self.hidden_weight > 0
        unwrapped = self.accelerator.unwrap_model(model)
        # FSDP shards the head's weight outside its forward pass: the full logits are needed there.
        head = None if self.is_fsdp_enabled else chunkable_head(unwrapped)
        # Logits for no position at all; the last hidden state (after the final norm) instead.
        skip_logits = {"logits_to_keep": torch.zeros_like(labels, dtype=torch.bool),
                       "output_hidden_states": True} if head is not None else {}
        with recording_layer_outputs(unwrapped) if matching else contextlib.nullcontext([]) as student_layers:
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **skip_logits)
        settings = dict(alpha=self.kd_alpha, temperature=self.kd_temperature,
                        capture_temperature=self.capture_temperature, tail=self.kd_tail, loss=self.kd_loss,
                        jsd_beta=self.jsd_beta)
        if head is not None:
            loss, ce, kd = chunked_distillation_loss(outputs.hidden_states[-1], head.weight, labels, kd_ids,
                                                     kd_logprobs, kd_mask, chunk_rows=self.kd_chunk_rows, **settings)
        else:
            loss, ce, kd = distillation_loss(outputs.logits, labels, kd_ids, kd_logprobs, kd_mask, **settings)
        prefix = "" if model.training else "eval_"
        self._terms[f"{prefix}ce_loss"].append(float(ce))
        if kd is not None:
            self._terms[f"{prefix}kd_loss"].append(float(kd))
        if matching:
            hidden = hidden_state_loss(student_layers, self._teacher_layers(inputs), self.layer_map,
                                       labels, self.hidden_loss, getattr(unwrapped, PROJECTION_MODULE, None))
            loss = loss + self.hidden_weight * hidden
            self._terms[f"{prefix}hidden_loss"].append(float(hidden.detach()))
        return (loss, outputs) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        projections = getattr(self.accelerator.unwrap_model(self.model), PROJECTION_MODULE, None)
        if projections is not None and self.args.should_save:
            from safetensors.torch import save_file

            output_dir = output_dir if output_dir is not None else self.args.output_dir
            save_file({key: value.detach().cpu().contiguous() for key, value in projections.state_dict().items()},
                      str(Path(output_dir) / PROJECTION_FILE))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        projections = getattr(self.accelerator.unwrap_model(self.model), PROJECTION_MODULE, None)
        path = Path(resume_from_checkpoint) / PROJECTION_FILE
        if projections is not None:
            if not path.is_file():
                raise InputError(f"{path}: not found; this checkpoint was saved without the hidden-state "
                                 f"projections; delete {resume_from_checkpoint} to start over")
            from safetensors.torch import load_file

            projections.load_state_dict(load_file(str(path)))

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        evaluating = any(key.startswith("eval_") for key in logs)
        for name in list(self._terms):
            if name.startswith("eval_") == evaluating and self._terms[name]:
                logs[name] = sum(self._terms[name]) / len(self._terms[name])
                self._terms[name].clear()
        super().log(logs, *args, **kwargs)


# Below this teacher/student parameter ratio the "teacher" is not clearly stronger: the run
# is fine-tuning on a peer's outputs, and that peer's mistakes propagate.
MIN_TEACHER_STUDENT_RATIO = 1.5


def parameter_count(model_dir: Path) -> int:
    """Return the parameter count of the checkpoint in `model_dir` (tied weights once), loading no weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return model.num_parameters()


def compatibility_warnings(teacher_parameters: int, student_parameters: int) -> list[str]:
    """Return warnings about a teacher that is not clearly stronger than its student (empty if it is)."""
    ratio = teacher_parameters / student_parameters
    if ratio >= MIN_TEACHER_STUDENT_RATIO:
        return []
    return [f"teacher/student parameter ratio is {ratio:.2f} ({teacher_parameters:,} / {student_parameters:,}), "
            f"below {MIN_TEACHER_STUDENT_RATIO}: this is fine-tuning, not distillation; use a larger teacher "
            "or keep fewer layers (student.keep_layers)"]


def read_manifest(path: Path) -> dict:
    """Return a JSON manifest, naming the file if it is missing."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: manifest not found; rerun the stage that writes it") from None


def soft_targets_for(kd, tokenizer, generated: Path, soft_targets_dir: Path) -> tuple[dict, dict, float, int]:
    """Return (soft targets by row id, alignment stats, capture temperature, k) for kd.source."""
    from potstill.score import load_soft_targets

    if kd.source == "local":
        targets, manifest = load_soft_targets(soft_targets_dir, tokenizer, kd.top_k)
        return targets, {}, manifest["logprob_temperature"], kd.top_k
    if kd.source == "none":
        return {}, {}, 1.0, 1
    manifest = read_manifest(generated / "manifest.json")
    if manifest["logprobs_k"] == 0:
        raise InputError("kd.source is 'api' but generate stored no logprobs (teacher.logprobs: 0); "
                         "set teacher.logprobs > 0 or use kd.source: local / none")
    k = min(kd.top_k, manifest["logprobs_k"])
    targets, stats = load_api_soft_targets(tokenizer, generated, k)
    if not targets:
        raise InputError(
            f"{generated / 'logprobs.jsonl'}: no response's logprobs line up with the student's "
            "tokenizer; the teacher must share it for kd.source: api (use kd.source: none)"
        )
    return targets, stats, manifest["endpoint"]["logprob_temperature"], k


def checkpoint_dir(settings: dict, inputs: list[Path]) -> Path:
    """Return the state-dir folder for this run's checkpoints, keyed by its settings and inputs.

    DVC deletes the stage's outputs before a rerun, so checkpoints live outside them; the key
    makes sure a run with other params or data never resumes from them.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in inputs:
        if path.is_dir():
            digest.update(folder_digest(path).encode())
        elif path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode())
    return state_dir() / "checkpoints" / digest.hexdigest()[:20]


def step_aligned_dvclive_callback(live):
    """Return a DVCLive callback whose x axis is the optimizer step, not the count of log calls."""
    from transformers.integrations import DVCLiveCallback

    class StepAligned(DVCLiveCallback):
        def on_log(self, args, state, control, model=None, logs=None, **kwargs):
            if self.live is not None:
                self.live.step = state.global_step
            super().on_log(args, state, control, model=model, logs=logs, **kwargs)

    return StepAligned(live=live)


def last_complete_checkpoint(folder: Path) -> str | None:
    """Return the newest checkpoint in `folder` that finished writing, removing torn ones.

    The Trainer writes trainer_state.json last; a SIGKILL while it saves leaves a numbered
    folder without it, which `get_last_checkpoint` would pick and fail to resume from.
    """
    if not folder.is_dir():
        return None
    complete = []
    for candidate in folder.glob("checkpoint-*"):
        if (candidate / "trainer_state.json").is_file():
            complete.append(candidate)
        else:
            shutil.rmtree(candidate, ignore_errors=True)
    if not complete:
        return None
    return str(max(complete, key=lambda path: int(path.name.rsplit("-", 1)[-1])))
