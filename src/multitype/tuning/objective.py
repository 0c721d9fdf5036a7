"""One tuning trial as a normal training run (its own slug, metrics, manifest), and the best one's test run.

Trials read train and val only: the transformer trainer runs with ``evaluate_test=False``, the baseline trial
below never loads the test split. :func:`evaluate_on_test` is the one place a study reads test, once, for
the best trial's saved model.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from multitype import layout
from multitype.config import BASELINE_TUNABLE, BaselineConfig, deep_merge
from multitype.data.dataset import load_labels, load_split
from multitype.errors import DataError
from multitype.evaluate import classification_metrics, headline_uncertainty, metrics_record, predictions_block
from multitype.manifest import folder_hashes, write_manifest
from multitype.project import Project
from multitype.results import write_summary

# (epoch, val metric) -> True to stop the trial (pruned)
Report = Callable[[int, "float | None"], bool]


@dataclass
class Outcome:
    value: float | None
    pruned: bool
    record: dict[str, Any]


def trial_project(project: Project, slug: str) -> Project:
    """The project with a run id of the trial's own, so each trial has its own manifest."""
    return dataclasses.replace(project, run_id="", command=f"tune trial {slug}", started=time.time())


def check_val_split(project: Project) -> None:
    labels = load_labels(project.storage)
    key = layout.processed_split("val", len(labels))
    if not project.storage.exists(key):
        raise DataError(f"{project.storage.url(key)} is missing: tuning scores trials on the val split and never "
                        "on test; set split.val above 0 in data_config.yaml and rerun 'multitype prepare'")


# -- transformer ------------------------------------------------------------------------------------------
def trial_tag(study: str, number: int) -> dict[str, Any]:
    """What marks a metrics record as a tuning trial (the report and summaries skip it until tested)."""
    return {"tuning": {"study": study, "trial": number}}


def transformer_trial(project: Project, model_name: str, params: dict[str, Any], metric: str, slug: str,
                      report: Report, resume: bool, tag: dict[str, Any]) -> Outcome:
    """Fine-tune with defaults + models[model_name] + ``params``; val only; ``report`` after each epoch."""
    from multitype.transformer.train import train_transformer

    key = layout.transformer_metrics(slug)
    if resume and project.outputs.results.exists(key):
        # killed after the run wrote its metrics, before the study heard of it: its result stands
        done = project.outputs.results.read_json(key)
        if done.get("tuning") == tag.get("tuning"):
            return Outcome(done["splits"]["val"][metric], bool(done.get("pruned")), done)
    resolved = project.configs.transformer.params_for(model_name, _source=f"trial {slug}", metric=metric, **params)
    record = train_transformer(trial_project(project, slug), resolved, resume="auto" if resume else "never",
                               slug=slug, on_epoch=report, evaluate_test=False, record_extra=tag)
    return Outcome(record["splits"]["val"][metric], bool(record.get("pruned")), record)


# -- baseline ----------------------------------------------------------------------------------------------
def baseline_config(config: BaselineConfig, model_name: str, params: dict[str, Any]) -> BaselineConfig:
    """``models_baseline.yaml`` with the trial's values (tfidf keys shared, classifier keys per model)."""
    data = config.model_dump(mode="json")
    data.pop("tune", None)
    for name, value in params.items():
        section = BASELINE_TUNABLE[name]
        if section == "tfidf":
            data = deep_merge(data, {"tfidf": {name: value}})
        else:
            data = deep_merge(data, {"models": {model_name: {name: value}}})
    return BaselineConfig.model_validate(data)


