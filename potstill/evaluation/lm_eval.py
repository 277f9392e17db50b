"""lm-eval adapters: one LM for any model evaluate loads (transformers or GGUF), scores, per-item results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch

from potstill.evaluation.metrics import (
    distill_metrics,
    expected_calibration_error,
    heldout_rows,
    hf_logits_fn,
    mc_confidences,
)
from potstill.tasks import task_name

REPORTED_METRICS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "exact_match",
                    "exact_match_stderr")


def hf_lm(model, tokenizer, batch_size: int):
    """Return lm-eval's HFLM around an in-memory transformers model, on the model's own device."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                device=str(next(model.parameters()).device))


def lm_eval_scores(model, tokenizer, tasks: list[str], manager, limit: int | None,
                   batch_size: int) -> dict[str, dict[str, float]]:
    """Return {task: {metric: value}} from lm-eval's Python API for an in-memory model."""
    return lm_eval_results(hf_lm(model, tokenizer, batch_size), tasks, manager, limit)[0]


class LmEvalResults(NamedTuple):
    """What evaluate keeps of one lm-eval run."""

    scores: dict  # {task: {metric: value}}
    items: dict  # {task: {metric: [value per item, in item order]}}: paired gates, per-category tables
    calibration: dict  # {"ece": ...} pooled over the multiple-choice tasks
    categories: dict  # {task: [the doc's "category" (or None) per item, in item order]}
    outputs: dict  # {task: [{doc_id, category, target, response, <metric>: value}]}: generate tasks only


def lm_eval_results(lm, tasks: list[str | dict], manager, limit: int | None) -> LmEvalResults:
    """Return scores, per-item values, calibration, item categories and generated answers from lm-eval.

    `tasks`: task names, or potstill.tasks.task_specs (names, or configs whose data paths were resolved).

    Calibration: each multiple-choice item's softmax over its choices' log-likelihoods (10 bins).
    Generated answers (`filtered_resps`, what the metric scored, beside the raw `resps`) are kept
    so a low exact match can be read item by item.
    """
    from lm_eval import simple_evaluate

    results = simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                              log_samples=True, random_seed=0, numpy_random_seed=0,
                              torch_random_seed=0, fewshot_random_seed=0)
    tasks = [task_name(spec) for spec in tasks]
    scores: dict[str, dict[str, float]] = {}
    items: dict[str, dict[str, list[float]]] = {}
    categories: dict[str, list] = {}
    outputs: dict[str, list[dict]] = {}
    confidences, correct = [], []
    for task in tasks:
        scores[task] = {
            name.split(",")[0]: float(value)
            for name, value in results["results"][task].items()
            if name.split(",")[0] in REPORTED_METRICS and isinstance(value, int | float)
            and not math.isnan(value)
        }
        samples = sorted(results["samples"][task], key=lambda sample: int(sample["doc_id"]))
        items[task] = {metric: [float(sample[metric]) for sample in samples]
                       for metric in scores[task] if not metric.endswith("_stderr")
                       and all(isinstance(sample.get(metric), int | float) for sample in samples)}
        categories[task] = [(sample.get("doc") or {}).get("category") for sample in samples]
        output_type = results["configs"][task].get("output_type")
        if output_type == "multiple_choice":
            task_confidences, task_correct = mc_confidences(samples)
            confidences += task_confidences
            correct += task_correct
        elif output_type == "generate_until":
            outputs[task] = [{"doc_id": int(sample["doc_id"]), "category": category,
                              "target": sample.get("target"), "response": _first(sample.get("filtered_resps")),
                              "raw_response": _first(sample.get("resps")),
                              **{metric: values[index] for metric, values in items[task].items()}}
                             for index, (sample, category) in enumerate(zip(samples, categories[task], strict=True))]
    calibration = {"ece": expected_calibration_error(confidences, correct)} if confidences else {}
    return LmEvalResults(scores, items, calibration, categories, outputs)


def _first(value):
    """Return the innermost first string of lm-eval's nested response lists."""
    while isinstance(value, list | tuple) and value:
        value = value[0]
    return value


