"""Fast near-duplicate search: MinHash LSH candidates, every one verified with the exact cosine.

The exact search (:func:`multitype.data.audit.cosine_pairs`) compares each text
with every text that shares one of its rarest words; on a corpus whose
vocabulary stops growing (news, reviews) those words recur in a fixed share of
the texts, so its work grows with the square of their number. This module finds
candidate pairs in time linear in the number of texts and then checks each
candidate with the same TF-IDF cosine, so it never reports a pair the exact
search would not; it can only miss one (recall is measured in
``benchmarks/prepare.py`` and asserted in the tests).

Candidates: each text becomes the set of its words (TF-IDF columns) that occur
in at least two texts and in at most ``max_df`` of them (the commonest words
weigh little in the cosine but would make every pair of texts look alike; a
text with no such word keeps all its shared words). ``num_perm`` MinHash values
per set, computed with numpy over a seeded random table (one gather and one
``minimum.reduceat`` per chunk of texts, in threads: numpy releases the GIL),
are cut into ``bands`` bands of ``num_perm / bands`` values; two texts are a
candidate when one band is equal. With the defaults (160 values, 32 bands of 5)
a pair whose word sets have Jaccard similarity 0.6 becomes a candidate with
probability 0.925, at 0.7 with 0.997, at 0.8 with 0.99999; pairs at cosine
>= 0.9 have word-set Jaccard >= 0.62 on the benchmark corpus (99% of them
>= 0.69), so 4 values per band would double-check 7x more candidates at one
million texts for no pair found.

Results do not depend on the number of workers: the table is seeded, and the
work is cut into chunks whose results are combined in a fixed order.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import scipy.sparse as sp

_EPS = 1e-6
# entries of one signature chunk's gathered table (num_perm values each, uint32)
_GATHER_BUDGET = 4_000_000
_VERIFY_BATCH = 200_000  # candidate pairs per verification batch
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: band values -> one key (wrapping)


@dataclass(frozen=True)
class LshParams:
    """MinHash LSH settings (``leakage.lsh`` in data_config.yaml)."""

    num_perm: int = 160
    bands: int = 32
    max_df: float = 0.05
    seed: int = 0

    @property
    def rows(self) -> int:
        """Values per band."""
        return self.num_perm // self.bands

    def candidate_probability(self, jaccard: float) -> float:
        """Probability that a pair with this word-set Jaccard similarity becomes a candidate."""
        return 1.0 - (1.0 - jaccard ** self.rows) ** self.bands

    def describe(self) -> dict[str, Any]:
        return {"num_perm": self.num_perm, "bands": self.bands, "rows_per_band": self.rows,
                "max_df": self.max_df, "seed": self.seed,
                "candidate_probability_at_jaccard": {str(j): round(self.candidate_probability(j), 4)
                                                     for j in (0.5, 0.6, 0.7, 0.8)}}


def workers(n_jobs: int | None) -> int:
    """Worker count from the joblib convention (``None`` = 1, ``-1`` = all cores, ``-2`` = all but one)."""
    cores = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return 1
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


def thread_map(fn: Callable[[Any], Any], items: Iterable[Any], n_workers: int) -> Iterator[Any]:
    """``map(fn, items)`` in order, on ``n_workers`` threads when more than one."""
    if n_workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(n_workers) as pool:
        yield from pool.map(fn, items)


# --- signatures -----------------------------------------------------------------------
def _feature_sets(X: sp.csr_matrix, max_df: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Per text, the compact ids of its words kept for MinHash: (indptr, ids, number of ids)."""
    n = X.shape[0]
    df = np.bincount(X.indices, minlength=X.shape[1])
    shared = df >= 2
    useful = shared & (df <= max(2.0, max_df * n))
    remap = np.full(X.shape[1], -1, np.int64)
    remap[shared] = np.arange(int(shared.sum()))
    rows = np.repeat(np.arange(n), np.diff(X.indptr))
    keep = useful[X.indices]
    has_useful = np.bincount(rows[keep], minlength=n) > 0
    keep |= shared[X.indices] & ~has_useful[rows]  # texts made only of common words keep them all
    ids = remap[X.indices[keep]]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=n), out=indptr[1:])
    return indptr, ids, int(shared.sum())


