"""A drop-in ``TfidfVectorizer`` that counts faster and saves compactly.

Same parameters, same vocabulary and the same matrix as scikit-learn's
``TfidfVectorizer`` (tests/test_baselines.py checks equality on BBC News); two
things differ:

* counting: word n-grams are built with ``zip`` and term ids are looked up with
  C-level ``map`` into one flat array, then duplicates are summed by scipy,
  instead of a Python loop per token (about 1.5x faster fits on news text);
* persistence: ``vocabulary_`` (hundreds of thousands of terms) is stored as
  two numpy arrays (UTF-8 bytes and term lengths) rather than a dict, which
  skops would write as one JSON node per term (tens of seconds and tens of MB
  for a 100k-term vocabulary).
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from itertools import repeat
from typing import Any, Iterable

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer

_TERMS = "_vocabulary_utf8"
_LENGTHS = "_vocabulary_lengths"


class FastTfidfVectorizer(TfidfVectorizer):
    """``sklearn.feature_extraction.text.TfidfVectorizer`` with faster counting.

    Takes exactly the parameters of ``TfidfVectorizer`` and produces the same
    ``vocabulary_``, ``idf_`` and matrices.

    See Also
    --------
    sklearn.feature_extraction.text.TfidfVectorizer
    """

    def _word_ngrams(self, tokens: list[str], stop_words: Any = None) -> list[str]:
        if stop_words is not None:
            tokens = [w for w in tokens if w not in stop_words]
        min_n, max_n = self.ngram_range
        grams = list(tokens) if min_n == 1 else []
        join = " ".join
        for n in range(max(min_n, 2), max_n + 1):
            grams += map(join, zip(*(tokens[i:] for i in range(n))))
        return grams

    def _count_vocab(self, raw_documents: Iterable[Any], fixed_vocab: bool) -> tuple[dict[str, int], Any]:
        # Same contract as TfidfVectorizer's: term -> id (in order of first
        # appearance when learning) and a CSR matrix of counts with sorted indices.
        if fixed_vocab:
            vocabulary = self.vocabulary_
            get = vocabulary.get

            def lookup(features: list[str]) -> Iterable[int]:
                return map(get, features, repeat(-1))
        else:
            vocabulary = defaultdict()
            vocabulary.default_factory = vocabulary.__len__
            getitem = vocabulary.__getitem__

            def lookup(features: list[str]) -> Iterable[int]:
                return map(getitem, features)

        analyze = self.build_analyzer()
        ids = array("q")
        lengths = array("q")
        for doc in raw_documents:
            before = len(ids)
            ids.extend(lookup(analyze(doc)))
            lengths.append(len(ids) - before)
        if not fixed_vocab:
            vocabulary = dict(vocabulary)
            if not vocabulary:
                raise ValueError("empty vocabulary; perhaps the documents only contain stop words")

        cols = np.frombuffer(ids, dtype=np.int64)
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.frombuffer(lengths, dtype=np.int64), out=indptr[1:])
        if fixed_vocab and len(cols) and cols.min() < 0:  # drop out-of-vocabulary terms
            keep = cols >= 0
            indptr = np.concatenate(([0], np.cumsum(keep)))[indptr]
            cols = cols[keep]
        index_dtype = np.int64 if indptr[-1] > np.iinfo(np.int32).max else np.int32
        counts = sp.csr_array(
            (np.ones(len(cols), dtype=self.dtype), cols.astype(index_dtype), indptr.astype(index_dtype)),
            shape=(len(lengths), len(vocabulary)),
        )
        counts.sum_duplicates()  # sums repeated terms per document and sorts the indices
        if sklearn.get_config().get("sparse_interface", "spmatrix") == "spmatrix":
            counts = sp.csr_matrix(counts)
        return vocabulary, counts

    # -- compact persistence (used by pickle, copy and skops alike) ----------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        vocabulary = state.pop("vocabulary_", None)
        if vocabulary is not None:
            terms = [b""] * len(vocabulary)
            for term, idx in vocabulary.items():
                terms[idx] = term.encode("utf-8")
            state[_TERMS] = np.frombuffer(b"".join(terms), dtype=np.uint8).copy()
            state[_LENGTHS] = np.fromiter(map(len, terms), dtype=np.int64, count=len(terms))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        utf8 = state.pop(_TERMS, None)
        lengths = state.pop(_LENGTHS, None)
        super().__setstate__(state)
        if utf8 is not None and lengths is not None:
            blob = np.asarray(utf8, dtype=np.uint8).tobytes()
            ends = np.cumsum(lengths).tolist()
            starts = [0, *ends[:-1]]
            self.vocabulary_ = {blob[a:b].decode("utf-8"): i for i, (a, b) in enumerate(zip(starts, ends))}
