"""GGUF export of a merged llama checkpoint, checked against transformers in llama.cpp.

No installed package converts HF checkpoints to GGUF, so `build_gguf` writes one with the `gguf`
package (llama architecture only), quantizes it with llama.cpp, and checks it against the
transformers model before the folder appears:

    from potstill.export.gguf_writer import build_gguf
    from potstill.export.gguf_runtime import GGUFModel
    from potstill.evaluation.lm_eval import gguf_lm
    report = build_gguf(Path("models/merged"), Path("models/gguf-q8_0"), "q8_0")
    model = GGUFModel(Path("models/gguf-q8_0"))
    simple_evaluate(model=gguf_lm(model, batch_size=1), tasks=[...])
"""

from __future__ import annotations

import ctypes
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import torch

from potstill.errors import InputError
from potstill.export.gguf_runtime import GGUFModel, default_threads
from potstill.export.gptq import q8_0_bytes
from potstill.io import atomic_dir, read_jsonl

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
                         "'llama' only: for this architecture use quantize.formats quanto-int8, quanto-int4 or "
                         "torchao-int8")
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

    q8_0: {HF tensor name: (int8 values, fp16 scales)} already rounded (potstill.export.gptq); those
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
    params.nthread = default_threads()
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

    from potstill.chat import tokenize_chat
    from potstill.export.gptq import collect_hessians, gptq_q8_0
    from potstill.models import load_checked

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
    q8_0-gptq writes the same q8_0 blocks rounded by GPTQ (potstill.export.gptq) on up to
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


