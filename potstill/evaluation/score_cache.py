"""The evaluation score cache: a model's scores are reused only when nothing that made them changed.

The key covers the model's bytes, the task files, the test split, the reference model, the
evaluate settings, and the code: the source of every module that computes a score (CODE_MODULES)
and the lm-eval and transformers versions. Editing a metric function therefore re-scores.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

from potstill.io import folder_digest, state_dir, write_text_atomic

# Modules whose code decides a cached score (relative to the potstill package).
CODE_MODULES = ("chat.py", "evaluation", "export/gguf_runtime.py", "export/quantize.py", "models.py", "tasks.py")
CODE_PACKAGES = ("lm-eval", "transformers", "llama_cpp_python", "optimum-quanto")


def code_digest(root: Path | None = None) -> str:
    """Return a hash of the scoring code (CODE_MODULES' sources) and the versions of CODE_PACKAGES."""
    root = Path(root or Path(__file__).resolve().parents[1])
    digest = hashlib.sha256()
    for name in CODE_MODULES:
        path = root / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    for package in CODE_PACKAGES:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{package}=={version}".encode())
    return digest.hexdigest()


class ScoreCache:
    """Scores keyed by (model bytes, task files, test split, reference model, settings, code), in the state dir.

    The teacher and the untrained student rarely change: a rerun of evaluate after a training
    change reuses their scores instead of paying for them again. `reference` (the teacher) is in
    the key because KL and top-1 agreement are measured against it.
    """

    SCHEMA = 2  # bump when a cached record gains or changes fields

    def __init__(self, settings: dict, task_dir: Path | list[Path], test_file: Path, reference: Path | None = None,
                 task_specs: list | None = None):
        self.root = state_dir() / "eval-cache"
        self._digests: dict[Path, str] = {}
        folders = task_dir if isinstance(task_dir, list) else [task_dir]
        self.context = json.dumps({
            **settings, "schema": self.SCHEMA, "tasks_digest": [folder_digest(folder) for folder in folders],
            # data files found beside a task's YAML (task_specs): where they were read from
            "task_data": [spec if isinstance(spec, str) else [spec["task"], spec["dataset_kwargs"]["data_files"]]
                          for spec in task_specs or []],
            "code_digest": code_digest(),
            "test_digest": hashlib.sha256(Path(test_file).read_bytes()).hexdigest(),
            "reference_digest": self.digest(reference) if reference is not None else None,
        }, sort_keys=True)

    def digest(self, folder: Path) -> str:
        """Return folder_digest(folder), computed once per run: it reads every byte (500 MB for the teacher)."""
        folder = Path(folder)
        if folder not in self._digests:
            self._digests[folder] = folder_digest(folder)
        return self._digests[folder]

    def _path(self, model: Path | tuple[Path, ...]) -> Path:
        folders = model if isinstance(model, tuple) else (model,)
        key = hashlib.sha256(("".join(self.digest(folder) for folder in folders) + self.context).encode())
        return self.root / f"{key.hexdigest()}.json"

    def get(self, model: Path | tuple[Path, ...]) -> dict | None:
        """Return the cached record of a model folder (or folders, e.g. base + adapter), None if absent."""
        path = self._path(model)
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, model: Path | tuple[Path, ...], scores: dict) -> None:
        write_text_atomic(self._path(model), json.dumps(scores))
