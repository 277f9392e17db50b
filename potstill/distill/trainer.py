"""The distillation Trainer: KD loss on stored soft targets, hidden-state matching, DVCLive logging."""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from pathlib import Path

import torch
from transformers import Trainer

from potstill.distill.kd import (
    chunked_distillation_loss,
    distillation_loss,
    hidden_projections,
    hidden_state_loss,
    token_counts,
)
from potstill.errors import InputError

# The trainable projections of hidden-state matching hang on the student under this name (so the
# optimizer and DDP see them) and are saved in each checkpoint as this file (so a resume has them).
PROJECTION_MODULE = "potstill_hidden_projections"
PROJECTION_FILE = "hidden_projections.safetensors"


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

    Losses are per-token means over the whole optimizer step: every micro-batch of a
    gradient-accumulation step (and of every process under DDP) divides its sums by the step's
    token counts (`_get_num_items_in_batch`), so grad_accum 2 x batch 4 gives the gradients of
    batch 8, and the logged `loss` is exactly alpha x kd_loss + (1 - alpha) x ce_loss (+ the
    hidden term): what the optimizer minimises.
    """

    # compute_loss already divides by the whole step's token counts: the Trainer must not divide by grad_accum.
    loss_is_scaled_for_ga = True

    def __init__(self, model, *args, kd_alpha: float, kd_temperature: float, capture_temperature: float,
                 kd_tail: str, kd_loss: str = "forward_kl", jsd_beta: float = 0.5, kd_chunk_rows: int = 1024,
                 teacher=None, layer_map: dict[int, int] | None = None, hidden_weight: float = 0.0,
                 hidden_loss: str = "cosine", vocab_limit: int | None = None, **kwargs):
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
        # The tokenizer's size when the model pads its embedding beyond it (see distillation_loss).
        self.vocab_limit = vocab_limit
        self._terms: dict[str, list[float]] = defaultdict(list)
        self._last_logged_step: int | None = None  # set when training (or a resumed run) starts
        # Loss settings for rollouts of the student (set by OnPolicyTrainer): the divergence alone, at T=1.
        self.onpolicy_loss: dict = {}

    def _teacher_layers(self, inputs) -> list[torch.Tensor]:
        self.teacher.to(inputs["input_ids"].device)
        with torch.no_grad(), recording_layer_outputs(self.teacher) as layers:
            self.teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return layers

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor:
        """Return [labelled tokens, tokens with soft targets] of a whole optimizer step, over every process."""
        counts = token_counts(batch_samples).to(device)
        if self.args.world_size > 1:
            counts = self.accelerator.gather(counts[None]).sum(0)
        return counts

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        kd_ids, kd_logprobs, kd_mask = inputs.pop("kd_ids"), inputs.pop("kd_logprobs"), inputs.pop("kd_mask")
        labels = inputs.pop("labels")
        # Rollouts of the student (potstill.distill.onpolicy) are marked: their loss is `onpolicy_loss`.
        onpolicy = inputs.pop("onpolicy", None) is not None
        # Training: the step's counts (a sum over micro-batches and processes makes the step's mean);
        # evaluation: this batch's own counts (a mean per batch).
        step = model.training and num_items_in_batch is not None
        if model.training and self._last_logged_step is None:
            self._last_logged_step = self.state.global_step
        normalizer = tuple(int(n) for n in num_items_in_batch) if step else None
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
                        jsd_beta=self.jsd_beta, normalizer=normalizer, vocab_limit=self.vocab_limit)
        if onpolicy:
            settings.update(self.onpolicy_loss)
        if head is not None:
            loss, ce, kd = chunked_distillation_loss(outputs.hidden_states[-1], head.weight, labels, kd_ids,
                                                     kd_logprobs, kd_mask, chunk_rows=self.kd_chunk_rows, **settings)
        else:
            loss, ce, kd = distillation_loss(outputs.logits, labels, kd_ids, kd_logprobs, kd_mask, **settings)
        prefix = "" if model.training else "eval_"
        if onpolicy:
            self._terms["onpolicy_loss"].append(float(kd) if kd is not None else 0.0)
        else:
            self._terms[f"{prefix}ce_loss"].append(float(ce))
            if kd is not None:
                self._terms[f"{prefix}kd_loss"].append(float(kd))
        if matching:
            hidden = hidden_state_loss(student_layers, self._teacher_layers(inputs), self.layer_map,
                                       labels, self.hidden_loss, getattr(unwrapped, PROJECTION_MODULE, None))
            if step:  # a mean over this micro-batch's tokens, weighted by its share of the step's tokens
                hidden = hidden * int((labels[:, 1:] != -100).sum()) / max(normalizer[0], 1)
            loss = loss + self.hidden_weight * hidden
            self._terms[f"{prefix}hidden_loss"].append(float(hidden.detach()))
        if step and self.args.world_size > 1:
            # DDP averages gradients over processes; the counts already cover them all.
            loss = loss * self.args.world_size
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

    def steps_with(self, name: str, steps: int) -> int:
        """Return how many of the `steps` optimizer steps since the last log carry loss term `name` (all, here)."""
        return steps

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Add the mean of each loss term since the last log, on the same footing as `loss`.

        Training terms are each micro-batch's share of its step's mean: their sum over a step is
        the step's term, averaged here over the steps since the last log (as the Trainer does for
        `loss`). Evaluation terms are per-batch means, averaged over the batches.
        """
        evaluating = any(key.startswith("eval_") for key in logs)
        steps = max(self.state.global_step - (self._last_logged_step or 0), 1)
        for name in list(self._terms):
            if name.startswith("eval_") == evaluating and self._terms[name]:
                count = len(self._terms[name]) if evaluating else max(self.steps_with(name, steps), 1)
                logs[name] = sum(self._terms[name]) / count
                self._terms[name].clear()
        if not evaluating:
            self._last_logged_step = self.state.global_step
        super().log(logs, *args, **kwargs)


# Below this teacher/student parameter ratio the "teacher" is not clearly stronger: the run
# is fine-tuning on a peer's outputs, and that peer's mistakes propagate.
MIN_TEACHER_STUDENT_RATIO = 1.5


def parameter_count(model_dir: Path) -> int:
    """Return the parameter count of the checkpoint in `model_dir` (tied weights once), loading no weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from potstill.weights import weights_dir

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(weights_dir(model_dir)))
    return model.num_parameters()


def compatibility_warnings(teacher_parameters: int, student_parameters: int) -> list[str]:
    """Return warnings about a teacher that is not clearly stronger than its student (empty if it is)."""
    ratio = teacher_parameters / student_parameters
    if ratio >= MIN_TEACHER_STUDENT_RATIO:
        return []
    return [f"teacher/student parameter ratio is {ratio:.2f} ({teacher_parameters:,} / {student_parameters:,}), "
            f"below {MIN_TEACHER_STUDENT_RATIO}: this is fine-tuning, not distillation; use a larger teacher "
            "or keep fewer layers (student.keep_layers)"]


def step_aligned_dvclive_callback(live, offset: int = 0):
    """Return a DVCLive callback whose x axis is the optimizer step (+ `offset`), not the count of log calls.

    It leaves `live.end()` to its caller: the on-policy phase logs on after the off-policy one ends.
    """
    from transformers.integrations import DVCLiveCallback

    class StepAligned(DVCLiveCallback):
        def on_log(self, args, state, control, model=None, logs=None, **kwargs):
            if self.live is not None:
                self.live.step = state.global_step + offset
            super().on_log(args, state, control, model=model, logs=logs, **kwargs)

        def on_train_end(self, args, state, control, **kwargs):
            pass

    return StepAligned(live=live)