def baseline_trial(project: Project, model_name: str, params: dict[str, Any], metric: str, slug: str,
                   tag: dict[str, Any]) -> Outcome:
    """TF-IDF + ``model_name`` with the trial's values, fit on train, scored on val; saved as ``<slug>``."""
    from multitype.baselines import build_classifier, build_vectorizer
    from multitype.tfidf import TfidfFallbackWarning
    from sklearn.pipeline import Pipeline

    run = trial_project(project, slug)
    storage, seed = project.storage, project.configs.project.seed
    config = baseline_config(project.configs.baseline, model_name, params)
    labels = load_labels(storage)
    train_texts, y_train = load_split(storage, "train", labels)
    val_texts, y_val = load_split(storage, "val", labels)
    if not val_texts:
        raise DataError(f"{storage.url(layout.processed_split('val', len(labels)))} has no rows: tuning scores "
                        "trials on val; set split.val above 0 in data_config.yaml and rerun 'multitype prepare'")
    started = time.perf_counter()
    pipeline = Pipeline([("tfidf", build_vectorizer(config.tfidf)), ("clf", build_classifier(model_name, config, seed))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TfidfFallbackWarning)
        pipeline.fit(train_texts, y_train)
    seconds = time.perf_counter() - started
    start = time.perf_counter()
    predicted = pipeline.predict(val_texts)
    speed = len(val_texts) / max(time.perf_counter() - start, 1e-9)
    used = {"tfidf": config.tfidf.model_dump(mode="json"),
            "classifier": getattr(config.models, model_name).model_dump(mode="json")}
    record = metrics_record(slug, "baseline", labels, {"val": classification_metrics(y_val, predicted, labels)},
                            run.run_id, training_seconds=seconds, inference_samples_per_s=speed, slug=slug,
                            train_samples=len(train_texts), params=used, tuning_params=params,
                            base_model=model_name, **tag)
    _save_baseline(run, slug, pipeline, labels, record)
    return Outcome(record["splits"]["val"][metric], False, record)


def _save_baseline(run: Project, slug: str, pipeline: Any, labels: list[str], record: dict[str, Any]) -> None:
    from multitype.predictor import save_sklearn_model

    storage, results = run.storage, run.outputs.results
    with tempfile.TemporaryDirectory(prefix="multitype-trial-") as tmp:
        save_sklearn_model(pipeline, tmp, {
            "model": slug, "labels": labels, "run_id": run.run_id,
            "text_field": run.configs.data.text_field, "label_field": run.configs.data.label_field,
            "steps": [f"{type(step).__module__}.{type(step).__name__}" for _, step in pipeline.steps],
            "params": record["params"]})
        hashes = folder_hashes(tmp, layout.final_model(slug))
        storage.put_dir(tmp, layout.final_model(slug))
    results.write_json(layout.baseline_metrics(slug), record)
    summary = write_summary(results, "baseline")
    inputs = [layout.LABELS, layout.processed_split("train", len(labels)), layout.processed_split("val", len(labels))]
    write_manifest(run, inputs=inputs, outputs=[layout.baseline_metrics(slug), *([summary] if summary else [])],
                   output_hashes=hashes, extra={"models": [slug], "pruned": False, "tuning": record["tuning"]},
                   storage=results)


# -- the best trial, once, on test -------------------------------------------------------------------------
def metrics_key(kind: str, slug: str) -> str:
    return layout.transformer_metrics(slug) if kind == "transformer" else layout.baseline_metrics(slug)


def evaluate_on_test(project: Project, kind: str, slug: str, study_name: str) -> dict[str, Any]:
    """The best trial's saved model on the test split: its metrics file gains the test split (and the
    headline numbers), with a manifest of this evaluation; returns the test metrics (without per-class detail).
    """
    from multitype.predict import model_folder
    from multitype.predictor import load_predictor

    run = dataclasses.replace(project, run_id="", command=f"tune test {slug}", started=time.time())
    storage, results = project.storage, project.outputs.results
    labels = load_labels(storage)
    texts, y_true = load_split(storage, "test", labels)
    if not texts:
        raise DataError(f"{storage.url(layout.processed_split('test', len(labels)))} has no rows: nothing to "
                        "evaluate the best trial on")
    with model_folder(project, layout.final_model(slug)) as folder:
        predictor = load_predictor(folder)
    start = time.perf_counter()
    names, scores = predictor.predict(texts)
    speed = len(texts) / max(time.perf_counter() - start, 1e-9)
    index = {name: i for i, name in enumerate(labels)}
    y_pred = np.array([index[name] for name in names])
    test = classification_metrics(y_true, y_pred, labels)
    key = metrics_key(kind, slug)
    record = results.read_json(key)
    record["splits"]["test"] = test
    record.update({k: test[k] for k in ("accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix")})
    record.update(split="test", inference_samples_per_s=round(speed, 2), tuning_test_run_id=run.run_id,
                  intervals=headline_uncertainty(test, project.configs.project.report, project.configs.project.seed),
                  predictions=predictions_block(texts, y_true, y_pred,
                                                scores if predictor.score_kind == "prob" else None,
                                                None if predictor.score_kind == "prob" else
                                                "the model gives decision scores, not probabilities"))
    results.write_json(key, record)
    summary = write_summary(results, kind)
    write_manifest(run, inputs=[layout.LABELS, layout.processed_split("test", len(labels)), layout.final_model(slug)],
                   outputs=[key, *([summary] if summary else [])],
                   extra={"tuning": {"study": study_name, "best_slug": slug, "evaluated": "test"}}, storage=results)
    return {name: test[name] for name in ("accuracy", "macro_f1", "weighted_f1")}
