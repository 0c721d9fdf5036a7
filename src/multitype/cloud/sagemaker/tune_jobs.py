"""``multitype sagemaker tune status|stop|collect NAME``: a SageMaker tuning job and its trials.

:func:`describe` (DescribeHyperParameterTuningJob) and :func:`trials`
(ListTrainingJobsForHyperParameterTuningJob, every page, oldest first) feed
:func:`summary`, what ``status`` shows: the tuning job's state, the trials
counted by state, the best so far and each trial's objective value.
:func:`stop` sends StopHyperParameterTuningJob once. :func:`collect` writes the
study in the tuning results contract (``results/tuning/<study>.csv`` and
``.json``, backend ``sagemaker``), downloads the best trial's model into
``models/final/<its training job>/`` (:func:`collect.fetch_job_model`) and
evaluates it once on the local root's test split — the only time test data is
read in a tuning job's life.

Trial states (contract): Completed -> COMPLETE, Stopped -> PRUNED (SageMaker's
early stopping stops a trial; so does stopping the whole tuning job, which
the CSV cannot tell apart), Failed -> FAIL, InProgress/Stopping -> RUNNING.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import tempfile
from pathlib import Path
from typing import Any, Callable

from multitype import layout
from multitype.cloud.aws import aws_errors, error_code
from multitype.cloud.sagemaker import collect as job_collect
from multitype.cloud.sagemaker import entrypoint, jobs
from multitype.config import AwsConfig
from multitype.errors import AwsError, DataError
from multitype.storage import Storage

STATES = {"Completed": "COMPLETE", "Stopped": "PRUNED", "Failed": "FAIL", "InProgress": "RUNNING",
          "Stopping": "RUNNING"}
ENDED = ("Completed", "Failed", "Stopped")
SCHEMA_VERSION = 1


def _not_found(name: str, aws: AwsConfig) -> AwsError:
    return AwsError(f"no SageMaker tuning job named {name!r} in {aws.region}; see the console's hyperparameter "
                    "tuning jobs, or runs/sagemaker-tuning/ for the ones launched from this root")


def describe(aws: AwsConfig, name: str) -> dict[str, Any]:
    """DescribeHyperParameterTuningJob (a missing job named in one line)."""
    from botocore.exceptions import ClientError

    try:
        with aws_errors(f"describe the tuning job {name}", aws):
            return dict(jobs.sagemaker(aws).describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name))
    except (ClientError, AwsError) as exc:
        text = str(exc).lower()
        code = (error_code(exc) or "").lower()
        if code in ("validationexception", "resourcenotfound") or "resourcenotfound" in text:
            if "not found" in text or "could not find" in text:
                raise _not_found(name, aws) from None
        raise


def trials(aws: AwsConfig, name: str) -> list[dict[str, Any]]:
    """Every training job of the tuning job (all pages), by CreationTime, oldest first."""
    client = jobs.sagemaker(aws)
    found: list[dict[str, Any]] = []
    token = None
    for _ in range(1000):  # 100 per page: 100,000 trials, far above SageMaker's limits
        args: dict[str, Any] = {"HyperParameterTuningJobName": name, "MaxResults": 100, "SortBy": "CreationTime",
                                "SortOrder": "Ascending"}
        if token:
            args["NextToken"] = token
        with aws_errors(f"list the training jobs of tuning job {name}", aws):
            page = client.list_training_jobs_for_hyper_parameter_tuning_job(**args)
        found += page.get("TrainingJobSummaries", [])
        token = page.get("NextToken")
        if not token:
            break
    return sorted(found, key=lambda t: (_time(t.get("CreationTime")) or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
                                        t.get("TrainingJobName", "")))


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return None


def _iso(value: Any) -> str | None:
    found = _time(value)
    return found.isoformat() if found else (None if value is None else str(value))


def _seconds(trial: dict[str, Any], now: dt.datetime | None = None) -> float | None:
    start = _time(trial.get("TrainingStartTime")) or _time(trial.get("CreationTime"))
    if start is None:
        return None
    end = _time(trial.get("TrainingEndTime"))
    if end is None:
        if trial.get("TrainingJobStatus") in ENDED:
            return None
        end = now or dt.datetime.now(dt.timezone.utc)
    return round(max((end - start).total_seconds(), 0.0), 1)


def decode_params(tuned: dict[str, str], space: dict[str, Any]) -> dict[str, Any]:
    """A trial's ``TunedHyperParameters`` (strings) as the values the trainer got, by the space's types."""
    from multitype.tuning.space import IntRange, LogUniform, Uniform

    params: dict[str, Any] = {}
    for name, raw in sorted(tuned.items()):
        dist = space.get(name)
        try:
            if isinstance(dist, IntRange):
                params[name] = int(float(raw))
            elif isinstance(dist, (LogUniform, Uniform)):
                params[name] = float(raw)
            else:
                params[name] = json.loads(raw)
        except ValueError:
            params[name] = raw
    return params


def _value(trial: dict[str, Any]) -> float | None:
    metric = trial.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    value = metric.get("Value")
    return float(value) if isinstance(value, (int, float)) else None


def rows(trial_list: list[dict[str, Any]], space: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per trial in the contract's terms: number, slug, state, value, seconds, params."""
    out = []
    for number, trial in enumerate(trial_list):
        out.append({"number": number, "slug": trial["TrainingJobName"],
                    "state": STATES.get(trial.get("TrainingJobStatus", ""), "RUNNING"), "value": _value(trial),
                    "seconds": _seconds(trial), "status": trial.get("TrainingJobStatus"),
                    "failure_reason": trial.get("FailureReason"),
                    "params": decode_params(trial.get("TunedHyperParameters") or {}, space)})
    return out


