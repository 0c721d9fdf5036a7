"""Leakage audit: exact duplicates, conflicting labels and near-duplicates.

The audit runs before the split, on the cleaned records, and again after it
(:func:`cross_split`) to prove that no text sits in two splits.

* Exact duplicates: the same text after case folding and whitespace collapsing
  (compared by a digest, :func:`text_keys`).
* Conflicts: one such text carrying two or more labels.
* Near-duplicates: pairs of distinct texts whose TF-IDF cosine (word unigrams,
  sublinear tf, L2-normalised) is at least the threshold. :func:`cosine_pairs`
  finds *all* of them exactly, without computing the n x n similarity matrix;
  on large inputs :func:`multitype.data.neardup.lsh_pairs` finds candidates in
  linear time and keeps those whose exact cosine reaches the threshold
  (``leakage.method``, :func:`search_method`).

Under the ``drop`` policy (:func:`plan_groups`) one record of each exact
duplicate group is kept, conflicting groups are dropped whole, and every
near-duplicate cluster (connected pairs) becomes one unit that the split keeps
together; a cluster whose texts carry different labels is dropped whole too.
Keeping clusters together instead of thinning them keeps the data (near-
duplicates are often distinct articles on one story) and still leaves no pair
above the threshold across splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from multitype.data import neardup
from multitype.progress import ticking

SPLIT_NAMES = ("train", "val", "test")
N_EXAMPLES = 5
SNIPPET_CHARS = 80
# Upper bound on the entries of one chunk's candidate product (memory ~ 12 bytes each).
CHUNK_BUDGET = 4_000_000
_MARGIN = 1e-4  # float32 rounding slack in the pruning bound
_EPS = 1e-6


def row_number(records: Sequence[dict[str, Any]], r: int) -> int:
    """The 1-based input row of record ``r`` (its ``row`` key, else its position)."""
    return int(records[r].get("row", r + 1))


def normalize(text: str) -> str:
    """Case-folded text with runs of whitespace collapsed to one space."""
    return " ".join(text.casefold().split())


def fold(text: str) -> str:
    """``normalize(text).lower()`` less the whitespace collapsing: the words TF-IDF sees are the same."""
    return text.casefold().lower()


def snippet(text: str, width: int = SNIPPET_CHARS) -> str:
    """The start of ``text`` on one line, shortened to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


# --- near-duplicates ------------------------------------------------------------------
def tfidf_matrix(texts: Sequence[str], n_jobs: int | None = None) -> sp.csr_matrix:
    """L2-normalised TF-IDF rows of the normalised texts (word unigrams, sublinear tf, float32).

    ``texts`` may be raw: each is case-folded (:func:`fold`) on the way, in the
    tokenising workers when ``n_jobs`` allows them; words are runs of letters
    and digits, so the whitespace :func:`normalize` collapses does not change
    them. The matrix does not depend on ``n_jobs``.
    """
    from multitype.tfidf import FastTfidfVectorizer

    if not any(texts):
        return sp.csr_matrix((len(texts), 0), dtype=np.float32)
    vectorizer = FastTfidfVectorizer(sublinear_tf=True, dtype=np.float32, preprocessor=fold, n_jobs=n_jobs)
    try:
        return sp.csr_matrix(vectorizer.fit_transform(texts))
    except ValueError:  # empty vocabulary: no text has a word of two letters or more
        return sp.csr_matrix((len(texts), 0), dtype=np.float32)


