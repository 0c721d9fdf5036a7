"""MLflow experiment tracking: the one module that talks to MLflow.

``start(project, ...)`` returns a :class:`Tracker`; training calls its methods
and never imports mlflow. With ``tracking.mlflow: false`` (the default), without
the ``tracking`` extra installed, or when the tracking server cannot be used,
the tracker is a no-op and the reason is one ``warning:`` line at the start:
tracking never fails a training run. A logging call that fails later (the
server went away) is one more warning, and the tracker turns itself off.

Where runs go (``tracking.uri`` in project.yaml):

- ``null`` with a local root: a SQLite store ``<root>/runs/mlflow/mlflow.db``,
  artifacts in ``<root>/runs/mlflow/artifacts`` (``mlflow ui --backend-store-uri
  sqlite:///<root>/runs/mlflow/mlflow.db``).
- ``null`` with an ``s3://`` root: the same store under the working folder
  (``./runs/mlflow``), with a note. SQLite cannot live on S3, and a store split
  between a local database and S3 artifacts would outlive neither machine.
- ``http(s)://host:port``: an MLflow tracking server (checked with ``GET /health``
  before training starts, 5 s at most).
- ``arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>``: a
  SageMaker managed MLflow server, through the ``sagemaker-mlflow`` plugin
  (in the ``tracking`` extra).

Each run logs the configs in force as parameters (dotted keys), per-step and
per-epoch metrics, the final metrics, figures, the manifest and the model
folder; our run id is the tag ``multitype.run_id`` and the MLflow run id goes
into our manifest (``tracking.mlflow_run_id``).
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from multitype import layout
from multitype.manifest import scrub
from multitype.project import Project

EXTRA_HINT = "pip install 'multitype[tracking]'"
RUN_ID_TAG = "multitype.run_id"
_ARN = re.compile(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:mlflow-tracking-server/[A-Za-z0-9-]+")
_HTTP = re.compile(r"https?://[^\s/:]+(:\d{1,5})?(/\S*)?")
_PROBE_SECONDS = 5.0
# MLflow's HTTP client retries for minutes by default: a server that stops answering mid-run
# must cost seconds, not stall training
_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
             "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_PARAM_VALUE_MAX = 6000   # MLflow's limit on a parameter value


class Tracker:
    """One MLflow run, or nothing (``active`` False): every method is safe to call either way."""

    def __init__(self, client: Any = None, run_id: str | None = None, warn: Callable[[str], None] = print,
                 where: str = "") -> None:
        self.client, self.run_id, self._warn, self.where = client, run_id, warn, where

    @property
    def active(self) -> bool:
        return self.client is not None and self.run_id is not None

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> None:
        """``client.<method>(run_id, *args, **kwargs)``; a failure is one warning and turns tracking off."""
        if not self.active:
            return
        try:
            getattr(self.client, method)(self.run_id, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never fail training
            self._warn(f"MLflow tracking stopped: {what} failed at {self.where} ({_short(exc)}); training goes on")
            self.client = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flat ``{dotted.key: value}`` parameters (values cut to MLflow's limit)."""
        if not self.active:  # mlflow may not even be installed
            return
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._call("logging parameters", "log_batch", params=items[start:start + 100])

    def log_metrics(self, metrics: Mapping[str, float | int | None], step: int | None = None) -> None:
        if not self.active:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if items:
            self._call("logging metrics", "log_batch", metrics=items)

    def log_record(self, record: Mapping[str, Any], step: int | None = None) -> None:
        """The final metrics of a ``*_metrics.json`` record: ``<split>_<metric>`` per split, and the timings."""
        values: dict[str, Any] = {}
        for split, scores in (record.get("splits") or {}).items():
            values.update({f"{split}_{k}": scores.get(k) for k in ("accuracy", "macro_f1", "weighted_f1")})
        values.update({k: record.get(k) for k in ("training_seconds", "inference_samples_per_s",
                                                  "train_samples_per_s", "best_epoch")})
        self.log_metrics(values, step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if not self.active:
            return
        from mlflow.entities import RunTag

        self._call("setting tags", "log_batch", tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_file(self, local: str | os.PathLike[str], folder: str | None = None) -> None:
        self._call(f"uploading {Path(local).name}", "log_artifact", str(local), folder)

    def log_folder(self, local: str | os.PathLike[str], folder: str) -> None:
        self._call(f"uploading {folder}/", "log_artifacts", str(local), folder)

    def log_keys(self, storage: Any, keys: Iterable[str], folder: str) -> None:
        """Files of the root (figures, the manifest) as artifacts under ``folder``; missing ones are skipped."""
        if not self.active:
            return
        import tempfile

        with tempfile.TemporaryDirectory(prefix="multitype-mlflow-") as tmp:
            for key in keys:
                if not storage.exists(key):
                    continue
                local = Path(tmp) / Path(key).name
                local.write_bytes(storage.read_bytes(key))
                self.log_file(local, folder)

    def log_model_folder(self, storage: Any, key: str, folder: str = "model") -> None:
        """A model folder of the root (a temp copy for S3 roots) as artifacts under ``folder``."""
        if not self.active:
            return
        try:
            with storage.local_dir(key) as local:
                self.log_folder(local, folder)
        except Exception as exc:  # noqa: BLE001
            self._warn(f"MLflow tracking: the model folder {storage.url(key)} was not uploaded ({_short(exc)})")

    def end(self, status: str = "FINISHED") -> None:
        """Close the run: ``FINISHED``, ``FAILED`` or ``KILLED`` (an interrupted run, resumable)."""
        self._call("closing the run", "set_terminated", status)
        self.client = None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _param_value(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= _PARAM_VALUE_MAX else text[:_PARAM_VALUE_MAX - 3] + "..."


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values).

    >>> flatten({"tfidf": {"ngram_range": [1, 2]}, "seed": 42})
    {'tfidf.ngram_range': [1, 2], 'seed': 42}
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def store_uri(project: Project, cwd: str | os.PathLike[str] | None = None) -> tuple[str, str | None, str | None]:
    """(tracking URI, artifact location for a new experiment or None, a note or None) for ``project``.

    Raises
    ------
    ValueError
        ``tracking.uri`` is not one of the forms MLflow is used with here (the message says which are).
    """
    uri = project.configs.project.tracking.uri
    if uri is None:
        if project.storage.remote:
            base = Path(cwd or os.getcwd()) / layout.MLFLOW
            note = (f"the root is on S3 and an MLflow store cannot be: runs are tracked in {base} on this machine "
                    f"(set tracking.uri to an MLflow server to keep them elsewhere)")
        else:
            base, note = project.storage.local_path(layout.MLFLOW), None
        base.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{base.resolve() / 'mlflow.db'}", (base.resolve() / "artifacts").as_uri(), note
    uri = uri.strip()
    if _HTTP.fullmatch(uri) or uri.startswith(("sqlite:///", "file:")):
        return uri, None, None
    if uri.startswith("arn:"):
        if not _ARN.fullmatch(uri):
            raise ValueError(f"tracking.uri {uri!r} is not a SageMaker MLflow tracking server ARN "
                             f"(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>)")
        import importlib.util

        if importlib.util.find_spec("sagemaker_mlflow") is None:
            raise ValueError(f"tracking.uri is a SageMaker MLflow ARN, which needs the sagemaker-mlflow plugin: "
                             f"{EXTRA_HINT}")
        return uri, None, None
    raise ValueError(f"tracking.uri {uri!r} is not an MLflow tracking URI: use null (a local store under the root), "
                     f"http(s)://host:port or a SageMaker MLflow tracking server ARN")


def _probe(uri: str) -> None:
    """``GET <uri>/health`` within a few seconds; raise OSError with the reason otherwise."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=_PROBE_SECONDS) as response:
            if response.status != 200:
                raise OSError(f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code} from {uri}/health") from None
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        raise OSError(str(getattr(exc, "reason", exc))) from None


def start(project: Project, kind: str, name: str, warn: Callable[[str], None], say: Callable[[str], None],
          params: Mapping[str, Any] | None = None, resume_run_id: str | None = None) -> Tracker:
    """Open an MLflow run for one training run (or a no-op tracker, with the reason as a warning).

    Parameters
    ----------
    project : Project
        Its ``tracking`` config, configs in force (logged as parameters) and run id (a tag).
    kind : str
        ``baseline`` or ``transformer`` (a tag, and the run name's prefix).
    name : str
        The model's name (the run name is ``<name>-<run id>``).
    warn, say : callable
        Where warnings and the one opening line go.
    params : mapping, optional
        Parameters of this run beyond the configs (e.g. the resolved hyperparameters), flattened.
    resume_run_id : str, optional
        The MLflow run a resumed training run continues (from its checkpoint); a new one when it is gone.
    """
    config = project.configs.project.tracking
    if not config.mlflow:
        return Tracker(warn=warn)
    try:
        from mlflow import MlflowClient
    except ImportError:
        warn(f"tracking.mlflow is on but MLflow is not installed ({EXTRA_HINT}); training without tracking")
        return Tracker(warn=warn)
    try:
        uri, artifacts, note = store_uri(project)
    except ValueError as exc:
        warn(f"{exc}; training without tracking")
        return Tracker(warn=warn)
    for key, value in _HTTP_ENV.items():
        os.environ.setdefault(key, value)
    if uri.startswith("http"):
        try:
            _probe(uri)
        except OSError as exc:
            warn(f"MLflow tracking server {uri} does not answer ({exc}); training without tracking")
            return Tracker(warn=warn)
    experiment = config.experiment or project.configs.project.name
    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment,
                                                                                   artifact_location=artifacts)
        run_id = None
        if resume_run_id:
            try:
                if client.get_run(resume_run_id).info.experiment_id == experiment_id:
                    run_id = resume_run_id
                    client.update_run(run_id, status="RUNNING")
            except Exception:  # noqa: BLE001 - gone or elsewhere: a new run
                run_id = None
        if run_id is None:
            run = client.create_run(experiment_id, run_name=f"{name}-{project.run_id}",
                                    tags={RUN_ID_TAG: project.run_id, "multitype.kind": kind,
                                          "multitype.model": name, "multitype.command": project.command})
            run_id = run.info.run_id
    except Exception as exc:  # noqa: BLE001 - a store or server we cannot use is a warning
        warn(f"MLflow tracking at {uri} cannot be used ({_short(exc)}); training without tracking")
        return Tracker(warn=warn)
    tracker = Tracker(client, run_id, warn, where=uri)
    if resume_run_id == run_id:
        tracker.set_tags({f"{RUN_ID_TAG}.resumed": project.run_id})
    else:
        logged = flatten(scrub(project.configs.to_dict()))
        logged.update(flatten(scrub(dict(params or {})), "run."))
        tracker.log_params(logged)
    if note:
        say(f"note: {note}")
    say(f"tracking: MLflow run {run_id} in experiment '{experiment}' at {uri}")
    return tracker


def reopen(entry: Mapping[str, Any], warn: Callable[[str], None]) -> Tracker:
    """A tracker on a run that a manifest names (``{"mlflow_run_id": ..., "uri": ...}``); no-op when unusable."""
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=entry["uri"])
        client.get_run(entry["mlflow_run_id"])
    except Exception as exc:  # noqa: BLE001
        warn(f"MLflow run {entry.get('mlflow_run_id')} cannot be reopened ({_short(exc)})")
        return Tracker(warn=warn)
    return Tracker(client, entry["mlflow_run_id"], warn, where=entry["uri"])


def tracked_runs(storage: Any, run_ids: Iterable[str]) -> list[Mapping[str, Any]]:
    """The MLflow runs that the manifests of our ``run_ids`` name (baseline manifests name one per model)."""
    found: list[Mapping[str, Any]] = []
    for run_id in run_ids:
        key = layout.manifest(run_id)
        if not storage.exists(key):
            continue
        entry = storage.read_json(key).get("tracking") or {}
        found.extend([entry] if "mlflow_run_id" in entry else [v for v in entry.values() if isinstance(v, dict)])
    return found


def attach_report(storage: Any, run_ids: Iterable[str], warn: Callable[[str], None]) -> int:
    """The report (Markdown and HTML) and its figures (``figures/results/*.png``) to every MLflow run of ``run_ids``.

    Returns the number of runs.
    """
    entries = tracked_runs(storage, run_ids)
    if not entries:
        return 0
    figures = [rel for rel in sorted(storage.walk_files(layout.FIGURES_RESULTS)) if rel.endswith(".png")]
    for entry in entries:
        tracker = reopen(entry, warn)
        tracker.log_keys(storage, [layout.REPORT, layout.REPORT_HTML], "report")
        tracker.log_keys(storage, figures, "figures")
    return len(entries)
