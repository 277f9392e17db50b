"""GGUF export of a merged llama checkpoint, and llama.cpp scoring of the result (logits, lm-eval).

No installed package converts HF checkpoints to GGUF, so `build_gguf` writes one with the `gguf`
package (llama architecture only), quantizes it with llama.cpp, and checks it against the
transformers model before the folder appears:

    from potstill.gguf import GGUFModel, build_gguf
    report = build_gguf(Path("models/merged"), Path("models/gguf-q8_0"), "q8_0")
    model = GGUFModel(Path("models/gguf-q8_0"))
    simple_evaluate(model=model.lm(), tasks=[...])
"""

from __future__ import annotations

import ctypes
import itertools
import json
import logging
import os
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from potstill.gptq import q8_0_bytes
from potstill.io import InputError, atomic_dir, read_jsonl

QTYPES = ("f16", "q8_0", "q8_0-gptq", "q4_k_m")
# Training rows the GPTQ Hessians are estimated from (~100 s on 2 CPU cores for the default student).
GPTQ_CALIBRATION_ROWS = 256
# Same pre-tokenizer as the shipped SmolLM2 teacher GGUF: GPT-2 byte-level BPE that splits digits.
PRE_TOKENIZER = "smollm"
# An f16 export that disagrees more than this with transformers is a conversion bug, not rounding.
MIN_F16_TOP1_AGREEMENT = 0.9
PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog. It was not amused, and neither was the cat.",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    "The capital of France is Paris.<|im_end|>\n",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 40))  # 42\n",
    "In 1969, 3 astronauts flew 384,400 km to the Moon; two of them walked on it.",
)
# Ollama's template for ChatML; the system line is added only when the HF template adds a default one.
OLLAMA_CHATML_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def _default_threads() -> int:
    # llama.cpp on every core collapses as soon as anything else runs on this box.
    return max(1, (os.cpu_count() or 2) // 2)


def _llama_ftype(qtype: str) -> int:
    import llama_cpp

    return {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[qtype]


def _permute_for_rope(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Return a q/k projection reordered from HF's rotate-half rope layout to llama.cpp's interleaved one."""
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _rope_theta(config) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise InputError(f"config.json: rope scaling {rope} is not supported by the GGUF export (plain rope only)")
    return float(rope.get("rope_theta") or getattr(config, "rope_theta", 10000.0))


def _check_llama(config, folder: Path) -> None:
    if config.model_type != "llama":
        raise InputError(f"{folder}/config.json: model_type {config.model_type!r}; the GGUF export handles "
                         "'llama' only")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise InputError(f"{folder}/config.json: attention_bias/mlp_bias are not supported by the GGUF export")


def _add_tokenizer(writer, tokenizer, n_vocab: int) -> None:
    """Write the GPT-2 style BPE vocabulary, merges, special ids and chat template, as llama.cpp reads them."""
    import gguf

    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    added = tokenizer.added_tokens_decoder
    types = [gguf.TokenType.CONTROL if i in added and added[i].special
             else gguf.TokenType.USER_DEFINED if i in added else gguf.TokenType.NORMAL
             for i in range(len(tokens))]
    # The embedding may be padded beyond the tokenizer (e.g. to a multiple of 64).
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend["model"]["type"] != "BPE" or backend["decoder"]["type"] != "ByteLevel":
        raise InputError(f"tokenizer {tokenizer.name_or_path}: only byte-level BPE tokenizers are exported "
                         f"(found {backend['model']['type']} with a {backend['decoder']['type']} decoder)")
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for kind in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{kind}_token_id")
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(token_id)
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]
    writer.add_add_bos_token(adds_bos)
    writer.add_add_space_prefix(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _write_gguf(merged_dir: Path, path: Path, dtype, permute_qk: bool = True,
                q8_0: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
    """Write merged_dir's llama checkpoint as a GGUF with 2-D weights in `dtype` (norms stay float32).

    q8_0: {HF tensor name: (int8 values, fp16 scales)} already rounded (potstill.gptq); those
    tensors are written as q8_0 blocks as they are, and the file is labelled q8_0.
    """
    import gguf
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(merged_dir)
    _check_llama(config, merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    n_head, n_kv_head = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head

    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(merged_dir.name)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv_head)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8_0 else
                         gguf.LlamaFileType.MOSTLY_F16 if dtype == np.float16 else gguf.LlamaFileType.ALL_F32)
    if q8_0:
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)  # as llama.cpp's quantizer records it
    _add_tokenizer(writer, tokenizer, config.vocab_size)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for shard in sorted(merged_dir.glob("*.safetensors")):
        with safe_open(shard, "pt") as handle:
            for hf_name in handle.keys():
                if hf_name.endswith("rotary_emb.inv_freq"):
                    continue  # recomputed by llama.cpp from rope theta
                if hf_name == "lm_head.weight" and config.tie_word_embeddings:
                    continue  # llama.cpp falls back to token_embd when output.weight is absent
                name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise InputError(f"{shard}: tensor {hf_name!r} has no llama GGUF name; the export handles "
                                     "plain llama checkpoints (merge LoRA adapters first)")
                rounded = q8_0.get(hf_name) if q8_0 else None
                if rounded is not None:
                    weight = q8_0_bytes(*rounded)  # one row of blocks per output row, so it permutes alike
                else:
                    weight = handle.get_tensor(hf_name).float().numpy()
                if permute_qk and hf_name.endswith("q_proj.weight"):
                    weight = _permute_for_rope(weight, n_head)
                elif permute_qk and hf_name.endswith("k_proj.weight"):
                    weight = _permute_for_rope(weight, n_kv_head)
                if rounded is not None:
                    writer.add_tensor(name, weight, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
                elif q8_0 and weight.ndim == 2:  # an untied embedding: no Linear input to calibrate on
                    writer.add_tensor(name, gguf.quants.quantize(weight, gguf.GGMLQuantizationType.Q8_0),
                                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
                else:
                    writer.add_tensor(name, weight.astype(dtype if weight.ndim == 2 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _quantize(source: Path, target: Path, qtype: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _llama_ftype(qtype)
    params.nthread = _default_threads()
    # llama.cpp logs every tensor through this logger (the 576-wide k-quant fallbacks included).
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    finally:
        logger.setLevel(level)
    if status != 0:
        raise RuntimeError(f"{target}: llama.cpp quantization to {qtype} failed (status {status})")


def _ollama_modelfile(tokenizer) -> str:
    """Return an Ollama Modelfile for ./model.gguf, with the ChatML template when the tokenizer uses it."""
    lines = ["FROM ./model.gguf", ""]
    template = tokenizer.chat_template or ""
    if "<|im_start|>" in template:
        lines += [f'TEMPLATE """{OLLAMA_CHATML_TEMPLATE}"""']
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
        prefix = "<|im_start|>system\n"
        if rendered.startswith(prefix):  # the HF template injects a default system prompt: keep it
            lines += [f'SYSTEM """{rendered[len(prefix):rendered.index("<|im_end|>")]}"""']
        lines += ['PARAMETER stop "<|im_start|>"', 'PARAMETER stop "<|im_end|>"']
    elif tokenizer.eos_token:
        lines += [f'PARAMETER stop "{tokenizer.eos_token}"']
    return "\n".join(lines) + "\n"


def _compare(reference: torch.Tensor, candidate: torch.Tensor) -> dict:
    """Return agreement figures of candidate logits against reference logits (positions x vocab)."""
    ref_lp, cand_lp = reference.log_softmax(-1), candidate.log_softmax(-1)
    top1 = ref_lp.argmax(-1)
    on_top1 = (ref_lp.gather(-1, top1[:, None]) - cand_lp.gather(-1, top1[:, None])).abs()
    kl = (ref_lp.exp() * (ref_lp - cand_lp)).sum(-1)
    return {"positions": int(top1.numel()),
            "top1_agreement_vs_source": float((cand_lp.argmax(-1) == top1).float().mean()),
            "max_abs_logprob_diff_vs_source": float(on_top1.max()),
            "mean_kl_vs_source": max(0.0, float(kl.mean()))}  # rounding can make it a hair negative


def verify_against_source(merged_dir: Path, gguf_folder: Path) -> dict:
    """Return top-1 agreement, log-prob gap and KL of gguf_folder's model.gguf vs the transformers model."""
    from potstill.models import load_checked

    source = load_checked(merged_dir)
    model = GGUFModel(gguf_folder, n_ctx=256)
    try:
        references, candidates, same_tokens = [], [], 0
        for text in PROBE_TEXTS:
            ids = model.tokenizer(text, add_special_tokens=False).input_ids
            with torch.no_grad():
                references.append(source(torch.tensor([ids])).logits[0].float())
            candidates.append(model.logits(ids))
            llama_ids = model.llama.tokenize(text.encode(), add_bos=False, special=True)
            same_tokens += llama_ids == ids
    finally:
        model.close()
    report = _compare(torch.cat(references), torch.cat(candidates))
    # Scoring feeds HF token ids to llama.cpp; Ollama tokenizes with llama.cpp itself.
    report["tokenizer_agreement_vs_source"] = same_tokens / len(PROBE_TEXTS)
    return report


def _gptq_tensors(merged_dir: Path, calibration: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return {HF weight name: (int8, fp16 scales)} of every Linear, rounded by GPTQ on calibration rows."""
    from transformers import AutoTokenizer

    from potstill.gptq import collect_hessians, gptq_q8_0
    from potstill.models import load_checked
    from potstill.train import tokenize_chat

    model = load_checked(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    rows = [tokenize_chat(tokenizer, row["messages"], 512)
            for _, row in itertools.islice(read_jsonl(calibration), GPTQ_CALIBRATION_ROWS)]
    if not rows:
        raise InputError(f"{calibration}: no chats to calibrate gguf-q8_0-gptq on; it takes the training split")
    hessians = collect_hessians(model, rows)
    tied = model.config.tie_word_embeddings
    rounded = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            # The tied head's weight is the embedding's: llama.cpp reads it as token_embd.
            key = "model.embed_tokens.weight" if name == "lm_head" and tied else f"{name}.weight"
            rounded[key] = gptq_q8_0(module.weight, hessians[name])
    return rounded


def build_gguf(merged_dir: Path, out_dir: Path, qtype: str, *, calibration: Path | None = None,
               _permute_qk: bool = True) -> dict:
    """Return the verification report of a GGUF export of merged_dir, written atomically into out_dir.

    qtype in {"f16", "q8_0", "q8_0-gptq", "q4_k_m"}. q8_0 is llama.cpp's own round-to-nearest;
    q8_0-gptq writes the same q8_0 blocks rounded by GPTQ (potstill.gptq) on up to
    GPTQ_CALIBRATION_ROWS chats of `calibration` (the training split, never held-out data).
    out_dir gets model.gguf, an Ollama Modelfile, the HF tokenizer files and
    potstill_quantization.json. The export is loaded in llama.cpp and compared with the
    transformers model on PROBE_TEXTS; an f16 export that disagrees (top-1 agreement below
    MIN_F16_TOP1_AGREEMENT) raises RuntimeError and leaves no out_dir. `_permute_qk=False` exists
    only for the test proving the q/k rope permutation is needed.
    """
    from transformers import AutoTokenizer

    merged_dir, out_dir = Path(merged_dir), Path(out_dir)
    if qtype not in QTYPES:
        raise InputError(f"quantize qtype {qtype!r} is not one of {', '.join(QTYPES)}")
    shards = sorted(merged_dir.glob("*.safetensors"))
    if not shards:
        raise InputError(f"{merged_dir}: no safetensors weights (model.safetensors) to export to GGUF")
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    with atomic_dir(out_dir) as tmp:
        if qtype == "f16":
            _write_gguf(merged_dir, tmp / "model.gguf", np.float16, _permute_qk)
        elif qtype == "q8_0-gptq":
            if calibration is None or not Path(calibration).is_file():
                raise InputError(f"gguf-q8_0-gptq needs calibration chats (the training split); got {calibration}")
            _write_gguf(merged_dir, tmp / "model.gguf", np.float32, _permute_qk,
                        q8_0=_gptq_tensors(merged_dir, Path(calibration)))
        else:
            # Quantize from float32 so the only rounding is the quantization's own.
            _write_gguf(merged_dir, tmp / "model-f32.gguf", np.float32, _permute_qk)
            _quantize(tmp / "model-f32.gguf", tmp / "model.gguf", qtype)
            (tmp / "model-f32.gguf").unlink()
        tokenizer.save_pretrained(tmp)
        (tmp / "Modelfile").write_text(_ollama_modelfile(tokenizer))
        report = {"qtype": qtype,
                  "size_bytes": (tmp / "model.gguf").stat().st_size,
                  "fp32_size_bytes": sum(shard.stat().st_size for shard in shards),
                  **verify_against_source(merged_dir, tmp)}
        if qtype == "f16" and report["top1_agreement_vs_source"] < MIN_F16_TOP1_AGREEMENT:
            raise RuntimeError(
                f"{out_dir / 'model.gguf'}: the f16 GGUF export disagrees with {merged_dir} "
                f"(top-1 agreement {report['top1_agreement_vs_source']:.3f} < {MIN_F16_TOP1_AGREEMENT}, "
                f"max log-prob gap {report['max_abs_logprob_diff_vs_source']:.3g}): a conversion bug")
        (tmp / "potstill_quantization.json").write_text(
            json.dumps({"library": "gguf", "source": str(merged_dir), **report}, indent=2, sort_keys=True) + "\n")
    return report


class GGUFModel:
    """A model.gguf loaded in llama.cpp for scoring, with the HF tokenizer saved beside it."""

    def __init__(self, folder: Path, n_ctx: int = 2048, n_threads: int | None = None):
        from llama_cpp import Llama
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        path = self.folder / "model.gguf"
        if not path.is_file():
            raise InputError(f"{path}: no GGUF model here; build it with the quantize stage (gguf qtypes)")
        threads = n_threads or _default_threads()
        self.n_ctx = n_ctx
        self.llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                           logits_all=True, verbose=False, seed=0)
        # Freed before interpreter teardown: Llama.__del__ at exit fails on already-unloaded ctypes.
        self._finalizer = weakref.finalize(self, self.llama.close)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)

    def close(self) -> None:
        self._finalizer()

    def _eval(self, input_ids: list[int]) -> None:
        """Run llama.cpp on input_ids, reusing the KV cache of the prefix it already holds."""
        if not input_ids:
            raise ValueError("GGUFModel: input_ids is empty")
        if len(input_ids) > self.n_ctx:
            raise ValueError(f"GGUFModel: {len(input_ids)} tokens exceed n_ctx={self.n_ctx}; raise n_ctx")
        held = self.llama.input_ids[:self.llama.n_tokens].tolist()
        keep = 0
        while keep < min(len(held), len(input_ids)) and held[keep] == input_ids[keep]:
            keep += 1
        self.llama.n_tokens = min(keep, len(input_ids) - 1)  # eval() drops the cache past this point
        self.llama.eval(input_ids[self.llama.n_tokens:])

    def logits(self, input_ids: list[int]) -> torch.Tensor:
        """Return raw logits (len(input_ids), vocab) float32; row t predicts token t+1."""
        self._eval(list(input_ids))
        return torch.from_numpy(np.array(self.llama.scores[:len(input_ids)], dtype=np.float32))

    def _greedy(self, input_ids: list[int], max_new_tokens: int,
                stop: Callable[[list[int]], bool] | None = None) -> list[int]:
        eos = {self.tokenizer.eos_token_id, self.llama.token_eos()} - {None}
        ids, new = list(input_ids), []
        for _ in range(min(max_new_tokens, self.n_ctx - len(ids))):
            self._eval(ids)
            token = int(np.argmax(self.llama.scores[len(ids) - 1]))
            if token in eos:
                break
            ids.append(token)
            new.append(token)
            if stop is not None and stop(new):
                break
        return new

    def generate(self, input_ids: list[int], max_new_tokens: int) -> list[int]:
        """Return greedily generated new token ids, stopping at eos (not included)."""
        return self._greedy(input_ids, max_new_tokens)

    def lm(self, batch_size: int = 1):
        """Return an lm-eval LM scoring with this model, usable as simple_evaluate(model=...)."""
        return _make_lm(self, batch_size)


def _make_lm(model: GGUFModel, batch_size: int):
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