def heldout_nll(model, tokenizer, test_file: Path, max_seq_len: int = 512) -> float:
    """Return mean per-token NLL of the teacher's held-out responses (assistant tokens only)."""
    model.eval()
    rows = heldout_rows(tokenizer, test_file, max_seq_len)
    return distill_metrics(hf_logits_fn(model), rows, None)["heldout_nll"]


def gguf_lm(model, batch_size: int = 1):
    """Return an lm-eval LM scoring with a GGUFModel (llama.cpp), usable as simple_evaluate(model=...)."""
    from lm_eval import utils
    from lm_eval.api.model import TemplateLM
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
    from tqdm import tqdm

    class GGUFLM(TemplateLM):
        """lm-eval's view of a GGUFModel: tokenization as HFLM does it, one sequence at a time."""

        def __init__(self):
            super().__init__()
            self.model, self.tokenizer, self.batch_size = model, model.tokenizer, batch_size

        @property
        def eot_token_id(self) -> int:
            return self.tokenizer.eos_token_id

        @property
        def prefix_token_id(self) -> int:
            bos = self.tokenizer.bos_token_id
            return bos if bos is not None else self.tokenizer.eos_token_id

        @property
        def max_length(self) -> int:
            return self.model.n_ctx

        @property
        def tokenizer_name(self) -> str:
            return self.tokenizer.name_or_path.replace("/", "__")

        def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
            if add_special_tokens is None:  # as HFLM: a string already holding BOS gets no second one
                bos = self.tokenizer.decode(self.prefix_token_id)
                kwargs = {"add_special_tokens": False} if string.startswith(bos) else {}
            else:
                kwargs = {"add_special_tokens": add_special_tokens}
            return self.tokenizer.encode(string, **kwargs)

        def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
            return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                      add_generation_prompt=add_generation_prompt,
                                                      continue_final_message=not add_generation_prompt)

        def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            results: list[tuple[float, bool] | None] = [None] * len(requests)
            # Neighbours share their context, so the KV cache of one serves the next.
            order = sorted(range(len(requests)), key=lambda i: requests[i][1] + requests[i][2])
            for i in tqdm(order, disable=disable_tqdm, desc="loglikelihood (llama.cpp)"):
                key, context_enc, continuation_enc = requests[i]
                inputs = (context_enc + continuation_enc)[-(self.max_length + 1):][:-1]
                logprobs = self.model.logits(inputs)[-len(continuation_enc):].log_softmax(-1)
                target = torch.tensor(continuation_enc)
                picked = logprobs.gather(-1, target[:, None])
                results[i] = (float(picked.sum()), bool((logprobs.argmax(-1) == target).all()))
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, results[i])
            return results

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
            totals = []
            for (string,) in tqdm([req.args for req in requests], disable=disable_tqdm):
                windows = map(utils.make_disjoint_window, utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1))
                scores = self._loglikelihood_tokens([(None, *window) for window in windows], disable_tqdm=True)
                totals.append(sum(score for score, _ in scores))
                self.cache_hook.add_partial("loglikelihood_rolling", (string,), totals[-1])
            return totals

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            eos = self.tokenizer.decode(self.eot_token_id)
            outputs = []
            for context, gen_kwargs in tqdm([req.args for req in requests], disable=disable_tqdm):
                kwargs = normalize_gen_kwargs(dict(gen_kwargs), 256)
                until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
                max_gen_toks = kwargs.pop("max_gen_toks")
                if max_gen_toks >= self.max_length:
                    raise ValueError(f"max_gen_toks {max_gen_toks} leaves no room for the context in n_ctx="
                                     f"{self.max_length}; load the GGUFModel with a larger n_ctx")
                context_enc = self.tok_encode(context)[-(self.max_length - max_gen_toks):]
                new = self.model._greedy(  # greedy whatever the sampling kwargs, as evaluation wants
                    context_enc, max_gen_toks,
                    stop=lambda ids, until=until: any(term and term in self.tokenizer.decode(ids) for term in until))
                text = postprocess_generated_text(self.tokenizer.decode(new, skip_special_tokens=True),
                                                  stop=until, think_end_token=None)
                outputs.append(text)
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            return outputs

    return GGUFLM()