def best_row(table: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    """The COMPLETE trial with the best value (first one on a tie), or None."""
    done = [r for r in table if r["state"] == "COMPLETE" and r["value"] is not None]
    if not done:
        return None
    if direction == "maximize":
        return max(done, key=lambda r: (r["value"], -r["number"]))
    return min(done, key=lambda r: (r["value"], r["number"]))


def _direction(desc: dict[str, Any]) -> str:
    kind = desc["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["Type"]
    return "maximize" if kind == "Maximize" else "minimize"


def _space(desc: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any]:
    """The study's space: the launch record's ``tune`` block, else rebuilt from the request's ParameterRanges."""
    from multitype.tuning.space import TuneConfig

    if record and isinstance(record.get("tune"), dict):
        return TuneConfig.model_validate(record["tune"]).distributions()
    ranges = desc["HyperParameterTuningJobConfig"].get("ParameterRanges") or {}
    space: dict[str, Any] = {}
    for r in ranges.get("ContinuousParameterRanges", []):
        kind = "loguniform" if r.get("ScalingType") == "Logarithmic" else "uniform"
        space[r["Name"]] = {kind: [float(r["MinValue"]), float(r["MaxValue"])]}
    for r in ranges.get("IntegerParameterRanges", []):
        space[r["Name"]] = {"int": [int(r["MinValue"]), int(r["MaxValue"])],
                            **({"log": True} if r.get("ScalingType") == "Logarithmic" else {})}
    for r in ranges.get("CategoricalParameterRanges", []):
        space[r["Name"]] = {"choice": [json.loads(v) for v in r["Values"]]}
    return TuneConfig.model_validate({"space": space}).distributions()


def summary(aws: AwsConfig, name: str, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``status`` shows, JSON-ready: state, objective, counts by trial state, best so far, every trial."""
    desc = describe(aws, name)
    config = desc["HyperParameterTuningJobConfig"]
    objective = config["HyperParameterTuningJobObjective"]
    table = rows(trials(aws, name), _space(desc, record))
    direction = _direction(desc)
    best = best_row(table, direction)
    counts = {state: sum(1 for r in table if r["state"] == state) for state in ("COMPLETE", "PRUNED", "FAIL",
                                                                                  "RUNNING")}
    return {"tuning_job": name, "status": desc.get("HyperParameterTuningJobStatus"),
            "objective": {"metric": objective["MetricName"], "direction": direction},
            "max_jobs": config["ResourceLimits"]["MaxNumberOfTrainingJobs"],
            "max_parallel_jobs": config["ResourceLimits"]["MaxParallelTrainingJobs"],
            "counts": counts, "best": best, "trials": table, "failure_reason": desc.get("FailureReason"),
            "created": _iso(desc.get("CreationTime")), "ended": _iso(desc.get("HyperParameterTuningEndTime"))}


def stop(aws: AwsConfig, name: str) -> str:
    """StopHyperParameterTuningJob, sent once; returns what happened in one line.

    Raises
    ------
    AwsError
        The tuning job does not exist or has already ended Completed/Failed.
    """
    desc = describe(aws, name)
    status = desc.get("HyperParameterTuningJobStatus")
    if status in ("Stopping", "Stopped"):
        return f"tuning job {name} is already {status}; nothing to do"
    if status in ("Completed", "Failed"):
        raise AwsError(f"tuning job {name} already ended {status}; there is nothing to stop")
    with aws_errors(f"stop the tuning job {name}", aws):
        jobs.sagemaker(aws, max_attempts=1).stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    return f"stopping tuning job {name} (was {status}); its running trials are stopped too"


# --- collect -------------------------------------------------------------------------------------
def csv_key(study: str) -> str:
    return layout.tuning_csv(study)


def json_key(study: str) -> str:
    return layout.tuning_summary(study)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list) else value


def study_csv(table: list[dict[str, Any]], names: list[str]) -> str:
    """The contract's CSV: ``number,slug,state,value,seconds,params_<name>...`` (names sorted)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["number", "slug", "state", "value", "seconds", *[f"params_{n}" for n in names]])
    for r in table:
        writer.writerow([r["number"], r["slug"], r["state"], _cell(r["value"]), _cell(r["seconds"]),
                         *[_cell(r["params"].get(n)) for n in names]])
    return buf.getvalue()


def _intermediate(remote: Storage, job: str, metric: str) -> tuple[list[list[float]], str | None]:
    """A trial's val values per epoch from its metrics JSON under its trial root, and the key read (or None)."""
    key = entrypoint.result_key(job)
    if not remote.exists(key):
        return [], None
    result = remote.read_json(key)
    models = result.get("models") if isinstance(result, dict) else None
    if not isinstance(models, dict) or not models:
        return [], None
    info = next(iter(models.values()))
    if not isinstance(info, dict) or not isinstance(info.get("metrics"), str) or not remote.exists(info["metrics"]):
        return [], None
    record = remote.read_json(info["metrics"])
    history = record.get("history") or []
    points = [[entry["epoch"], entry[f"val_{metric}"]] for entry in history
              if isinstance(entry, dict) and isinstance(entry.get(f"val_{metric}"), (int, float))]
    return points, info["metrics"]


def check_same_data(local: Storage, trial: Storage, job: str, echo: Callable[[str], None]) -> None:
    """The local train/val splits and labels are the ones the trial trained on (its manifest's sha256).

    Otherwise rows of the local test split could have been training rows of the trial, and its test metrics
    would flatter it.

    Raises
    ------
    DataError
        A file differs or is missing locally; the message names it.
    """
    import hashlib

    key = entrypoint.result_key(job)
    result = trial.read_json(key) if trial.exists(key) else {}
    run_ids = result.get("run_ids") if isinstance(result, dict) else None
    manifest_key = f"{layout.RUNS}/{run_ids[0]}/manifest.json" if run_ids else None
    if not manifest_key or not trial.exists(manifest_key):
        echo(f"warning: no run manifest of {job} under {trial.url()}: cannot check that this root's data are the "
             "ones it trained on")
        return
    inputs = trial.read_json(manifest_key).get("inputs") or {}
    labels = len(local.read_json(layout.LABELS)) if local.exists(layout.LABELS) else 0
    wanted = {layout.LABELS, layout.processed_split("train", labels), layout.processed_split("val", labels)}
    checked = [k for k in inputs if k in wanted]
    for name in checked:
        here = hashlib.sha256(local.read_bytes(name)).hexdigest() if local.exists(name) else None
        if here != inputs[name]:
            state = "is missing" if here is None else "differs from the file it trained on"
            raise DataError(f"{local.url(name)} {state} (trial {job}, sha256 {inputs[name][:12]}...): the best "
                            "model is tested on this root's test split, which must come from the same prepare; "
                            "'multitype sync pull' the data the tuning job used")


def evaluate_on_test(local: Storage, model_dir: Path) -> dict[str, Any]:
    """The one test evaluation of a tuning job: the best trial's model on the local root's test split.

    Raises
    ------
    DataError
        No processed test split, or the model's labels are not the root's.
    """
    from multitype.data.dataset import load_labels, load_split
    from multitype.evaluate import classification_metrics
    from multitype.predictor import load_predictor

    if not local.exists(layout.LABELS):
        raise DataError(f"{local.url(layout.LABELS)} is missing: the best model is evaluated on this root's test "
                        "split; run 'multitype prepare' (or 'multitype sync pull') first")
    labels = load_labels(local)
    predictor = load_predictor(model_dir, device="cpu")
    if list(predictor.labels) != list(labels):
        raise DataError(f"the best model's labels {list(predictor.labels)} are not {local.url(layout.LABELS)}'s "
                        f"{labels}: this root holds other processed data than the tuning job trained on")
    texts, y_true = load_split(local, "test", labels)
    if not texts:
        raise DataError(f"the test split of {local.url()} is empty: nothing to evaluate the best model on")
    predicted, _ = predictor.predict(texts)
    ids = {name: i for i, name in enumerate(labels)}
    metrics = classification_metrics(y_true, [ids[p] for p in predicted], labels)
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "weighted_f1", "num_samples")}


def collect(local: Storage, aws: AwsConfig, name: str, record: dict[str, Any] | None = None,
            study: str | None = None, endpoint_url: str | None = None, evaluate: bool = True,
            echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the study files and fetch (and test) the best trial's model; returns the summary JSON.

    Parameters
    ----------
    local : Storage
        The project's root: ``results/tuning/`` and ``models/final/`` are written there.
    record : dict, optional
        The launch record (study, model, space); without one the space is read back from the request.
    study : str, optional
        The study name (default: the record's, else the tuning job's name).

    Raises
    ------
    AwsError
        No such tuning job; the best trial's model archive is missing.
    DataError
        The local root cannot evaluate the model on test (see :func:`evaluate_on_test`).
    """
    from multitype.tuning.space import TuneConfig

    desc = describe(aws, name)
    space = _space(desc, record)
    definition = desc.get("TrainingJobDefinition") or {}
    static = definition.get("StaticHyperParameters") or {}
    root = json.loads(static["root"]) if "root" in static else (record or {}).get("root")
    model_name = (record or {}).get("model_name") or json.loads(static.get("model-name", '""')) or name
    study = study or (record or {}).get("study") or name
    objective = desc["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    metric = objective["MetricName"].removeprefix("val_")
    direction = _direction(desc)
    tune = TuneConfig.model_validate({"metric": metric, "direction": direction,
                                      "space": {k: v.spec() for k, v in space.items()}})
    table = rows(trials(aws, name), space)
    intermediate: dict[str, list[list[float]]] = {}
    for r in table:
        if root:
            remote = Storage(entrypoint.trial_root(root, name, r["slug"]), endpoint_url=endpoint_url,
                             profile=aws.profile)
            points, _ = _intermediate(remote, r["slug"], metric)
            if points:
                intermediate[str(r["number"])] = points
    best = best_row(table, direction)
    best_doc = None
    if best is not None:
        best_doc = {"number": best["number"], "slug": best["slug"], "value": best["value"], "params": best["params"],
                    "test_metrics": None}
        if evaluate and root:
            check_same_data(local, Storage(entrypoint.trial_root(root, name, best["slug"]), endpoint_url=endpoint_url,
                                           profile=aws.profile), best["slug"], echo)
        job_desc = jobs.describe(aws, best["slug"])
        with tempfile.TemporaryDirectory(prefix="multitype-tune-collect-") as tmp:
            unpacked = Path(tmp) / "model"
            job_collect.fetch_job_model(best["slug"], job_desc, unpacked, aws, endpoint_url, "collect", echo)
            if evaluate:
                best_doc["test_metrics"] = evaluate_on_test(local, unpacked)
            local.put_dir(unpacked, layout.final_model(best["slug"]))
        best_doc["model"] = layout.final_model(best["slug"])
        echo(f"best trial {best['number']} ({best['slug']}): val {metric} {best['value']:.4f}; model in "
             f"{local.url(layout.final_model(best['slug']))}"
             + (f"; test {metric} {best_doc['test_metrics'][metric]:.4f}" if best_doc["test_metrics"] else ""))
    counts = {state: sum(1 for r in table if r["state"] == state) for state in ("COMPLETE", "PRUNED", "FAIL",
                                                                                  "RUNNING")}
    doc = {"schema_version": SCHEMA_VERSION, "study": study, "kind": "transformer", "backend": "sagemaker",
           "model_name": model_name, "metric": metric, "direction": direction, "space": tune.space_spec(),
           "fingerprint": tune.fingerprint(),
           "trials": {"total": len(table), "complete": counts["COMPLETE"], "pruned": counts["PRUNED"],
                      "failed": counts["FAIL"], "running": counts["RUNNING"]},
           "best": best_doc, "tuning_job": name, "intermediate": intermediate}
    # the files last, once the model is in place: a failed collect leaves the previous study files as they were
    local.write_text(csv_key(study), study_csv(table, sorted(tune.space_spec())))
    local.write_json(json_key(study), doc)
    echo(f"{len(table)} trial(s) of {name} in {local.url(csv_key(study))} and {local.url(json_key(study))}")
    return doc


def wait(aws: AwsConfig, name: str, poll_seconds: float = 60.0, max_seconds: float | None = None,
         echo: Callable[[str], None] = print, sleep: Callable[[float], None] | None = None) -> str:
    """Poll until the tuning job ends (a line whenever the counts change); returns its final status.

    Raises
    ------
    AwsError
        ``max_seconds`` passed first (the tuning job goes on).
    """
    import time

    sleep = sleep or time.sleep
    start = time.monotonic()
    last = None
    while True:
        desc = describe(aws, name)
        status = str(desc.get("HyperParameterTuningJobStatus"))
        counts = desc.get("TrainingJobStatusCounters") or {}
        line = f"{status}: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("Completed", "InProgress",
                                                                            "RetryableError", "NonRetryableError",
                                                                            "Stopped"))
        if line != last:
            echo(line)
            last = line
        if status in ENDED:
            return status
        if max_seconds is not None and time.monotonic() - start >= max_seconds:
            raise AwsError(f"tuning job {name} is still {status} after {max_seconds:g} s; it goes on: see "
                           f"'multitype sagemaker tune status {name}'")
        sleep(poll_seconds)
