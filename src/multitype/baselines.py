"""TF-IDF baselines: logistic regression and a linear SVM as scikit-learn Pipelines.

``train_baselines`` reads the processed splits, fits the TF-IDF features once
on train and shares the matrix between the classifiers (the features depend
only on ``models_baseline.yaml: tfidf``), evaluates on val and test, and then
writes, per model, ``results/baseline/<name>_metrics.json`` and
``models/final/<name>/`` (the whole Pipeline, saved with skops), the rebuilt
``baseline_summary.csv`` and a run manifest (metrics, summary and manifest in
``project.outputs.results``, the root unless set apart). Nothing is written until every
model is trained, so a failed run leaves the previous results as they were.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from joblib import effective_n_jobs

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from multitype import layout
from multitype.config import BaselineConfig, TfidfConfig
from multitype.data.dataset import load_labels, load_split
from multitype.errors import DataError, ModelError
from multitype.evaluate import classification_metrics, headline_uncertainty, metrics_record, predictions_block
from multitype.experiments import tracking
from multitype.manifest import folder_hashes, write_manifest
from multitype.predictor import save_sklearn_model
from multitype.project import Project
from multitype.results import write_summary
from multitype.tfidf import FastTfidfVectorizer, TfidfFallbackWarning, fallback_notice

MODEL_NAMES: tuple[str, ...] = layout.BASELINE_NAMES


def check_models(models: Sequence[str] | None) -> list[str]:
    """The baselines to train, in the given order (default: all); unknown names -> ``ModelError``."""
    if not models:
        return list(MODEL_NAMES)
    unknown = [name for name in models if name not in MODEL_NAMES]
    if unknown:
        raise ModelError(f"unknown baseline model(s) {', '.join(map(repr, unknown))} in --models; "
                         f"valid names: {', '.join(MODEL_NAMES)}")
    return list(dict.fromkeys(models))


def build_vectorizer(tfidf: TfidfConfig) -> FastTfidfVectorizer:
    """The TF-IDF step configured by ``models_baseline.yaml: tfidf``.

    float32 features: LogisticRegression keeps them (about 2x faster fits, same
    accuracy on BBC News and the benchmark); LinearSVC converts internally.
    """
    return FastTfidfVectorizer(ngram_range=tuple(tfidf.ngram_range), min_df=tfidf.min_df,
                               max_features=tfidf.max_features, sublinear_tf=tfidf.sublinear_tf, dtype=np.float32,
                               n_jobs=tfidf.n_jobs)


def build_classifier(name: str, config: BaselineConfig, seed: int) -> Any:
    """The classifier step of baseline ``name`` (``logreg`` or ``linear_svm``)."""
    if name == "logreg":
        c = config.models.logreg
        return LogisticRegression(C=c.C, class_weight=c.class_weight, max_iter=c.max_iter, solver=c.solver,
                                  random_state=seed)
    if name == "linear_svm":
        c = config.models.linear_svm
        return LinearSVC(C=c.C, class_weight=c.class_weight, random_state=seed)
    raise ModelError(f"unknown baseline model '{name}'; valid names: {', '.join(MODEL_NAMES)}")


def _fit(classifier: Any, x: Any, y: Sequence[int]) -> tuple[Any, float, float]:
    """(fitted ``classifier``, wall seconds, CPU seconds of this thread)."""
    start, cpu_start = time.perf_counter(), time.thread_time()
    classifier.fit(x, y)
    return classifier, time.perf_counter() - start, time.thread_time() - cpu_start


def _load_data(project: Project) -> tuple[list[str], dict[str, tuple[list[str], list[int]]], list[str]]:
    storage = project.storage
    labels = load_labels(storage)
    splits = {}
    for split in layout.SPLITS:
        key = layout.processed_split(split, len(labels))
        if split == "val" and not storage.exists(key):
            continue  # val: 0 in data_config.yaml; metrics come from test alone
        splits[split] = load_split(storage, split, labels)
    train_texts, train_ids = splits["train"]
    if len(set(train_ids)) < 2:
        raise DataError(f"{storage.url(layout.processed_split('train', len(labels)))}: training needs at least "
                        "two classes; check the labels and rerun 'multitype prepare'")
    if not splits["test"][0]:
        raise DataError(f"{storage.url(layout.processed_split('test', len(labels)))} has no rows; "
                        "rerun 'multitype prepare' with a larger test fraction")
    return labels, splits, [layout.LABELS, *(layout.processed_split(s, len(labels)) for s in splits)]


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)


def train_baselines(project: Project, models: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Fit, evaluate and save the TF-IDF baselines.

    Parameters
    ----------
    project : Project
        Root, configs (``models_baseline.yaml``) and run id.
    models : list of str, optional
        Names from ``logreg``, ``linear_svm`` (default: both).

    Returns
    -------
    dict
        Model name -> its metrics record (the ``*_metrics.json`` document).

    Raises
    ------
    ModelError
        An unknown model name.
    DataError
        Missing processed splits (run ``multitype prepare``) or unusable ones.
    """
    names = check_models(models)
    storage = project.storage
    labels, splits, input_keys = _load_data(project)
    console = Console(stderr=True, soft_wrap=True)
    trackers = _start_tracking(project, names, console)
    try:
        records = _train(project, names, labels, splits, input_keys, console, trackers)
    except BaseException:
        for tracker in trackers.values():
            tracker.end("FAILED")
        raise
    for name, tracker in trackers.items():
        tracker.log_record(records[name])
        tracker.log_keys(project.outputs.results, [layout.manifest(project.run_id)], "manifest")
        tracker.log_model_folder(storage, layout.final_model(name), "model")
        tracker.end("FINISHED")
    return records


