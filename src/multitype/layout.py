"""Every artifact key of the layout (DESIGN.md section 1), relative to a root.

No other module spells an artifact path: they call these functions and hand the
key to :class:`multitype.storage.Storage`.
"""

from __future__ import annotations

SPLITS = ("train", "val", "test")
BASELINE_NAMES = ("logreg", "linear_svm")

RAW_DATA = "data/raw/raw_data.json"
LABELS = "data/processed/labels.json"
AUDIT = "data/processed/audit.json"
# prepare's staging area and commit record (multitype.data.publish); empty between runs
PROCESSED_PENDING = "data/processed/.pending"
BASELINE_SUMMARY = "results/baseline/baseline_summary.csv"
TRANSFORMER_SUMMARY = "results/transformer/transformer_summary.csv"
REPORT = "results/report.md"
REPORT_HTML = "results/report.html"
ERRORS = "results/errors"
# `multitype tune` / `sagemaker tune`: <study>.csv (one row per trial) and <study>.json (the summary)
TUNING = "results/tuning"
CHECKPOINTS = "models/checkpoints"
FIGURES_DATA = "figures/data"
FIGURES_RESULTS = "figures/results"
CONFIGS = "configs"
CODE = "code"
RUNS = "runs"
# the local MLflow store (tracking.uri: null): mlflow.db + artifacts/
MLFLOW = f"{RUNS}/mlflow"

# top-level groups that `sync --only` understands
SYNC_GROUPS = {
    "data": "data",
    "configs": CONFIGS,
    "code": CODE,
    "results": "results",
    "models": "models",
    "figures": "figures",
    "runs": RUNS,
}


def model_slug(model_name: str) -> str:
    """``org/model`` -> ``org__model`` (DESIGN.md section 1)."""
    return model_name.strip("/").replace("/", "__")


def processed_split(split: str, num_classes: int) -> str:
    return f"data/processed/{split}_{num_classes}class.csv"


def baseline_metrics(name: str) -> str:
    return f"results/baseline/{name}_metrics.json"


def transformer_metrics(slug: str) -> str:
    return f"results/transformer/{slug}_metrics.json"


def errors_csv(model: str) -> str:
    """``results/errors/<model-slug>.csv``: a model's misclassified test texts."""
    return f"{ERRORS}/{model_slug(model)}.csv"


def tuning_csv(study: str) -> str:
    """``results/tuning/<study>.csv``: one row per trial of a study."""
    return f"{TUNING}/{study}.csv"


def tuning_summary(study: str) -> str:
    """``results/tuning/<study>.json``: the study's space, counts, best trial and its test metrics."""
    return f"{TUNING}/{study}.json"


def checkpoint(slug: str, tag: str, folder: str = CHECKPOINTS) -> str:
    """``<folder>/<slug>-<tag>``; ``tag`` is ``step<N>``, ``epoch<k>`` or ``best``.

    ``folder`` is the checkpoint folder's key under its storage (``""`` when the
    checkpoints have a storage of their own, e.g. SageMaker's ``/opt/ml/checkpoints``).
    """
    name = f"{slug}-{tag}"
    return f"{folder}/{name}" if folder else name


def step_tag(global_step: int) -> str:
    """The tag of the step checkpoint taken after ``global_step`` optimizer steps."""
    return f"step{global_step}"


def final_model(name: str) -> str:
    return f"models/final/{name}"


def deployed_model(name: str) -> str:
    """``models/deploy/<model name>/model.tar.gz``: what a SageMaker endpoint's model was created from."""
    return f"models/deploy/{name}/model.tar.gz"


# the model registry (multitype.registry): one JSON index, each version's files beside it
REGISTRY = "models/registry"
REGISTRY_INDEX = f"{REGISTRY}/index.json"


def registry_model(name: str, sha256: str) -> str:
    """``models/registry/<name>/<first 16 hex of the model's sha256>``: a registered model's own copy.

    Named by content, not by version number, so it can be written before the
    index assigns the number (and two registrations of one model share it).
    """
    return f"{REGISTRY}/{name}/{sha256[:16]}"


def registry_package(name: str, sha256: str) -> str:
    """``models/registry/<name>/packages/<sha16>/model.tar.gz``: what a SageMaker model package points at."""
    return f"{REGISTRY}/{name}/packages/{sha256[:16]}/model.tar.gz"


def figure_data(name: str) -> str:
    return f"{FIGURES_DATA}/{name}.png"


def figure_results(name: str) -> str:
    return f"{FIGURES_RESULTS}/{name}.png"


def manifest(run_id: str) -> str:
    return f"{RUNS}/{run_id}/manifest.json"


def run_log(run_id: str, name: str) -> str:
    return f"{RUNS}/{run_id}/{name}"


# inside a transformer's model folder (models/final/<slug>/), written by `multitype export onnx`
ONNX_DIR = "onnx"
ONNX_AGREEMENT = f"{ONNX_DIR}/agreement.json"


TUNE_RUNS = f"{RUNS}/tune"


def tune_study(study: str, name: str = "") -> str:
    """``runs/tune/<study>/[name]``: the Optuna study (``study.db``, or a journal on S3 roots)."""
    return f"{TUNE_RUNS}/{study}/{name}" if name else f"{TUNE_RUNS}/{study}"


def onnx_model(quantized: bool = False) -> str:
    """``onnx/model.onnx``, or ``onnx/model.int8.onnx`` for the int8 one (relative to the model folder)."""
    return f"{ONNX_DIR}/model.int8.onnx" if quantized else f"{ONNX_DIR}/model.onnx"
