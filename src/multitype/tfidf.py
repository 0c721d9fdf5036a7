"""A drop-in ``TfidfVectorizer`` that counts faster, on all cores, and saves compactly.

Same parameters (plus ``n_jobs``), same vocabulary and the same matrices, down
to the storage order of each row, as scikit-learn's ``TfidfVectorizer``
(tests/test_baselines.py checks equality on BBC News). What differs:

* word analyzer (fit and transform): documents are tokenised in chunks, in
  worker processes when ``n_jobs`` allows it and there are enough documents;
  each chunk maps its tokens to integer ids with a local vocabulary and the
  main process merges them. Word n-grams then become int64 keys (id of the
  (n-1)-gram x number of words + id of the last word) that pandas factorises
  by hashing, so an n-gram string is built once per distinct n-gram (when
  transforming) or once per term that passes ``min_df`` (when fitting), never
  per occurrence;
* other analyzers: one flat array of term ids per pass (C-level ``map``), with
  duplicates summed by scipy;
* persistence: ``vocabulary_`` (hundreds of thousands of terms) is stored as
  two numpy arrays (UTF-8 bytes and term lengths) rather than a dict, which
  skops would write as one JSON node per term. The fitted object holds no pool
  or worker: ``n_jobs`` is a plain integer.

The fast counting replaces three private hooks of scikit-learn's
``CountVectorizer`` (``_count_vocab``, ``_limit_features``, ``_sort_features``),
whose contracts change between releases (1.4's ``_limit_features`` returned a
pair). It runs only on the scikit-learn releases it is tested on,
:data:`TESTED_SKLEARN`; on any other release each hook hands over to
scikit-learn's own, with a :class:`TfidfFallbackWarning` at fit time, so the
class still works (and saved models still load), at the stock speed.
"""

from __future__ import annotations

import re
import warnings
from array import array
from collections import defaultdict
from itertools import pairwise
from numbers import Integral
from typing import Any, Iterable, Sequence

import numpy as np
import scipy.sparse as sp
import sklearn
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.feature_extraction.text import TfidfVectorizer

_TERMS = "_vocabulary_utf8"
_LENGTHS = "_vocabulary_lengths"
# below this many documents per worker, starting processes costs more than it saves
_MIN_DOCS_PER_JOB = 1_000
_CHUNKS_PER_JOB = 2  # a little load balancing on a shared machine
# (first, last) scikit-learn minor release the fast counting is tested on, both included:
# tests/test_baselines.py on the installed one; README.md (Tests and benchmarks) lists the others tried
TESTED_SKLEARN: tuple[tuple[int, int], tuple[int, int]] = ((1, 5), (1, 9))


class TfidfFallbackWarning(UserWarning):
    """The installed scikit-learn is outside :data:`TESTED_SKLEARN`: the stock counting runs."""