def _start_tracking(project: Project, names: list[str], console: Console) -> dict[str, tracking.Tracker]:
    """One MLflow run per model (no-op trackers when tracking is off or unusable: one warning, not one per model)."""
    def warn(message: str) -> None:
        console.print(f"warning: {message}", markup=False, highlight=False)

    def say(message: str) -> None:
        console.print(message, markup=False, highlight=False)

    config = project.configs.baseline
    trackers: dict[str, tracking.Tracker] = {}
    for name in names:
        params = {"tfidf": config.tfidf.model_dump(mode="json"),
                  "classifier": getattr(config.models, name).model_dump(mode="json")}
        trackers[name] = tracking.start(project, "baseline", name, warn, say, params=params)
        if not trackers[name].active:
            return {n: tracking.Tracker() for n in names}
    return trackers


def _train(project: Project, names: list[str], labels: list[str], splits: dict[str, Any], input_keys: list[str],
           console: Console, trackers: dict[str, tracking.Tracker]) -> dict[str, dict[str, Any]]:
    """Fit, evaluate, then write every model, its metrics, the summary and the manifest."""
    storage, config = project.storage, project.configs.baseline
    seed = project.configs.project.seed
    train_texts, y_train = splits["train"]

    trained: dict[str, tuple[Pipeline, dict[str, Any]]] = {}
    with _progress(console) as progress:
        task = progress.add_task("TF-IDF features", total=len(names) + 1)
        notice = fallback_notice()
        if notice:  # one line here instead of the vectorizer's warning
            console.print(f"note: {notice}", markup=False, highlight=False)
        start, cpu_start = time.perf_counter(), time.process_time()
        vectorizer = build_vectorizer(config.tfidf)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TfidfFallbackWarning)
            x_train = vectorizer.fit_transform(train_texts)
        vectorizer_seconds = time.perf_counter() - start
        vectorizer_cpu = time.process_time() - cpu_start
        start = time.perf_counter()
        x_val = vectorizer.transform(splits["val"][0]) if splits.get("val", ([],))[0] else None
        val_features_seconds = time.perf_counter() - start
        console.print(f"TF-IDF: {x_train.shape[1]:,} features from {len(train_texts):,} texts "
                      f"in {vectorizer_seconds:.1f}s")
        progress.advance(task)

        # the classifiers only read the shared matrix, and liblinear and scipy's sparse
        # products release the GIL: on several cores they fit at the same time
        progress.update(task, description=f"fitting {', '.join(names)}")
        threads = max(1, min(len(names), effective_n_jobs(config.tfidf.n_jobs)))
        with ThreadPoolExecutor(max_workers=threads) as pool:
            fitted = dict(zip(names, pool.map(lambda name: _fit(build_classifier(name, config, seed), x_train, y_train),
                                              names)))
        # each model's share of the TF-IDF fit and val features they all use
        shared_seconds = (vectorizer_seconds + val_features_seconds) / len(names)

        for name in names:
            progress.update(task, description=f"evaluating {name}")
            classifier, classifier_seconds, classifier_cpu = fitted[name]
            eval_start = time.perf_counter()
            pipeline = Pipeline([("tfidf", vectorizer), ("clf", classifier)])

            evaluated = {}
            if x_val is not None:
                evaluated["val"] = classification_metrics(splits["val"][1], classifier.predict(x_val), labels)
            test_texts, y_test = splits["test"]
            start = time.perf_counter()
            y_pred = pipeline.predict(test_texts)  # raw texts in: the throughput a user gets
            inference_seconds = max(time.perf_counter() - start, 1e-9)
            evaluated["test"] = classification_metrics(y_test, y_pred, labels)
            if hasattr(classifier, "predict_proba"):
                probabilities, why_not = np.zeros((len(test_texts), len(labels))), None
                probabilities[:, classifier.classes_] = pipeline.predict_proba(test_texts)  # a class absent
                # from train has no column of its own
            else:
                probabilities = None
                why_not = f"{type(classifier).__name__} gives decision scores, not probabilities"
            evaluation_seconds = time.perf_counter() - eval_start

            record = metrics_record(
                name, "baseline", labels, evaluated, project.run_id,
                training_seconds=vectorizer_seconds + classifier_seconds,
                inference_samples_per_s=len(test_texts) / inference_seconds,
                vectorizer_seconds=round(vectorizer_seconds, 3),
                classifier_seconds=round(classifier_seconds, 3),
                evaluation_seconds=round(evaluation_seconds, 3),
                # share of the TF-IDF fit and val features + own fit + own evaluation (wall)
                model_seconds=round(shared_seconds + classifier_seconds + evaluation_seconds, 3),
                training_cpu_seconds=round(vectorizer_cpu + classifier_cpu, 3),  # less noisy on shared CPUs
                num_features=int(x_train.shape[1]),
                train_samples=len(train_texts),
                params={"tfidf": config.tfidf.model_dump(mode="json"),
                        "classifier": getattr(config.models, name).model_dump(mode="json")},
                intervals=headline_uncertainty(evaluated["test"], project.configs.project.report, seed),
                predictions=predictions_block(test_texts, y_test, y_pred, probabilities, why_not),
            )
            trained[name] = (pipeline, record)
            console.print(f"{name}: fitted in {classifier_seconds:.1f}s, test accuracy {record['accuracy']:.4f}")
            progress.advance(task)

    # every model is trained: only now replace what a previous run left (metrics, summary and manifest
    # in the results root, project.outputs.results: the root itself unless set apart, as in a SageMaker job)
    results = project.outputs.results
    outputs, model_hashes = [], {}
    for name, (pipeline, record) in trained.items():
        with tempfile.TemporaryDirectory(prefix="multitype-baseline-") as tmp:
            save_sklearn_model(pipeline, tmp, {
                "model": name, "labels": labels, "run_id": project.run_id,
                "text_field": project.configs.data.text_field, "label_field": project.configs.data.label_field,
                "steps": [f"{type(step).__module__}.{type(step).__name__}" for _, step in pipeline.steps],
                "params": record["params"],
            })
            model_hashes.update(folder_hashes(tmp, layout.final_model(name)))  # hashed here, not read back
            storage.put_dir(tmp, layout.final_model(name))
        results.write_json(layout.baseline_metrics(name), record)
        outputs.append(layout.baseline_metrics(name))
    summary = write_summary(results, "baseline")
    if summary:
        outputs.append(summary)
    tracked = {name: {"mlflow_run_id": t.run_id, "uri": t.where} for name, t in trackers.items() if t.active}
    write_manifest(project, inputs=input_keys, outputs=outputs, output_hashes=model_hashes, extra={
        "models": names,
        "results": {name: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                           "training_seconds": r["training_seconds"]} for name, (_, r) in trained.items()},
        **({"tracking": tracked} if tracked else {}),
    }, storage=results)
    return {name: record for name, (_, record) in trained.items()}
