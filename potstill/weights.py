"""Where a model's weights live: the embedded GGUF, a local folder, a Hugging Face hub id, a GGUF file.

    teacher.weights / student.source      what it means
    embedded                               the GGUF inside teacher.gguf_package (converted by prepare)
    models/llama-8b   (a folder)           HF safetensors weights in that folder, used where they are
    hf:Qwen/Qwen2.5-0.5B-Instruct          a hub id, read from the local hub cache ($HF_HOME / $HF_HUB_CACHE)
    path/to/model.gguf                     a GGUF file (converted by prepare, like the embedded one)
    none                                   no weights (an API teacher with kd.source api or none)

Weights that already live somewhere (a folder, the hub cache) are never copied into the workspace or
the DVC cache: prepare writes a pointer (`potstill_weights.json`: the id and the resolved commit
sha, or the folder as written in params.yaml, and each file's size) as the stage output, so
dvc.lock records what was used without hashing 140 GB, and every later stage loads the weights
from where they are (`weights_dir`). A hub id is read from the local cache only (nothing is
downloaded); one that is missing names the `hf download` command to run first.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from potstill.errors import InputError

POINTER_FILE = "potstill_weights.json"
# A chat template written next to a pointer overrides the pointed-to tokenizer's (a base-model
# student given the teacher's template); see load_tokenizer.
TEMPLATE_FILE = "chat_template.jinja"
HUB_PREFIX = "hf:"
# Small files fingerprinted by content; the weights themselves by size (hub files are fixed by the sha).
CONTENT_HASHED = ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")


@dataclass(frozen=True)
class WeightsSource:
    """A parsed teacher.weights / student.source value."""

    kind: str  # embedded, folder, hub, gguf, none, prune
    where: str | None = None  # the folder, hub id or GGUF path
    revision: str | None = None

    @classmethod
    def parse(cls, value: str, revision: str | None = None, key: str = "teacher.weights") -> WeightsSource:
        if value in ("embedded", "none", "prune"):
            if revision:
                raise InputError(f"{key}: {value!r} takes no revision; set the matching revision to null")
            return cls(value)
        if value.startswith(HUB_PREFIX):
            repo_id = value[len(HUB_PREFIX):]
            if repo_id.count("/") != 1 or not all(repo_id.split("/")):
                raise InputError(f"{key}: {value!r} is not a hub id; write hf:<organisation>/<name>, "
                                 "e.g. hf:Qwen/Qwen2.5-0.5B-Instruct")
            return cls("hub", repo_id, revision)
        if revision:
            raise InputError(f"{key}: a revision applies to hub ids (hf:<org>/<name>) only; {value!r} is a path")
        if value.endswith(".gguf"):
            return cls("gguf", value)
        return cls("folder", value)


def teacher_source(teacher, served: bool = False) -> WeightsSource:
    """Return teacher.weights parsed; InputError when there is no endpoint to ask and no weights to serve.

    `served`: the caller is about to serve the weights itself (teacher.base_url null is assumed).
    """
    source = WeightsSource.parse(teacher.weights, teacher.revision, "teacher.weights")
    if (served or teacher.base_url is None) and source.kind == "none":
        raise InputError("teacher.weights is none and teacher.base_url is null: there is no teacher to ask. Set "
                         "teacher.base_url to your OpenAI-compatible endpoint, or teacher.weights to its weights")
    return source


def gguf_file(source: WeightsSource) -> Path:
    """Return the GGUF file a `gguf` source names; InputError when it is not there."""
    path = Path(source.where)
    if not path.is_file():
        raise InputError(f"teacher.weights: {source.where!r} does not exist; give the path of a .gguf file, "
                         "relative to the repository root")
    return path


def resolve_hub(repo_id: str, revision: str | None, key: str) -> Path:
    """Return the snapshot folder of a hub model in the local cache; InputError with the download command if absent."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        pin = f" --revision {revision}" if revision else ""
        cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        raise InputError(
            f"{key}: hf:{repo_id}" + (f" at revision {revision}" if revision else "")
            + f" is not in the local Hugging Face cache ({cache}); potstill never downloads by itself. "
            f"Run `hf download {repo_id}{pin}` first (a gated model such as Llama needs its licence accepted "
            "on the hub and HF_TOKEN exported), or point at a local folder instead"
        ) from None


def _file_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def locate(source: WeightsSource, key: str) -> tuple[Path, dict]:
    """Return (the folder holding the weights, the pointer recording them) for a folder or hub source."""
    if source.kind == "hub":
        folder = resolve_hub(source.where, source.revision, key)
        pointer = {"kind": "hub", "id": source.where, "revision": folder.name}  # snapshots/<commit sha>
    elif source.kind == "folder":
        folder = Path(source.where)
        if not (folder / "config.json").is_file():
            raise InputError(f"{key}: {source.where!r} is not a model folder (no config.json in {folder.resolve()})")
        pointer = {"kind": "folder", "path": source.where}
    else:
        raise ValueError(source.kind)
    if not any(folder.glob("*.safetensors")):
        raise InputError(f"{key}: {folder} holds no safetensors weights; safetensors is required (pickled .bin "
                         "weights can run arbitrary code when loaded): re-save with save_pretrained")
    pointer["sizes"] = _file_sizes(folder)
    pointer["digests"] = {name: _digest(folder / name) for name in CONTENT_HASHED if (folder / name).is_file()}
    return folder, pointer


def write_pointer(out: Path, pointer: dict, extra_files: dict[str, str] | None = None) -> None:
    """Write a pointer output folder (no weights): the pointer JSON and any small extra files."""
    from potstill.io import atomic_dir

    with atomic_dir(out) as tmp:
        (tmp / POINTER_FILE).write_text(json.dumps(pointer, indent=2, sort_keys=True) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)


def read_pointer(folder: str | Path) -> dict | None:
    path = Path(folder) / POINTER_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def weights_dir(folder: str | Path) -> Path | None:
    """Return the folder to load weights from: `folder` itself, or where its pointer points (None: no weights)."""
    pointer = read_pointer(folder)
    if pointer is None:
        return Path(folder)
    if pointer["kind"] == "none":
        return None
    if pointer["kind"] == "hub":
        return resolve_hub(pointer["id"], pointer["revision"], str(folder))
    return Path(pointer["path"])


def load_tokenizer(folder: str | Path):
    """Return the tokenizer of a model folder or pointer, with the pointer's chat template if it carries one."""
    from transformers import AutoTokenizer

    source = weights_dir(folder)
    if source is None:
        raise InputError(f"{folder}: this run has no weights here (teacher.weights: none)")
    tokenizer = AutoTokenizer.from_pretrained(source)
    template = Path(folder) / TEMPLATE_FILE
    if source != Path(folder) and template.is_file():
        tokenizer.chat_template = template.read_text()
    return tokenizer