def signatures(X: sp.csr_matrix, params: LshParams, n_workers: int = 1,
               progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (n x num_perm, uint32) and a mask of texts with an empty set."""
    indptr, ids, n_ids = _feature_sets(X, params.max_df)
    n = X.shape[0]
    table = np.random.default_rng(params.seed).integers(0, 2**32, size=(max(n_ids, 1), params.num_perm),
                                                         dtype=np.uint32)
    sizes = np.diff(indptr)
    empty = sizes == 0
    sig = np.full((n, params.num_perm), np.iinfo(np.uint32).max, np.uint32)
    per_chunk = max(1, _GATHER_BUDGET // params.num_perm)
    bounds = [0]
    cost = np.cumsum(sizes)
    while bounds[-1] < n:
        spent = cost[bounds[-1] - 1] if bounds[-1] else 0
        bounds.append(min(n, max(bounds[-1] + 1, int(np.searchsorted(cost, spent + per_chunk, side="right")))))

    def chunk(k: int) -> int:
        a, b = bounds[k], bounds[k + 1]
        starts = indptr[a:b]
        full = sizes[a:b] > 0
        if full.any():
            gathered = table[ids[indptr[a]:indptr[b]]]
            sig[a:b][full] = np.minimum.reduceat(gathered, (starts - indptr[a])[full], axis=0)
        return b

    for done in thread_map(chunk, range(len(bounds) - 1), n_workers):
        if progress:
            progress(done, n)
    return sig, empty


# --- candidates -----------------------------------------------------------------------
def _bucket_pairs(keys: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Codes ``i * 2**32 + j`` (i < j) of every pair of ``index`` entries with equal keys."""
    order = np.argsort(keys, kind="stable")
    k, idx = keys[order], index[order]
    new = np.concatenate(([True], k[1:] != k[:-1]))
    run_start = np.flatnonzero(new)
    run_end = np.append(run_start[1:], len(k))
    end = np.repeat(run_end, run_end - run_start)
    count = end - np.arange(len(k)) - 1  # later members of the same bucket
    total = int(count.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    left = np.repeat(np.arange(len(k)), count)
    right = left + 1 + np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    a, b = idx[left], idx[right]
    return np.minimum(a, b).astype(np.int64) << 32 | np.maximum(a, b).astype(np.int64)


def candidates(sig: np.ndarray, empty: np.ndarray, bands: int, n_workers: int = 1,
               progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``i < j`` equal in at least one band, sorted, each once."""
    index = np.flatnonzero(~empty)
    rows = sig.shape[1] // bands
    part = sig if len(index) == len(sig) else sig[index]  # no copy in the usual case

    def band(b: int) -> np.ndarray:
        key = np.zeros(len(index), np.uint64)
        for c in range(b * rows, (b + 1) * rows):
            key = key * _MIX + part[:, c].astype(np.uint64)
        return np.unique(_bucket_pairs(key, index))

    codes: list[np.ndarray] = []
    for b, found in enumerate(thread_map(band, range(bands), n_workers)):
        codes.append(found)
        if progress:
            progress(b + 1, bands)
    merged = np.unique(np.concatenate(codes)) if codes else np.zeros(0, np.int64)
    return merged >> 32, merged & 0xFFFFFFFF


# --- verification ---------------------------------------------------------------------
def pair_cosines(X: sp.csr_matrix, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Dot products of rows ``i[k]`` and ``j[k]`` of ``X`` (the cosine, for L2-normalised rows)."""
    if len(i) == 0:
        return np.zeros(0, np.float32)
    return np.asarray(X[i].multiply(X[j]).sum(axis=1)).ravel()


def verify(X: sp.csr_matrix, i: np.ndarray, j: np.ndarray, threshold: float, n_workers: int = 1,
           progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs whose exact cosine is at least ``threshold``, with that cosine (float32)."""
    starts = list(range(0, len(i), _VERIFY_BATCH))

    def batch(a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bi, bj = i[a:a + _VERIFY_BATCH], j[a:a + _VERIFY_BATCH]
        sims = pair_cosines(X, bi, bj)
        hit = sims >= threshold - _EPS
        return bi[hit], bj[hit], sims[hit].astype(np.float32)

    found = []
    for k, part in enumerate(thread_map(batch, starts, n_workers)):
        found.append(part)
        if progress:
            progress(min(len(i), (k + 1) * _VERIFY_BATCH), len(i))
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    i_out, j_out, s_out = (np.concatenate([f[k] for f in found]) for k in range(3))
    return i_out.astype(np.int64), j_out.astype(np.int64), s_out


def lsh_pairs(X: sp.csr_matrix, threshold: float, params: LshParams, n_workers: int = 1,
              progress: Callable[[str], Callable[[int, int], None]] | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Near-duplicate pairs ``i < j`` (sorted) found by MinHash LSH and verified exactly.

    ``progress(stage)`` returns a ``(done, total)`` callback for each stage.
    Returns the pairs, their cosine, and counts (``candidates``).
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    stage = progress or (lambda _: None)
    sig, empty = signatures(X, params, n_workers, stage("near-duplicates: MinHash"))
    ci, cj = candidates(sig, empty, params.bands, n_workers, stage("near-duplicates: LSH buckets"))
    del sig
    i, j, s = verify(X, ci, cj, threshold, n_workers, stage("near-duplicates: verifying"))
    return i, j, s, {"candidates": int(len(ci))}
