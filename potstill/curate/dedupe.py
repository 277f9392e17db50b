"""Near-duplicate detection: MinHash LSH over word shingles of the kept rows."""

from __future__ import annotations

import numpy as np

from potstill.text import words


class NearDuplicates:
    """MinHash LSH over word shingles: finds an earlier kept row whose Jaccard similarity is high.

    datasketch computes the MinHash signatures and picks the LSH banding (b bands of r rows).
    The band tables are plain dicts of {band hash: row index}, not datasketch's MinHashLSH
    storage, which keeps a set and a bytes key per band per row: at b=25 that index alone held
    7.9 KB a row, these tables plus the signatures about 2.5 KB (bench/curate_bench.py).
    Candidates are confirmed against the stored signature (4 bytes per permutation), so a
    chance band collision never drops a row.
    """

    # Banding tuned for recall (false negatives weigh 9x false positives): a candidate that is
    # not a near-duplicate costs one signature comparison, a missed near-duplicate stays in.
    LSH_WEIGHTS = (0.1, 0.9)
    BLOCK = 4096  # signatures per storage block

    def __init__(self, threshold: float, num_perm: int, shingle_size: int):
        from datasketch import MinHash, MinHashLSH

        self.threshold, self.shingle_size = threshold, shingle_size
        banding = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=self.LSH_WEIGHTS)
        self.bands, self.rows_per_band = banding.b, banding.r
        self.tables: list[dict[int, int | list[int]]] = [{} for _ in range(self.bands)]
        self._template = MinHash(num_perm=num_perm, seed=1)  # permutations computed once, shared
        # Fixed-size blocks, not one array grown by doubling: growing would copy everything and
        # briefly hold it twice.
        self._blocks: list[np.ndarray] = []
        self.ids: list[str] = []

    def shingles(self, text: str) -> set[bytes]:
        """Return the set of word shingles of `text` (the whole text when it is shorter than one)."""
        tokens = words(text)
        k = min(self.shingle_size, len(tokens)) or 1
        return {" ".join(tokens[i:i + k]).encode() for i in range(max(len(tokens) - k + 1, 1))}

    def signature(self, text: str) -> np.ndarray:
        """Return the MinHash signature of `text`'s shingles (num_perm uint32 values)."""
        minhash = self._template.copy()  # an empty MinHash sharing the template's permutations
        minhash.update_batch(list(self.shingles(text)))
        return minhash.hashvalues

    def _band_keys(self, signature: np.ndarray) -> list[int]:
        r = self.rows_per_band
        return [hash(signature[i * r:(i + 1) * r].tobytes()) for i in range(self.bands)]

    def find(self, signature: np.ndarray) -> tuple[str, float] | None:
        """Return (id, estimated Jaccard) of the most similar earlier row at or above the threshold."""
        candidates: set[int] = set()
        for table, key in zip(self.tables, self._band_keys(signature), strict=True):
            hit = table.get(key)
            if isinstance(hit, list):
                candidates.update(hit)
            elif hit is not None:
                candidates.add(hit)
        if not candidates:
            return None
        indices = sorted(candidates)
        stored = np.stack([self._blocks[i // self.BLOCK][i % self.BLOCK] for i in indices])
        similarity = (stored == signature).mean(axis=1)
        best = int(similarity.argmax())
        if similarity[best] < self.threshold:
            return None
        return self.ids[indices[best]], float(similarity[best])

    def add(self, row_id: str, signature: np.ndarray) -> None:
        """Index a kept row so that later rows are compared with it."""
        index = len(self.ids)
        if index % self.BLOCK == 0:
            self._blocks.append(np.empty((self.BLOCK, len(signature)), dtype=signature.dtype))
        self._blocks[-1][index % self.BLOCK] = signature
        self.ids.append(row_id)
        for table, key in zip(self.tables, self._band_keys(signature), strict=True):
            hit = table.get(key)
            if hit is None:
                table[key] = index
            elif isinstance(hit, list):
                hit.append(index)
            else:
                table[key] = [hit, index]
