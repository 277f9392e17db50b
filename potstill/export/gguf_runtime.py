"""A GGUF model loaded in llama.cpp: exact logits (KV cache reused across prefixes) and greedy generation."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from potstill.errors import InputError


def default_threads() -> int:
    # llama.cpp on every core collapses as soon as anything else runs on this box.
    return max(1, (os.cpu_count() or 2) // 2)


class GGUFModel:
    """A model.gguf loaded in llama.cpp for scoring, with the HF tokenizer saved beside it."""

    def __init__(self, folder: Path, n_ctx: int = 2048, n_threads: int | None = None):
        from llama_cpp import Llama
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        path = self.folder / "model.gguf"
        if not path.is_file():
            raise InputError(f"{path}: no GGUF model here; build it with the quantize stage (gguf qtypes)")
        threads = n_threads or default_threads()
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
                stop: Callable[[list[int]], bool] | None = None, stop_at_eos: bool = True) -> list[int]:
        eos = {self.tokenizer.eos_token_id, self.llama.token_eos()} - {None} if stop_at_eos else set()
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

    def generate(self, input_ids: list[int], max_new_tokens: int, stop_at_eos: bool = True) -> list[int]:
        """Return greedily generated new token ids, stopping at end-of-turn (not included) unless told not to."""
        return self._greedy(input_ids, max_new_tokens, stop_at_eos=stop_at_eos)