def cosine_pairs(
    matrix: sp.csr_matrix,
    threshold: float,
    progress: Callable[[int, int], None] | None = None,
    budget: int = CHUNK_BUDGET,
    n_workers: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of rows with cosine similarity ``>= threshold``.

    Rows must be L2-normalised. The result is exact; the work is not quadratic
    in practice because of prefix filtering (Bayardo et al., "Scaling up all
    pairs similarity search", WWW 2007): order each row's features from the
    most to the least frequent and split it into a prefix ``p`` with
    ``||x_p|| < threshold`` and the rest ``s``. Since ``x.y <= ||x_p|| + x_s.y``,
    a pair can only reach the threshold if ``x_s.y > 0`` and
    ``x_s.y + ||x_p|| >= threshold``. ``x_s`` keeps only a row's few rarest
    words, so the sparse product ``X_s @ X.T`` touches few pairs; it is taken in
    chunks of rows sized to ``budget`` entries, and only its surviving
    candidates are verified with exact dot products. On a 100,000-document
    corpus with a Zipf vocabulary this takes about 10 s on two cores.

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix
        One L2-normalised row per text.
    threshold : float
        Minimum cosine similarity, in (0, 1].
    progress : callable, optional
        Called as ``progress(rows_done, rows_total)`` after each chunk.
    budget : int, default=CHUNK_BUDGET
        Rough cap on the entries of one chunk's candidate product (memory).
    n_workers : int, default=1
        Threads that take chunks (scipy and numpy release the GIL); the result
        does not depend on it.

    Returns
    -------
    (i, j, sim) : three arrays
        Row indices with ``i < j`` and their cosine similarity, sorted by ``i, j``.
    """
    X = sp.csr_matrix(matrix, dtype=np.float32)
    n = X.shape[0]
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if n < 2 or X.nnz == 0:
        if progress:
            progress(n, n)
        return empty
    df = np.bincount(X.indices, minlength=X.shape[1])
    rank = np.empty(X.shape[1], np.int64)
    rank[np.argsort(-df, kind="stable")] = np.arange(X.shape[1])
    lengths = np.diff(X.indptr)
    rows = np.repeat(np.arange(n), lengths)
    order = np.lexsort((rank[X.indices], rows))  # by row, then commonest feature first
    data, cols = X.data[order], X.indices[order]
    squares = np.cumsum(data.astype(np.float64) ** 2)
    within = squares - np.repeat(np.concatenate(([0.0], squares))[X.indptr[:-1]], lengths)
    prefix = np.sqrt(within) < threshold - _MARGIN
    n_prefix = np.bincount(rows[prefix], minlength=n)
    last = X.indptr[:-1] + n_prefix - 1
    prefix_norm = np.where(n_prefix > 0, np.sqrt(within[np.maximum(last, 0)]), 0.0)

    keep = ~prefix
    suffix_len = np.bincount(rows[keep], minlength=n)
    Xs = sp.csr_matrix((data[keep], cols[keep], np.concatenate(([0], np.cumsum(suffix_len)))), shape=X.shape)
    XT = X.T.tocsr()
    # rows per chunk from an upper bound on each row's product entries
    cost = np.cumsum(np.bincount(rows[keep], weights=df[cols[keep]], minlength=n))
    bounds = [0]
    while bounds[-1] < n:
        spent = cost[bounds[-1] - 1] if bounds[-1] else 0.0
        bounds.append(min(n, max(bounds[-1] + 1, int(np.searchsorted(cost, spent + budget, side="right")))))

    def chunk(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        start, stop = bounds[k], bounds[k + 1]
        cand = (Xs[start:stop] @ XT).tocoo()
        i = cand.row.astype(np.int64) + start
        j = cand.col.astype(np.int64)
        ok = (j > i) & (cand.data + prefix_norm[i] >= threshold - _EPS)
        return (*neardup.verify(X, i[ok], j[ok], threshold), stop)

    found_i, found_j, found_s = [], [], []
    for bi, bj, bs, stop in neardup.thread_map(chunk, range(len(bounds) - 1), n_workers):
        found_i.append(bi)
        found_j.append(bj)
        found_s.append(bs)
        if progress:
            progress(stop, n)
    if not found_i:
        return empty
    i, j, s = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)
    order = np.lexsort((j, i))
    return i[order], j[order], s[order]


# --- the audit ------------------------------------------------------------------------
@dataclass
class Audit:
    """Findings on a list of records.

    Attributes
    ----------
    unit_of : numpy.ndarray
        Record index -> unit (one unit per distinct normalised text).
    members : list of list of int
        Unit -> its record indices, ascending; units ordered by first record.
    labels : list of tuple of str
        Unit -> its distinct labels, in order of appearance.
    near_i, near_j, near_sim : numpy.ndarray
        Near-duplicate pairs of units (``i < j``) and their cosine similarity.
    threshold : float
        The near-duplicate threshold used.
    search : dict
        How the pairs were found: ``method`` (exact or lsh), why, its parameters.
    keys : list of bytes
        Record index -> digest of its normalised text (:func:`text_keys`).
    words : numpy.ndarray
        Record index -> its number of words.
    """

    unit_of: np.ndarray
    members: list[list[int]]
    labels: list[tuple[str, ...]]
    near_i: np.ndarray
    near_j: np.ndarray
    near_sim: np.ndarray
    threshold: float
    search: dict[str, Any] = field(default_factory=lambda: {"method": "exact"})
    keys: list[bytes] = field(default_factory=list)
    words: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    @property
    def duplicate_units(self) -> list[int]:
        """Units that hold more than one record (exact duplicates)."""
        return [u for u, m in enumerate(self.members) if len(m) > 1]

    @property
    def conflict_units(self) -> list[int]:
        """Units whose records carry more than one label."""
        return [u for u, labels in enumerate(self.labels) if len(labels) > 1]

    def near_clusters(self, units: np.ndarray | None = None) -> list[list[int]]:
        """Connected components (size >= 2) of the near-duplicate graph, on ``units`` only."""
        from scipy.sparse.csgraph import connected_components

        n = len(self.members)
        allowed = np.ones(n, bool) if units is None else np.isin(np.arange(n), units)
        ok = allowed[self.near_i] & allowed[self.near_j]
        graph = sp.coo_matrix((np.ones(int(ok.sum())), (self.near_i[ok], self.near_j[ok])), shape=(n, n))
        _, component = connected_components(graph, directed=False)
        touched = np.unique(np.concatenate((self.near_i[ok], self.near_j[ok])))
        clusters: dict[int, list[int]] = {}
        for u in touched:
            clusters.setdefault(int(component[u]), []).append(int(u))
        return sorted(clusters.values())


def text_keys(texts: Sequence[str], n_workers: int = 1) -> tuple[list[bytes], np.ndarray]:
    """A 16-byte digest of each normalised text (equal digests: exact duplicates) and its number of words.

    Digests instead of the normalised texts keep one copy of the texts in memory.
    """
    size = 20_000
    if n_workers <= 1 or len(texts) < 2 * size:
        keys, words = _digests(texts)
        return keys, words
    from joblib import Parallel, delayed

    size = max(size, -(-len(texts) // (4 * n_workers)))
    parts = Parallel(n_jobs=n_workers)(delayed(_digests)(texts[a:a + size]) for a in range(0, len(texts), size))
    return [key for part in parts for key in part[0]], np.concatenate([part[1] for part in parts])


def _digests(texts: Sequence[str]) -> tuple[list[bytes], np.ndarray]:
    from hashlib import blake2b

    keys, words = [], np.empty(len(texts), np.int32)
    for k, text in enumerate(texts):
        parts = text.casefold().split()
        words[k] = len(parts)
        keys.append(blake2b(" ".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).digest())
    return keys, words


def search_method(method: str, units: int, auto_lsh_from: int) -> tuple[str, str]:
    """The search ``method`` resolves to for ``units`` distinct texts, and why."""
    if method != "auto":
        return method, f"leakage.method: {method}"
    if units >= auto_lsh_from:
        return "lsh", f"auto: {units:,} distinct texts >= auto_lsh_from ({auto_lsh_from:,})"
    return "exact", f"auto: {units:,} distinct texts < auto_lsh_from ({auto_lsh_from:,})"


def run_audit(records: Sequence[dict[str, str]], threshold: float,
              stage: Callable[[str], Callable[[int, int], None]] | None = None, method: str = "exact",
              lsh: neardup.LshParams | None = None, auto_lsh_from: int = 20_000, n_workers: int = 1) -> Audit:
    """Group exact duplicates, find conflicts and near-duplicate pairs.

    Parameters
    ----------
    records : sequence of dict
        Cleaned ``{"text", "label"}`` records.
    threshold : float
        TF-IDF cosine at or above which two distinct texts are near-duplicates.
    stage : callable, optional
        ``stage(description)`` returns a ``(done, total)`` progress callback.
    method : {"exact", "lsh", "auto"}, default="exact"
        The near-duplicate search (:func:`cosine_pairs` or
        :func:`multitype.data.neardup.lsh_pairs`); ``auto`` takes ``lsh`` from
        ``auto_lsh_from`` distinct texts on.
    lsh : LshParams, optional
        MinHash LSH settings.
    n_workers : int, default=1
        Processes and threads; the findings do not depend on it.
    """
    task = stage or (lambda _: None)
    index: dict[bytes, int] = {}
    unit_of = np.empty(len(records), np.int64)
    members: list[list[int]] = []
    labels: list[list[str]] = []
    with ticking(task("exact duplicates: hashing")):
        keys, words = text_keys([r["text"] for r in records], n_workers)
    for r, (record, key) in enumerate(zip(records, keys)):
        u = index.setdefault(key, len(members))
        if u == len(members):
            members.append([])
            labels.append([])
        unit_of[r] = u
        members[u].append(r)
        if record["label"] not in labels[u]:
            labels[u].append(record["label"])
    del index
    chosen, why = search_method(method, len(members), auto_lsh_from)
    with ticking(task("near-duplicates: TF-IDF")):
        matrix = tfidf_matrix([records[m[0]]["text"] for m in members], n_jobs=n_workers)
    search: dict[str, Any] = {"method": chosen, "chosen_by": why, "workers": n_workers}
    if chosen == "lsh":
        params = lsh or neardup.LshParams()
        i, j, s, counts = neardup.lsh_pairs(matrix, threshold, params, n_workers, task)
        search.update(params.describe(), **counts)
    else:
        i, j, s = cosine_pairs(matrix, threshold, progress=task("near-duplicates: exact search"), n_workers=n_workers)
    return Audit(unit_of, members, [tuple(x) for x in labels], i, j, s, threshold, search, keys, words)


@dataclass
class Plan:
    """What the split gets: groups of records that stay together, and what was dropped.

    Attributes
    ----------
    groups : list of list of int
        Record indices; each group has one label and goes to one split.
    group_labels : list of str
        The label of each group.
    dropped : dict of str to list of int
        Reason -> record indices removed before the split.
    """

    groups: list[list[int]]
    group_labels: list[str]
    dropped: dict[str, list[int]]


def plan_groups(audit: Audit, records: Sequence[dict[str, str]], policy: str) -> Plan:
    """Apply the leakage policy: ``drop`` dedupes and groups, ``warn`` keeps every record.

    ``fail`` is decided by the caller before this is reached; here it behaves
    like ``warn`` (nothing to drop when nothing was found).
    """
    if policy != "drop":
        return Plan([[r] for r in range(len(records))], [r["label"] for r in records], {})
    conflicts = set(audit.conflict_units)
    dropped: dict[str, list[int]] = {"exact_duplicates": [], "label_conflicts": [], "near_duplicate_conflicts": []}
    for u, rows in enumerate(audit.members):
        if u in conflicts:
            dropped["label_conflicts"].extend(rows)
        else:
            dropped["exact_duplicates"].extend(rows[1:])
    kept_units = np.array([u for u in range(len(audit.members)) if u not in conflicts], dtype=np.int64)
    in_cluster: set[int] = set()
    groups: list[list[int]] = []
    group_labels: list[str] = []
    for cluster in audit.near_clusters(kept_units):
        in_cluster.update(cluster)
        cluster_labels = {audit.labels[u][0] for u in cluster}
        if len(cluster_labels) > 1:
            dropped["near_duplicate_conflicts"].extend(audit.members[u][0] for u in cluster)
            continue
        groups.append(sorted(audit.members[u][0] for u in cluster))
        group_labels.append(audit.labels[cluster[0]][0])
    for u in kept_units:
        if int(u) not in in_cluster:
            groups.append([audit.members[u][0]])
            group_labels.append(audit.labels[u][0])
    order = sorted(range(len(groups)), key=lambda g: groups[g][0])
    return Plan([groups[g] for g in order], [group_labels[g] for g in order],
                {reason: sorted(rows) for reason, rows in dropped.items()})


def cross_split(audit: Audit, records: Sequence[dict[str, str]], split_of: np.ndarray) -> dict[str, Any]:
    """Exact and near-duplicates that ended up in different splits.

    ``split_of`` holds, per record, the index of its split in :data:`SPLIT_NAMES`
    or -1 for a dropped record. Exact duplicates are recomputed from the digests
    of the split records' texts, not from the plan's groups; near-duplicates come from the audit's pair list, which
    is exact, so restricting it to the kept records needs no second search.
    """
    kept = np.flatnonzero(split_of >= 0)
    keys = audit.keys or text_keys([r["text"] for r in records])[0]
    by_text: dict[bytes, int] = {}
    for r in kept:
        key = keys[r]
        by_text[key] = by_text.get(key, 0) | (1 << int(split_of[r]))
    exact_examples, exact = [], 0
    for key, mask in by_text.items():
        if mask & (mask - 1):  # more than one bit: more than one split
            exact += 1
            if len(exact_examples) < N_EXAMPLES:
                rows = [int(r) for r in kept if keys[r] == key]
                exact_examples.append({"rows": [row_number(records, r) for r in rows], "splits": _splits(mask),
                                       "text": snippet(normalize(records[rows[0]]["text"]))})
    unit_mask = np.zeros(len(audit.members), np.int64)
    np.bitwise_or.at(unit_mask, audit.unit_of[kept], 1 << split_of[kept])
    both = unit_mask[audit.near_i] | unit_mask[audit.near_j]
    crossing = (unit_mask[audit.near_i] > 0) & (unit_mask[audit.near_j] > 0) & ((both & (both - 1)) > 0)
    near_examples = [{**_pair(audit, records, i, j, s), "splits": _splits(int(m))}
                     for i, j, s, m in list(zip(audit.near_i[crossing], audit.near_j[crossing],
                                                audit.near_sim[crossing], both[crossing]))[:N_EXAMPLES]]
    return {"exact_duplicates": exact, "near_duplicates": int(crossing.sum()),
            "exact_examples": exact_examples, "near_examples": near_examples}


def _pair(audit: Audit, records: Sequence[dict[str, str]], i: Any, j: Any, sim: Any) -> dict[str, Any]:
    """One near-duplicate pair of units as an example: rows, similarity, labels, snippets."""
    first = [audit.members[int(i)][0], audit.members[int(j)][0]]
    return {"rows": [row_number(records, r) for r in first], "similarity": round(float(sim), 4),
            "labels": [records[r]["label"] for r in first], "texts": [snippet(records[r]["text"]) for r in first]}


def _splits(mask: int) -> list[str]:
    return [name for k, name in enumerate(SPLIT_NAMES) if mask & (1 << k)]


def findings(audit: Audit, records: Sequence[dict[str, str]]) -> dict[str, Any]:
    """Counts and a few examples of each finding (rows are 1-based input rows)."""
    def rows(u: int) -> list[int]:
        return [row_number(records, r) for r in audit.members[u]]

    dup_units = audit.duplicate_units
    conflict_units = audit.conflict_units
    clusters = audit.near_clusters()
    return {
        "exact_duplicates": {
            "groups": len(dup_units),
            "extra_rows": sum(len(audit.members[u]) - 1 for u in dup_units),
            "rows_in_groups": sum(len(audit.members[u]) for u in dup_units),
            "examples": [{"rows": rows(u), "labels": list(audit.labels[u]),
                          "text": snippet(records[audit.members[u][0]]["text"])} for u in dup_units[:N_EXAMPLES]],
        },
        "label_conflicts": {
            "groups": len(conflict_units),
            "rows": sum(len(audit.members[u]) for u in conflict_units),
            "examples": [{"rows": rows(u), "labels": [records[r]["label"] for r in audit.members[u]],
                          "text": snippet(records[audit.members[u][0]]["text"])}
                         for u in conflict_units[:N_EXAMPLES]],
        },
        "near_duplicates": {
            "method": "TF-IDF cosine, word unigrams, sublinear tf; pairs of distinct normalised texts",
            "threshold": audit.threshold,
            "search": audit.search,
            "pairs": len(audit.near_i),
            "clusters": len(clusters),
            "texts_in_clusters": sum(len(c) for c in clusters),
            "mixed_label_clusters": sum(1 for c in clusters if len({audit.labels[u][0] for u in c}) > 1),
            "examples": [_pair(audit, records, i, j, s)
                         for i, j, s in list(zip(audit.near_i, audit.near_j, audit.near_sim))[:N_EXAMPLES]],
        },
    }