def _minor(version: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def fast_counting_supported(version: str | None = None) -> bool:
    """Whether the fast counting runs on scikit-learn ``version`` (default: the installed one)."""
    minor = _minor(sklearn.__version__ if version is None else version)
    return minor is not None and TESTED_SKLEARN[0] <= minor <= TESTED_SKLEARN[1]


def fallback_notice(version: str | None = None) -> str | None:
    """The one-line notice for a scikit-learn outside :data:`TESTED_SKLEARN`, else None."""
    version = sklearn.__version__ if version is None else version
    if fast_counting_supported(version):
        return None
    (a, b), (c, d) = TESTED_SKLEARN
    return (f"scikit-learn {version} is outside the range the fast TF-IDF is tested on ({a}.{b}-{c}.{d}); "
            "using the stock vectorizer")


def _as_sparse_api(counts: sp.csr_array) -> Any:
    if sklearn.get_config().get("sparse_interface", "spmatrix") == "spmatrix":
        return sp.csr_matrix(counts)
    return counts


def _csr(cols: np.ndarray, lengths: np.ndarray, n_cols: int, dtype: Any) -> sp.csr_array:
    """Counts from a flat array of column ids per document (duplicates summed, indices sorted)."""
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    index_dtype = np.int64 if max(indptr[-1], n_cols) > np.iinfo(np.int32).max else np.int32
    counts = sp.csr_array((np.ones(len(cols), dtype=dtype), cols.astype(index_dtype, copy=False),
                           indptr.astype(index_dtype)), shape=(len(lengths), n_cols))
    counts.sum_duplicates()  # sums repeated terms per document and sorts the indices
    return counts


def _drop_negative(cols: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cols`` without its -1 entries (unknown terms) and the new per-document lengths."""
    keep = cols >= 0
    if keep.all():
        return cols, lengths
    ends = np.cumsum(np.concatenate(([0], keep)))[np.cumsum(np.concatenate(([0], lengths)))]
    return cols[keep], np.diff(ends)


def _tokenize_chunk(vectorizer: TfidfVectorizer, docs: Sequence[Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(local word vocabulary in order of first appearance, word ids of all documents, words per document)."""
    decode, preprocess, tokenize = vectorizer.decode, vectorizer.build_preprocessor(), vectorizer.build_tokenizer()
    stop_words = vectorizer.get_stop_words()
    vocabulary: defaultdict[str, int] = defaultdict()
    vocabulary.default_factory = vocabulary.__len__
    getitem = vocabulary.__getitem__
    ids, lengths = array("i"), array("q")
    for doc in docs:
        tokens = tokenize(preprocess(decode(doc)))
        if stop_words is not None:
            tokens = [w for w in tokens if w not in stop_words]
        before = len(ids)
        ids.extend(map(getitem, tokens))
        lengths.append(len(ids) - before)
    return list(vocabulary), np.frombuffer(ids, dtype=np.int32), np.frombuffer(lengths, dtype=np.int64)


class _Grams:
    """Every word n-gram (n <= ``max_n``) of tokenised documents, as dense integer codes.

    Level ``n`` numbers its distinct n-grams in order of first appearance;
    ``codes[n]`` holds, for each n-gram occurrence (in document order), its code,
    ``starts[n]`` the position of its first word and ``keys[n]`` the int64 key
    of each code (``code of the (n-1)-gram * len(words) + last word``).
    """

    def __init__(self, words: list[str], ids: np.ndarray, lengths: np.ndarray, max_n: int) -> None:
        import pandas as pd  # hashing factorisation; imported here to keep worker start-up light

        self.words, self.lengths = words, lengths
        self.doc_start = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.doc_start[1:])
        self.doc_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        self.codes, self.starts, self.keys = {1: ids}, {1: None}, {}  # starts None: every position
        self.sizes = {1: len(words)}
        if max_n > 1:  # words left in the document from each position, itself included
            remaining = self.doc_start[1:][self.doc_of] - np.arange(len(ids), dtype=np.int64)
        at_position = ids  # code of the n-gram starting at each position (garbage where none fits)
        for n in range(2, max_n + 1):
            start = np.flatnonzero(remaining >= n)
            keys = at_position[start] * len(words) + ids[start + n - 1]
            codes, unique = pd.factorize(keys)  # codes numbered by first appearance
            if n < max_n:
                at_position = np.zeros(len(ids), dtype=np.int64)
                at_position[start] = codes
            self.codes[n], self.starts[n], self.keys[n], self.sizes[n] = codes, start, unique, len(unique)

    def strings(self, n: int, codes: np.ndarray) -> list[str]:
        """The n-grams ``codes`` as scikit-learn writes them (words joined by one space)."""
        if n == 1:
            return [self.words[i] for i in codes.tolist()]
        keys = self.keys[n][codes]
        prefixes = self.strings(n - 1, keys // len(self.words))
        words = self.words
        return [f"{p} {words[w]}" for p, w in zip(prefixes, (keys % len(words)).tolist())]

    def layout(self, levels: range) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Entries per document, and where each occurrence of each level goes in analyze() order.

        scikit-learn's analyzer emits a document's n-grams level by level
        (all unigrams, then all bigrams, ...), each level in word order.
        """
        per_level = {n: np.maximum(self.lengths - n + 1, 0) for n in levels}
        entries = sum(per_level.values()) if per_level else np.zeros(len(self.lengths), np.int64)
        base = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(entries, out=base[1:])
        base = base[:-1]
        where = {}
        for n in levels:
            shift = base - self.doc_start[:-1]  # flat entry of a document's n-grams minus its first word
            start = self.starts[n]
            where[n] = (np.arange(len(self.doc_of)) + shift[self.doc_of] if start is None
                        else start + shift[self.doc_of[start]])
            base = base + per_level[n]
        return entries, where


class FastTfidfVectorizer(TfidfVectorizer):
    """``sklearn.feature_extraction.text.TfidfVectorizer`` with faster, parallel counting.

    Takes the parameters of ``TfidfVectorizer`` and produces the same
    ``vocabulary_``, ``idf_`` and matrices. On a scikit-learn release outside
    :data:`TESTED_SKLEARN` it counts with scikit-learn's own code (and warns
    once per fit with :class:`TfidfFallbackWarning`).

    Parameters
    ----------
    n_jobs : int, optional
        Worker processes that tokenise large inputs (joblib convention: ``None``
        = 1, ``-1`` = all cores). Results do not depend on it.
    **kwargs
        Every parameter of ``TfidfVectorizer``.

    See Also
    --------
    sklearn.feature_extraction.text.TfidfVectorizer
    """

    _parameter_constraints: dict = {**TfidfVectorizer._parameter_constraints, "n_jobs": [None, Integral]}

    def __init__(self, *, input: str = "content", encoding: str = "utf-8", decode_error: str = "strict",
                 strip_accents: Any = None, lowercase: bool = True, preprocessor: Any = None, tokenizer: Any = None,
                 analyzer: Any = "word", stop_words: Any = None, token_pattern: str | None = r"(?u)\b\w\w+\b",
                 ngram_range: tuple[int, int] = (1, 1), max_df: float | int = 1.0, min_df: float | int = 1,
                 max_features: int | None = None, vocabulary: Any = None, binary: bool = False,
                 dtype: Any = np.float64, norm: str | None = "l2", use_idf: bool = True, smooth_idf: bool = True,
                 sublinear_tf: bool = False, n_jobs: int | None = None) -> None:
        super().__init__(input=input, encoding=encoding, decode_error=decode_error, strip_accents=strip_accents,
                         lowercase=lowercase, preprocessor=preprocessor, tokenizer=tokenizer, analyzer=analyzer,
                         stop_words=stop_words, token_pattern=token_pattern, ngram_range=ngram_range, max_df=max_df,
                         min_df=min_df, max_features=max_features, vocabulary=vocabulary, binary=binary, dtype=dtype,
                         norm=norm, use_idf=use_idf, smooth_idf=smooth_idf, sublinear_tf=sublinear_tf)
        self.n_jobs = n_jobs

    # -- counting -------------------------------------------------------------------
    def fit(self, raw_documents: Iterable[Any], y: Any = None) -> "FastTfidfVectorizer":
        """Learn the vocabulary and idf (see ``TfidfVectorizer.fit``)."""
        self._warn_if_stock()
        return super().fit(raw_documents, y)

    def fit_transform(self, raw_documents: Iterable[Any], y: Any = None) -> Any:
        """Learn the vocabulary and idf, return the document-term matrix (see ``TfidfVectorizer.fit_transform``)."""
        self._warn_if_stock()
        return super().fit_transform(raw_documents, y)

    @staticmethod
    def _warn_if_stock() -> None:
        notice = fallback_notice()
        if notice:
            warnings.warn(notice, TfidfFallbackWarning, stacklevel=3)

    # Each private hook checks the version first and otherwise passes its arguments on
    # untouched, so a release that changed the hook's signature still gets its own code.
    def _count_vocab(self, *args: Any, **kwargs: Any) -> tuple[dict[str, int], Any]:
        if not fast_counting_supported():
            return super()._count_vocab(*args, **kwargs)
        return self._count_vocab_fast(*args, **kwargs)

    def _count_vocab_fast(self, raw_documents: Iterable[Any], fixed_vocab: bool) -> tuple[dict[str, int], Any]:
        # Same contract as TfidfVectorizer's: term -> id and a CSR matrix of counts
        # whose rows list terms in order of id (first appearance when learning).
        docs = list(raw_documents)
        grams = self._tokenize(docs) if self.analyzer == "word" else None
        if grams is None:
            return self._count_vocab_strings(docs, fixed_vocab)
        if fixed_vocab:
            return self.vocabulary_, _as_sparse_api(self._count_known(grams))
        return self._count_new(grams)

    def _tokenize(self, docs: list[Any]) -> _Grams | None:
        """The word n-grams of ``docs``, or None where integer keys cannot represent them."""
        self.build_analyzer()  # scikit-learn's checks and warnings (stop words vs preprocessing)
        jobs = min(effective_n_jobs(self.n_jobs), len(docs) // _MIN_DOCS_PER_JOB)
        if jobs <= 1 or self.input == "file":  # open file objects do not travel to workers
            chunks = [_tokenize_chunk(self, docs)]
        else:
            bounds = np.linspace(0, len(docs), jobs * _CHUNKS_PER_JOB + 1).astype(int)
            worker = self.__class__.__new__(self.__class__)  # parameters only, not a fitted vocabulary
            worker.__dict__.update({k: v for k, v in self.__dict__.items() if not k.endswith("_")})
            chunks = Parallel(n_jobs=jobs)(delayed(_tokenize_chunk)(worker, docs[a:b])
                                           for a, b in zip(bounds[:-1], bounds[1:]))
        words: defaultdict[str, int] = defaultdict()
        words.default_factory = words.__len__
        getitem = words.__getitem__
        ids = []
        for local_words, local_ids, _ in chunks:
            remap = np.fromiter(map(getitem, local_words), dtype=np.int64, count=len(local_words))
            ids.append(remap[local_ids])
        max_n = self.ngram_range[1]
        ids_all = np.concatenate(ids)
        if max_n > 1 and (any(" " in w for w in words) or (len(ids_all) + 1) * (len(words) + 1) >= 2 ** 62):
            return None  # a word with a space (n-grams would not decode uniquely) or keys overflowing int64
        return _Grams(list(words), ids_all, np.concatenate([c[2] for c in chunks]), max_n)

    def _count_known(self, grams: _Grams) -> sp.csr_array:
        """Counts over the fitted ``vocabulary_`` (unknown n-grams dropped)."""
        get = self.vocabulary_.get
        levels = range(self.ngram_range[0], self.ngram_range[1] + 1)
        entries, where = grams.layout(levels)
        cols = np.empty(int(entries.sum()), dtype=np.int64)
        for n in levels:
            distinct = grams.strings(n, np.arange(grams.sizes[n]))
            column = np.fromiter((get(t, -1) for t in distinct), dtype=np.int64, count=len(distinct))
            cols[where[n]] = column[grams.codes[n]]
        cols, entries = _drop_negative(cols, entries)
        return _csr(cols, entries, len(self.vocabulary_), self.dtype)

    def _count_new(self, grams: _Grams) -> tuple[dict[str, int], Any]:
        """Vocabulary (sorted; already cut to ``min_df``) and counts when learning."""
        levels = range(self.ngram_range[0], self.ngram_range[1] + 1)
        offsets = dict(zip(levels, np.cumsum([0, *(grams.sizes[n] for n in levels)]).tolist()))
        n_terms = sum(grams.sizes[n] for n in levels)
        if n_terms == 0:
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        entries, where = grams.layout(levels)

        # number the terms by first appearance in analyze() order, as scikit-learn does
        first_seen = np.full(n_terms, np.iinfo(np.int64).max)
        for n in levels:
            level_first = first_seen[offsets[n]:offsets[n] + grams.sizes[n]]
            codes = grams.codes[n]
            # codes are numbered by first appearance: a code's first occurrence is where the running max grows
            new = np.empty(len(codes), dtype=bool)
            new[:1] = True
            np.greater(codes[1:], np.maximum.accumulate(codes)[:-1], out=new[1:])
            if new.sum() == grams.sizes[n] and np.array_equal(codes[new], np.arange(grams.sizes[n])):
                level_first[:] = where[n][new]
            else:  # pragma: no cover - defensive: any numbering works, just slower
                np.minimum.at(level_first, codes, where[n])
        by_appearance = np.argsort(first_seen, kind="stable")
        appearance = np.empty(n_terms, dtype=np.int64)
        appearance[by_appearance] = np.arange(n_terms)
        cols = np.empty(int(entries.sum()), dtype=np.int64)
        for n in levels:
            cols[where[n]] = appearance[offsets[n] + grams.codes[n]]
        counts = _csr(cols, entries, n_terms, self.dtype)
        del cols

        # terms below min_df are dropped here, before any string is built (fit_transform
        # would drop them next); if that leaves none, fit_transform reports it
        n_docs = len(grams.lengths)
        low = self.min_df if isinstance(self.min_df, Integral) else self.min_df * n_docs
        high = self.max_df if isinstance(self.max_df, Integral) else self.max_df * n_docs
        kept = np.flatnonzero(np.bincount(counts.indices, minlength=n_terms) >= low)  # appearance order
        if high < low or len(kept) == 0:
            kept = np.arange(n_terms)
        term_ids = by_appearance[kept]
        level_of = np.searchsorted(np.array([offsets[n] for n in levels]), term_ids, side="right") - 1
        terms: list[str] = [""] * len(kept)
        for i, n in enumerate(levels):
            rows = np.flatnonzero(level_of == i)
            for row, term in zip(rows.tolist(), grams.strings(n, term_ids[rows] - offsets[n])):
                terms[row] = term
        alphabetical = sorted(range(len(terms)), key=terms.__getitem__)
        vocabulary = {terms[i]: j for j, i in enumerate(alphabetical)}
        to_alphabetical = np.empty(len(kept), dtype=np.int64)
        to_alphabetical[alphabetical] = np.arange(len(kept))

        # keep the rows' order (by appearance), rename the columns alphabetically
        new = np.full(n_terms, -1, dtype=counts.indices.dtype)
        new[kept] = to_alphabetical
        cols = new[counts.indices]
        keep = cols >= 0
        indptr = np.zeros(len(keep) + 1, dtype=counts.indptr.dtype)
        np.cumsum(keep, out=indptr[1:])
        indptr = indptr[counts.indptr]
        counts = sp.csr_array((counts.data[keep], cols[keep], indptr), shape=(n_docs, len(kept)))
        counts.has_sorted_indices = False
        return vocabulary, _as_sparse_api(counts)

    def _count_vocab_strings(self, docs: list[Any], fixed_vocab: bool) -> tuple[dict[str, int], Any]:
        """The general path (any analyzer): analyze each document, look each term up in one dict."""
        analyze = self.build_analyzer()
        if fixed_vocab:
            vocabulary = self.vocabulary_
            get = vocabulary.get
            lookup = lambda features: map(get, features, [-1] * len(features))  # noqa: E731
        else:
            vocabulary = defaultdict()
            vocabulary.default_factory = vocabulary.__len__
            lookup = lambda features: map(vocabulary.__getitem__, features)  # noqa: E731
        ids, lengths = array("q"), array("q")
        for doc in docs:
            before = len(ids)
            ids.extend(lookup(analyze(doc)))
            lengths.append(len(ids) - before)
        if not vocabulary:
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        cols, entries = _drop_negative(np.frombuffer(ids, dtype=np.int64), np.frombuffer(lengths, dtype=np.int64))
        return dict(vocabulary), _as_sparse_api(_csr(cols, entries, len(vocabulary), self.dtype))

    # -- scikit-learn's pruning and sorting: skipped when there is nothing to do ------
    def _sort_features(self, *args: Any, **kwargs: Any) -> Any:
        if not fast_counting_supported():
            return super()._sort_features(*args, **kwargs)
        return self._sort_features_fast(*args, **kwargs)

    def _sort_features_fast(self, X: Any, vocabulary: dict[str, int]) -> Any:
        items = list(vocabulary.items())
        if all(a[0] < b[0] for a, b in pairwise(items)) and all(i == v for i, (_, v) in enumerate(items)):
            return X  # already numbered alphabetically
        return super()._sort_features(X, vocabulary)

    def _limit_features(self, *args: Any, **kwargs: Any) -> Any:
        if not fast_counting_supported():
            return super()._limit_features(*args, **kwargs)
        return self._limit_features_fast(*args, **kwargs)

    def _limit_features_fast(self, X: Any, vocabulary: dict[str, int], high: Any = None, low: Any = None,
                             limit: Any = None) -> Any:
        if X.shape[1] and (limit is None or limit >= X.shape[1]):
            dfs = np.bincount(X.indices, minlength=X.shape[1])
            if (high is None or (dfs <= high).all()) and (low is None or (dfs >= low).all()):
                return X  # every term stays: the same matrix scikit-learn would build
        return super()._limit_features(X, vocabulary, high, low, limit)

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
        state.setdefault("n_jobs", None)  # saved before n_jobs existed
        utf8 = state.pop(_TERMS, None)
        lengths = state.pop(_LENGTHS, None)
        super().__setstate__(state)
        if utf8 is not None and lengths is not None:
            blob = np.asarray(utf8, dtype=np.uint8).tobytes()
            ends = np.cumsum(lengths).tolist()
            starts = [0, *ends[:-1]]
            self.vocabulary_ = {blob[a:b].decode("utf-8"): i for i, (a, b) in enumerate(zip(starts, ends))}
