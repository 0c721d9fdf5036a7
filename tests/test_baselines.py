"""TF-IDF baselines on the real BBC News data: quality, files, schemas, skops round trip, bad input."""

from __future__ import annotations

import csv
import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline

from multitype import layout
from multitype.errors import ModelError
from multitype.evaluate import SUMMARY_COLUMNS
from multitype.predictor import MODEL_JSON, SKOPS_FILE, TRUSTED_TYPES, load_predictor, load_sklearn_pipeline
from multitype import tfidf
from multitype.tfidf import FastTfidfVectorizer
from tests.bbc_processed import copy_root, trained_root
from tests.conftest import bbc_data_dir, make_bbc_subset, write_configs

METRIC_KEYS = {"model", "split", "accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "labels",
               "training_seconds", "inference_samples_per_s", "run_id"}
LABELS = ["business", "politics", "sports", "tech"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return trained_root(tmp_path_factory)


@pytest.fixture(scope="module")
def small_prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(root, configs) prepared from 40 BBC articles per class: for tests that retrain."""
    from multitype.cli import main

    base = tmp_path_factory.mktemp("small")
    folder = make_bbc_subset(base / "bbc", per_class=40, seed=3)
    configs = write_configs(base / "configs")
    assert main(["prepare", "--input", str(folder), "--root", str(base / "root"), "--config-dir", str(configs)]) == 0
    return base / "root", configs


def _texts(n: int = 400) -> list[str]:
    """Every fifth BBC article (all five classes), raw."""
    files = sorted(bbc_data_dir().glob("*/*.txt"))[::5][:n]
    return [f.read_bytes().decode("utf-8", errors="replace") for f in files]


# --- the vectorizer ------------------------------------------------------------------------
@pytest.mark.parametrize("params", [
    {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True},
    {"ngram_range": (2, 3), "stop_words": "english", "max_df": 0.5},
    {"ngram_range": (1, 1), "max_features": 300, "binary": True, "dtype": np.float32},
    {"ngram_range": (1, 2), "min_df": 0.01, "lowercase": False},
])
def test_fast_tfidf_equals_sklearn(params: dict) -> None:
    texts = _texts()
    train, test = texts[:300], [*texts[300:], "", "zzzz qqqq xqxqxq", "Ünïcödé café naïve"]
    ours, ref = FastTfidfVectorizer(**params), TfidfVectorizer(**params)
    a, b = ours.fit_transform(train), ref.fit_transform(train)
    assert ours.vocabulary_ == ref.vocabulary_
    assert np.allclose(ours.idf_, ref.idf_)
    assert a.dtype == b.dtype and type(a) is type(b)
    assert a.indices.dtype == b.indices.dtype and a.indptr.dtype == b.indptr.dtype
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data)
    ta, tb = ours.transform(test), ref.transform(test)
    assert np.array_equal(ta.indices, tb.indices) and np.array_equal(ta.data, tb.data)
    assert ta[len(test) - 2].nnz == 0  # only unseen terms


@pytest.mark.slow  # starts worker processes: 6-17 s on 2 shared cores
@pytest.mark.parametrize("params", [
    {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True, "dtype": np.float32},
    {"ngram_range": (1, 3), "min_df": 3, "max_df": 0.9, "strip_accents": "unicode"},
])
def test_fast_tfidf_in_worker_processes_equals_sklearn(monkeypatch: pytest.MonkeyPatch, params: dict) -> None:
    monkeypatch.setattr(tfidf, "_MIN_DOCS_PER_JOB", 50)  # 400 texts: 2 processes, 4 chunks
    texts = _texts()
    ours, ref = FastTfidfVectorizer(n_jobs=2, **params), TfidfVectorizer(**params)
    a, b = ours.fit_transform(texts), ref.fit_transform(texts)
    assert ours.vocabulary_ == ref.vocabulary_ and np.array_equal(ours.idf_, ref.idf_)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.data, b.data)
    assert a.indices.dtype == b.indices.dtype and a.indptr.dtype == b.indptr.dtype
    ta, tb = ours.transform(texts[::-1]), ref.transform(texts[::-1])
    assert np.array_equal(ta.indices, tb.indices) and np.array_equal(ta.data, tb.data)
    assert ta.indices.dtype == tb.indices.dtype and ta.indptr.dtype == tb.indptr.dtype


def test_tfidf_n_jobs_zero_is_refused() -> None:
    from pydantic import ValidationError

    from multitype.config import TfidfConfig

    assert TfidfConfig().n_jobs == -1 and TfidfConfig(n_jobs=2).n_jobs == 2
    with pytest.raises(ValidationError, match="not 0"):
        TfidfConfig(n_jobs=0)


def test_fast_tfidf_falls_back_for_tokens_with_spaces() -> None:
    # a tokenizer whose tokens contain spaces: n-grams cannot be integer keys; strings give the same result
    params = {"tokenizer": lambda s: [w.strip() for w in s.split(".") if w.strip()], "token_pattern": None,
              "ngram_range": (1, 2)}
    texts = _texts(60)
    ours, ref = FastTfidfVectorizer(**params), TfidfVectorizer(**params)
    a, b = ours.fit_transform(texts), ref.fit_transform(texts)
    assert ours.vocabulary_ == ref.vocabulary_
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data)


@pytest.mark.parametrize(("version", "fast"), [
    ("1.4.2", False), ("1.5.0", True), ("1.9.1", True), ("1.9.dev0", True), ("1.10.0", False), ("2.0.1", False),
    ("nightly", False)])
def test_fast_counting_only_on_the_tested_scikit_learn_releases(version: str, fast: bool) -> None:
    assert tfidf.TESTED_SKLEARN == ((1, 5), (1, 9))  # the range pyproject.toml's comment and the README give
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert '"scikit-learn>=1.5",' in pyproject  # no release below the tested range
    assert tfidf.fast_counting_supported(version) is fast
    assert (tfidf.fallback_notice(version) is None) is fast
    assert tfidf.fast_counting_supported() and tfidf.fallback_notice() is None  # the installed release


def test_fast_tfidf_outside_the_tested_range_is_the_stock_vectorizer(monkeypatch: pytest.MonkeyPatch) -> None:
    import sklearn

    params = {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True, "dtype": np.float32}
    texts = _texts()
    fast = FastTfidfVectorizer(**params)
    x_fast = fast.fit_transform(texts[:300])
    monkeypatch.setattr(sklearn, "__version__", "1.4.2")  # as the version check reads it

    def refuse(*args, **kwargs):
        raise AssertionError("the fast counting ran outside the tested range")

    for hook in ("_count_vocab_fast", "_limit_features_fast", "_sort_features_fast"):
        monkeypatch.setattr(FastTfidfVectorizer, hook, refuse)
    stock = FastTfidfVectorizer(**params)
    with pytest.warns(tfidf.TfidfFallbackWarning) as caught:
        x_stock = stock.fit_transform(texts[:300])
    assert [str(w.message) for w in caught] == [
        "scikit-learn 1.4.2 is outside the range the fast TF-IDF is tested on (1.5-1.9); using the stock vectorizer"]
    with pytest.warns(tfidf.TfidfFallbackWarning):
        FastTfidfVectorizer(**params).fit(texts[:300])
    # both paths: the same vocabulary, idf and matrices, on fit and on transform
    assert stock.vocabulary_ == fast.vocabulary_ and np.array_equal(stock.idf_, fast.idf_)
    assert x_stock.dtype == x_fast.dtype == np.float32
    assert (abs(x_stock - x_fast) > 0).nnz == 0 and x_stock.nnz == x_fast.nnz
    unseen = texts[300:]
    assert (abs(stock.transform(unseen) - fast.transform(unseen)) > 0).nnz == 0
    # a model saved on a tested release loads and transforms on the other one
    back = pickle.loads(pickle.dumps(fast))
    assert back.vocabulary_ == fast.vocabulary_ and (back.transform(unseen) != fast.transform(unseen)).nnz == 0


def test_train_baseline_outside_the_tested_range_says_so_in_one_line(tmp_path: Path, small_prepared, cli,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import sklearn

    src, configs = small_prepared
    fast_root = copy_root(src, tmp_path / "fast")
    assert cli("train", "baseline", "--models", "logreg", "--root", fast_root, "--config-dir", configs).exit_code == 0
    monkeypatch.setattr(sklearn, "__version__", "1.10.0")  # a release after the tested ones
    root = copy_root(src, tmp_path / "stock")
    with warnings.catch_warnings():
        warnings.simplefilter("error", tfidf.TfidfFallbackWarning)  # shown as the note, not as a warning too
        res = cli("train", "baseline", "--models", "logreg", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    notes = [line for line in res.stderr.splitlines() if "fast TF-IDF" in line]
    assert notes == ["note: scikit-learn 1.10.0 is outside the range the fast TF-IDF is tested on (1.5-1.9); "
                     "using the stock vectorizer"]
    stock, fast = (json.loads((r / layout.baseline_metrics("logreg")).read_text()) for r in (root, fast_root))
    assert stock["num_features"] == fast["num_features"] and stock["accuracy"] == fast["accuracy"]
    assert stock["confusion_matrix"] == fast["confusion_matrix"]


def test_fast_tfidf_saves_vocabulary_compactly() -> None:
    vec = FastTfidfVectorizer(ngram_range=(1, 2), min_df=2).fit(_texts())
    data = sio.dumps(vec)
    assert sio.get_untrusted_types(data=data) == list(TRUSTED_TYPES)
    schema = zipfile.ZipFile(io.BytesIO(data)).read("schema.json")
    assert len(schema) < 20_000  # the terms travel as arrays, not one JSON node each
    back = sio.loads(data, trusted=list(TRUSTED_TYPES))
    assert back.get_params()["n_jobs"] is None and not any("pool" in key.lower() for key in vars(back))
    assert back.vocabulary_ == vec.vocabulary_ and pickle.loads(pickle.dumps(vec)).vocabulary_ == vec.vocabulary_
    sample = _texts()[:5]
    assert (back.transform(sample) != vec.transform(sample)).nnz == 0


# --- training on the real data (slow: the shared fixture trains on all of BBC News, ~13 s) -----
@pytest.mark.slow
def test_both_baselines_reach_095_on_bbc(trained: tuple[Path, Path]) -> None:
    root, _ = trained
    labels = json.loads((root / layout.LABELS).read_text())
    assert sorted(labels, key=labels.get) == LABELS
    test_rows = len(pd.read_csv(root / layout.processed_split("test", 4)))
    run_ids = set()
    for name in ("logreg", "linear_svm"):
        record = json.loads((root / layout.baseline_metrics(name)).read_text())
        assert METRIC_KEYS <= set(record), METRIC_KEYS - set(record)
        assert record["model"] == name and record["kind"] == "baseline" and record["split"] == "test"
        assert record["accuracy"] >= 0.95, (name, record["accuracy"])
        assert record["macro_f1"] >= 0.95 and 0 < record["weighted_f1"] <= 1
        assert set(record["per_class"]) == set(LABELS)
        for stats in record["per_class"].values():
            assert set(stats) == {"precision", "recall", "f1", "support"}
        assert sum(s["support"] for s in record["per_class"].values()) == test_rows
        cm = record["confusion_matrix"]
        assert cm["labels"] == LABELS and np.asarray(cm["matrix"]).shape == (4, 4)
        assert np.trace(cm["matrix"]) / test_rows == pytest.approx(record["accuracy"])
        assert record["splits"]["val"]["accuracy"] >= 0.9 and record["splits"]["test"]["num_samples"] == test_rows
        assert record["training_seconds"] > 0 and record["inference_samples_per_s"] > 0
        assert record["training_seconds"] >= record["vectorizer_seconds"] > 0
        assert record["model_seconds"] > record["classifier_seconds"] > 0 and record["evaluation_seconds"] > 0
        assert record["params"]["tfidf"]["n_jobs"] == -1
        assert "train-baseline" in record["run_id"]
        run_ids.add(record["run_id"])
    assert len(run_ids) == 1  # one run trained both


@pytest.mark.slow
def test_summary_csv_and_manifest(trained: tuple[Path, Path]) -> None:
    root, _ = trained
    with open(root / layout.BASELINE_SUMMARY, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["linear_svm", "logreg"]
    assert list(rows[0]) == SUMMARY_COLUMNS
    record = json.loads((root / layout.baseline_metrics("logreg")).read_text())
    row = next(r for r in rows if r["model"] == "logreg")
    assert float(row["accuracy"]) == pytest.approx(record["accuracy"])
    assert float(row["val_macro_f1"]) == pytest.approx(record["splits"]["val"]["macro_f1"])
    manifest = json.loads((root / layout.manifest(record["run_id"])).read_text())
    assert manifest["command"] == "train baseline"
    assert set(manifest["inputs"]) == {layout.LABELS, *(layout.processed_split(s, 4) for s in layout.SPLITS)}
    for key in (layout.baseline_metrics("logreg"), layout.BASELINE_SUMMARY,
                f"{layout.final_model('linear_svm')}/{SKOPS_FILE}"):
        assert len(manifest["outputs"][key]) == 64
    assert manifest["config"]["baseline"]["models"]["logreg"]["solver"] == "newton-cg"


@pytest.mark.slow
def test_saved_pipelines_round_trip_without_pickle(trained: tuple[Path, Path]) -> None:
    root, _ = trained
    test = pd.read_csv(root / layout.processed_split("test", 4), dtype=str, keep_default_na=False)
    for name in ("logreg", "linear_svm"):
        folder = root / layout.final_model(name)
        assert sorted(p.name for p in folder.iterdir()) == ["_COMPLETE", MODEL_JSON, SKOPS_FILE]
        card = json.loads((folder / MODEL_JSON).read_text())
        assert card["kind"] == "sklearn" and card["labels"] == LABELS and card["text_field"] == "text"
        assert card["score_kind"] == ("prob" if name == "logreg" else "score")
        assert b"pickle" not in (folder / SKOPS_FILE).read_bytes()[:64]
        pipeline = load_sklearn_pipeline(folder / SKOPS_FILE)
        assert isinstance(pipeline, Pipeline) and isinstance(pipeline[0], FastTfidfVectorizer)
        predictor = load_predictor(folder)
        predicted, scores = predictor.predict(test["text"].tolist(), batch_size=50)
        record = json.loads((root / layout.baseline_metrics(name)).read_text())
        assert np.mean(np.array(predicted) == test["label"].to_numpy()) == pytest.approx(record["accuracy"])
        assert np.allclose(scores.sum(axis=1), 1, atol=1e-5)


@pytest.mark.slow
def test_untrusted_types_are_refused(tmp_path: Path, trained: tuple[Path, Path], cli) -> None:
    root, configs = trained
    folder = copy_root(root / layout.final_model("logreg"), tmp_path / "tampered")
    pipeline = load_sklearn_pipeline(folder / SKOPS_FILE)
    pipeline.steps.append(("evil", _Foreign()))  # a type nobody vetted
    sio.dump(pipeline, folder / SKOPS_FILE)
    with pytest.raises(ModelError, match=r"refusing to load types .*_Foreign"):
        load_sklearn_pipeline(folder / SKOPS_FILE)
    (tmp_path / "in.txt").write_text("Shares rose\n")
    res = cli("predict", "--model", folder, "--input", tmp_path / "in.txt", "--root", tmp_path / "r",
              "--config-dir", configs)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "_Foreign" in res.stderr
    (folder / SKOPS_FILE).write_bytes(b"not a zip at all")
    res = cli("predict", "--model", folder, "--input", tmp_path / "in.txt", "--root", tmp_path / "r",
              "--config-dir", configs)
    assert res.exit_code == 2 and "not a readable skops file" in res.stderr and res.stderr.count("\n") == 1


class _Foreign:
    def fit(self, X, y=None):  # noqa: N803 - sklearn naming
        return self


# --- retraining, partial runs and bad input (small data) --------------------------------------
def test_one_model_keeps_the_other_in_the_summary(tmp_path: Path, small_prepared, cli) -> None:
    src, configs = small_prepared
    root = copy_root(src, tmp_path / "root")
    res = cli("train", "baseline", "--models", "logreg", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    assert not (root / layout.baseline_metrics("linear_svm")).exists()
    res = cli("train", "baseline", "--models", "linear_svm", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    summary = pd.read_csv(root / layout.BASELINE_SUMMARY)
    assert summary["model"].tolist() == ["linear_svm", "logreg"]
    assert (root / layout.final_model("logreg") / SKOPS_FILE).is_file()


def test_unknown_model_name_lists_valid_ones(tmp_path: Path, small_prepared, cli) -> None:
    root, configs = small_prepared
    res = cli("train", "baseline", "--models", "logreg,xgboost", "--root", root, "--config-dir", configs)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "'xgboost'" in res.stderr and "logreg, linear_svm" in res.stderr


def test_missing_splits_say_run_prepare(tmp_path: Path, config_dir: Path, cli) -> None:
    res = cli("train", "baseline", "--root", tmp_path / "empty", "--config-dir", config_dir)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "labels.json not found" in res.stderr and "multitype prepare" in res.stderr


def test_failed_run_keeps_previous_results(tmp_path: Path, small_prepared, cli) -> None:
    src, configs = small_prepared
    root = copy_root(src, tmp_path / "root")
    assert cli("train", "baseline", "--root", root, "--config-dir", configs).exit_code == 0
    before = {p: p.read_bytes() for p in (root / "results").rglob("*") if p.is_file()}
    before.update({p: p.read_bytes() for p in (root / "models").rglob("*") if p.is_file()})
    test_csv = root / layout.processed_split("test", 4)
    test_csv.write_text(test_csv.read_text().replace(",tech\n", ",weather\n", 1))
    res = cli("train", "baseline", "--root", root, "--config-dir", configs)
    assert res.exit_code == 2 and "weather" in res.stderr and "test_4class.csv" in res.stderr
    after = {p: p.read_bytes() for p in before if p.exists()}
    assert after == before
