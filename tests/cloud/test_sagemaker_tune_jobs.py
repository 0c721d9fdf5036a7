"""``multitype sagemaker tune status|stop|collect`` against moto (SageMaker) and SeaweedFS (S3).

The tuning job is launched into moto by ``sagemaker tune`` itself; its trials
are training jobs created in moto (which makes each one ``Completed``), their
results put into SeaweedFS where the entry script writes them
(``entrypoint.trial_root``), the best one's ``model.tar.gz`` holding a real
MiniLM classifier folder. moto has no ListTrainingJobsForHyperParameterTuningJob
and no StopHyperParameterTuningJob: both are answered at our client's
``before-call`` hook, after the exact request has been checked against
botocore's service model and recorded. moto's DescribeHyperParameterTuningJob
always says ``Completed``; the stop tests change its parsed answer on our
client (``after-call``), the request itself still goes to moto.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from multitype import layout
from multitype.cloud.sagemaker import entrypoint, request as req, tune, tune_jobs
from multitype.config import AwsConfig
from multitype.project import open_project
from multitype.storage import Storage
from tests.cloud.jobs_helpers import create_job, hook
from tests.cloud.launch_helpers import make_project
from tests.cloud.test_sagemaker_tune_launch import transformer_with_tune

T0 = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.timezone.utc)
# (status, objective value, tuned hyperparameters as SageMaker reports them, seconds)
TRIALS = [
    ("Completed", 0.61, {"learning_rate": "0.0001", "batch_size": "16", "num_epochs": "3", "warmup_ratio": "0.1",
                         "precision": '"fp32"'}, 300),
    ("Stopped", 0.40, {"learning_rate": "1.2e-05", "batch_size": "32", "num_epochs": "5", "warmup_ratio": "0.05",
                       "precision": '"bf16"'}, 120),
    ("Completed", 0.83, {"learning_rate": "4.1e-05", "batch_size": "16", "num_epochs": "4", "warmup_ratio": "0.0",
                         "precision": '"fp32"'}, 420),
    ("Failed", None, {"learning_rate": "0.0002", "batch_size": "32", "num_epochs": "2", "warmup_ratio": "0.2",
                      "precision": '"bf16"'}, 30),
    ("InProgress", None, {"learning_rate": "6e-05", "batch_size": "32", "num_epochs": "3", "warmup_ratio": "0.15",
                          "precision": '"fp32"'}, None),
]


def _model_tar() -> bytes:
    """model.tar.gz of SM_MODEL_DIR after a trial: a real MiniLM classifier folder (its head untrained)."""
    import tempfile

    from multitype.project import Place
    from multitype.transformer import artifacts, models
    from tests.transformer.conftest import BBC_4CLASS

    source = models.resolve_model("minilm")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        artifacts.save_final_model(Place(Storage(str(folder))), models.load_classifier(source, list(BBC_4CLASS)),
                                   models.load_tokenizer(source), list(BBC_4CLASS), "minilm", 64)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(folder, arcname=".")
        return buf.getvalue()


class Study:
    def __init__(self, s3_server: Any, tmp_path: Path, cli: Any) -> None:
        self.bucket = s3_server.make_bucket("tunejobs")
        self.remote = f"s3://{self.bucket}/proj"
        self.root, self.configs = make_project(tmp_path, self.remote)
        (self.configs / "models_transformer.yaml").write_text(transformer_with_tune())
        res = cli("sagemaker", "tune", "--max-jobs", "5", "--max-parallel-jobs", "2", "--study", "minilm-sm",
                  *self.args())
        assert res.exit_code == 0, res.stderr
        self.name = res.stdout.strip()
        self.jobs = [f"{self.name}-{i + 1:03d}-{i:08x}" for i in range(len(TRIALS))]
        self.lists: list[dict[str, Any]] = []
        for job in self.jobs:
            create_job(job, root=self.remote)

    def args(self) -> list[str]:
        return ["--root", str(self.root), "--config-dir", str(self.configs)]

    def put_trial_results(self, number: int, history: list[float]) -> None:
        """What a trial's entry script leaves in its own root: result.json and the metrics JSON."""
        job = self.jobs[number]
        remote = Storage(entrypoint.trial_root(self.remote, self.name, job))
        record = {"model": "minilm", "split": "val", "macro_f1": max(history),
                  "history": [{"epoch": i + 1, "val_macro_f1": v, "val_accuracy": v} for i, v in enumerate(history)]}
        remote.write_json(layout.transformer_metrics("minilm"), record)
        run_id = f"trial-{number}"
        remote.write_json(entrypoint.result_key(job), {"job_name": job, "tuning_job": self.name, "run_ids": [run_id],
                                                       "models": {"minilm": {
                                                           "metrics": layout.transformer_metrics("minilm"),
                                                           "model_dir": ""}}})
        # the manifest's inputs: the data it trained on, as this root holds it (the test split was empty)
        data = {key: hashlib.sha256((self.root / key).read_bytes()).hexdigest()
                for key in (layout.LABELS, "data/processed/train_4class.csv", "data/processed/val_4class.csv")}
        remote.write_json(layout.manifest(run_id), {"run_id": run_id, "inputs": {
            **data, "data/processed/test_4class.csv": hashlib.sha256(b"text,label\n").hexdigest()}})

    def summaries(self) -> list[dict[str, Any]]:
        out = []
        for i, (job, (status, value, tuned, seconds)) in enumerate(zip(self.jobs, TRIALS)):
            start = T0 + dt.timedelta(minutes=10 * i)
            summary: dict[str, Any] = {
                "TrainingJobName": job,
                "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}",
                "TuningJobName": self.name, "CreationTime": start - dt.timedelta(seconds=5),
                "TrainingStartTime": start, "TrainingJobStatus": status, "TunedHyperParameters": tuned}
            if seconds is not None:
                summary["TrainingEndTime"] = start + dt.timedelta(seconds=seconds)
            if value is not None:
                summary["FinalHyperParameterTuningJobObjectiveMetric"] = {"Type": "Maximize",
                                                                          "MetricName": "val_macro_f1",
                                                                          "Value": value}
                summary["ObjectiveStatus"] = "Succeeded"
            if status == "Failed":
                summary["FailureReason"] = "AlgorithmError: CUDA out of memory"
            out.append(summary)
        return out

    def list_answer(self, page_size: int = 2):
        """ListTrainingJobsForHyperParameterTuningJob at our client: checked, recorded, answered in pages."""
        pages = self.summaries()[::-1]  # newest first: the code must order by CreationTime itself

        def answer(params: dict[str, Any], model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
            sent = json.loads(params["body"])
            assert req.check_operation(model.name, sent) == []
            self.lists.append(sent)
            start = int(sent.get("NextToken", "0"))
            page = pages[start:start + page_size]
            parsed: dict[str, Any] = {"TrainingJobSummaries": page}
            if start + page_size < len(pages):
                parsed["NextToken"] = str(start + page_size)
            return AWSResponse(params["url"], 200, {}, None), parsed

        return hook("sagemaker", "before-call.sagemaker.ListTrainingJobsForHyperParameterTuningJob", answer)


@pytest.fixture
def study(s3_server, aws_env, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> Study:
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    return Study(s3_server, tmp_path, cli)


def _tuning_status(status: str):
    def edit(parsed: dict[str, Any], **_: Any) -> None:
        if "HyperParameterTuningJobStatus" in parsed:
            parsed["HyperParameterTuningJobStatus"] = status
    return hook("sagemaker", "after-call.sagemaker.DescribeHyperParameterTuningJob", edit)


# --- status ------------------------------------------------------------------------------------------
def test_status_counts_trials_and_names_the_best(study: Study, cli) -> None:
    with study.list_answer():
        res = cli("sagemaker", "tune", "status", study.name, "--json", *study.args())
    assert res.exit_code == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["tuning_job"] == study.name and info["status"] == "Completed"  # moto's answer
    assert info["objective"] == {"metric": "val_macro_f1", "direction": "maximize"}
    assert info["max_jobs"] == 5 and info["max_parallel_jobs"] == 2
    assert info["counts"] == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1, "RUNNING": 1}
    assert [t["slug"] for t in info["trials"]] == study.jobs  # by CreationTime, though listed newest first
    assert [t["value"] for t in info["trials"]] == [0.61, 0.40, 0.83, None, None]
    assert info["best"]["slug"] == study.jobs[2] and info["best"]["value"] == 0.83
    assert info["best"]["params"] == {"batch_size": 16, "learning_rate": 4.1e-05, "num_epochs": 4,
                                      "precision": "fp32", "warmup_ratio": 0.0}
    assert info["trials"][3]["failure_reason"] == "AlgorithmError: CUDA out of memory"
    assert [t["seconds"] for t in info["trials"]][:4] == [300.0, 120.0, 420.0, 30.0]
    # all pages, each request exactly ours
    assert study.lists == [
        {"HyperParameterTuningJobName": study.name, "MaxResults": 100, "SortBy": "CreationTime",
         "SortOrder": "Ascending", **({"NextToken": str(n)} if n else {})} for n in (0, 2, 4)]

    with study.list_answer():
        table = cli("sagemaker", "tune", "status", study.name, *study.args())
    assert table.exit_code == 0, table.stderr
    assert "complete 2, pruned 1, fail 1, running 1" in table.stdout and f"{study.jobs[2]}: 0.83" in table.stdout


def test_status_of_a_missing_tuning_job(study: Study, cli) -> None:
    res = cli("sagemaker", "tune", "status", "multitype-gone-2612030000", *study.args())
    assert res.exit_code == 2
    assert res.stderr.startswith("error: no SageMaker tuning job named 'multitype-gone-2612030000' in us-east-1")
    assert res.stderr.count("\n") == 1


# --- stop ----------------------------------------------------------------------------------------------
def test_stop_sends_exactly_our_request(study: Study, cli) -> None:
    sent: list[dict[str, Any]] = []

    def answer(params: dict[str, Any], model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        body = json.loads(params["body"])
        assert req.check_operation(model.name, body) == []
        sent.append(body)
        return AWSResponse(params["url"], 200, {}, None), {}

    with _tuning_status("InProgress"), \
            hook("sagemaker", "before-call.sagemaker.StopHyperParameterTuningJob", answer, max_attempts=1):
        res = cli("sagemaker", "tune", "stop", study.name, *study.args())
    assert res.exit_code == 0, res.stderr
    assert sent == [{"HyperParameterTuningJobName": study.name}]
    assert f"stopping tuning job {study.name} (was InProgress)" in res.stderr


def test_stop_an_ended_or_stopping_job(study: Study, cli) -> None:
    res = cli("sagemaker", "tune", "stop", study.name, *study.args())  # moto: Completed
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: tuning job {study.name} already ended Completed; there is nothing to stop"
    with _tuning_status("Stopping"):
        res = cli("sagemaker", "tune", "stop", study.name, *study.args())
    assert res.exit_code == 0 and "already Stopping; nothing to do" in res.stderr


# --- collect -------------------------------------------------------------------------------------------
def test_collect_writes_the_study_and_the_best_model_tested_once(study: Study, cli) -> None:
    study.put_trial_results(0, [0.5, 0.61])
    study.put_trial_results(2, [0.7, 0.83, 0.8])
    best = study.jobs[2]
    Storage(study.remote).write_bytes(f"models/sagemaker/{best}/output/model.tar.gz", _model_tar())
    with study.list_answer():
        res = cli("sagemaker", "tune", "collect", study.name, "--apply", *study.args())
    assert res.exit_code == 0, res.stderr

    rows = list(csv.reader((study.root / "results" / "tuning" / "minilm-sm.csv").open()))
    assert rows[0] == ["number", "slug", "state", "value", "seconds", "params_batch_size", "params_learning_rate",
                       "params_num_epochs", "params_precision", "params_warmup_ratio"]
    assert rows[1:] == [
        ["0", study.jobs[0], "COMPLETE", "0.61", "300.0", "16", "0.0001", "3", "fp32", "0.1"],
        ["1", study.jobs[1], "PRUNED", "0.4", "120.0", "32", "1.2e-05", "5", "bf16", "0.05"],
        ["2", study.jobs[2], "COMPLETE", "0.83", "420.0", "16", "4.1e-05", "4", "fp32", "0.0"],
        ["3", study.jobs[3], "FAIL", "", "30.0", "32", "0.0002", "2", "bf16", "0.2"],
        [r for r in rows[5]][:4] + [rows[5][4]] + ["32", "6e-05", "3", "fp32", "0.15"]]
    assert rows[5][:4] == ["4", study.jobs[4], "RUNNING", ""] and float(rows[5][4]) > 0

    doc = json.loads((study.root / "results" / "tuning" / "minilm-sm.json").read_text())
    proj = open_project(str(study.root), str(study.configs), "test")
    cfg = proj.configs.transformer.tune
    test_metrics = doc["best"].pop("test_metrics")
    assert doc == {
        "schema_version": 1, "study": "minilm-sm", "kind": "transformer", "backend": "sagemaker",
        "model_name": "minilm", "metric": "macro_f1", "direction": "maximize", "space": cfg.space_spec(),
        "fingerprint": cfg.fingerprint(),
        "trials": {"total": 5, "complete": 2, "pruned": 1, "failed": 1, "running": 1},
        "best": {"number": 2, "slug": best, "value": 0.83, "model": layout.final_model(best),
                 "params": {"batch_size": 16, "learning_rate": 4.1e-05, "num_epochs": 4, "precision": "fp32",
                            "warmup_ratio": 0.0}},
        "tuning_job": study.name,
        "intermediate": {"0": [[1, 0.5], [2, 0.61]], "2": [[1, 0.7], [2, 0.83], [3, 0.8]]}}
    # the one test evaluation: the best model on the local test split, computed here the same way
    from multitype.data.dataset import load_labels, load_split
    from multitype.evaluate import classification_metrics
    from multitype.predictor import load_predictor

    folder = study.root / layout.final_model(best)
    assert {"config.json", "model.safetensors", "model.json"} <= {p.name for p in folder.iterdir()}
    labels = load_labels(Storage(str(study.root)))
    texts, y_true = load_split(Storage(str(study.root)), "test", labels)
    predicted, _ = load_predictor(folder, device="cpu").predict(texts)
    want = classification_metrics(y_true, [labels.index(p) for p in predicted], labels)
    assert test_metrics == {"accuracy": want["accuracy"], "macro_f1": want["macro_f1"],
                            "weighted_f1": want["weighted_f1"], "num_samples": len(texts)}
    assert f"best trial 2 ({best}): val macro_f1 0.8300" in res.stderr
    # the report's reader of the tuning contract takes both files as they are
    from multitype.tuning.report_section import load_study

    loaded = load_study(Storage(str(study.root)), "minilm-sm")
    assert loaded.summary.backend == "sagemaker" and loaded.summary.tuning_job == study.name
    assert [t.state for t in loaded.trials] == ["COMPLETE", "PRUNED", "COMPLETE", "FAIL", "RUNNING"]
    # --apply: the best parameters written back as the model's override, and the configs still load
    after = open_project(str(study.root), str(study.configs), "test").configs.transformer
    params = after.params_for("minilm")
    assert {k: getattr(params, k) for k in doc["best"]["params"]} == doc["best"]["params"]
    assert "models.minilm.learning_rate: " in res.stderr


def test_collect_refuses_to_test_on_other_data_than_the_trials_trained_on(study: Study, cli) -> None:
    study.put_trial_results(2, [0.83])
    best = study.jobs[2]
    Storage(study.remote).write_bytes(f"models/sagemaker/{best}/output/model.tar.gz", b"not read")
    val = study.root / "data" / "processed" / "val_4class.csv"
    val.write_text(val.read_text() + "an article moved from test to val,business\n")
    with study.list_answer():
        res = cli("sagemaker", "tune", "collect", study.name, *study.args())
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"error: {val} differs from the file it trained on (trial {best}, sha256 ")
    assert "'multitype sync pull' the data the tuning job used" in res.stderr
    assert not (study.root / "results" / "tuning").exists() and not (study.root / "models" / "final").exists()


def test_collect_without_the_best_model_archive_writes_nothing(study: Study, cli) -> None:
    study.put_trial_results(2, [0.83])
    with study.list_answer():
        res = cli("sagemaker", "tune", "collect", study.name, *study.args())
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"error: {study.remote}/models/sagemaker/{study.jobs[2]}/output/model.tar.gz not "
                                 "found")
    assert not (study.root / "results" / "tuning").exists() and not (study.root / "models" / "final").exists()


def test_best_row_follows_the_direction() -> None:
    table = [{"number": 0, "state": "COMPLETE", "value": 0.5}, {"number": 1, "state": "PRUNED", "value": 0.1},
             {"number": 2, "state": "COMPLETE", "value": 0.9}, {"number": 3, "state": "COMPLETE", "value": 0.9}]
    assert tune_jobs.best_row(table, "maximize")["number"] == 2  # the first of a tie
    assert tune_jobs.best_row(table, "minimize")["number"] == 0  # a pruned trial is never the best
    assert tune_jobs.best_row([], "maximize") is None
    assert tune.objective_metric("accuracy") == "val_accuracy"


def test_wait_polls_until_the_tuning_job_ends(study: Study) -> None:
    answers = iter(["InProgress", "InProgress", "Completed"])
    lines: list[str] = []
    sleeps: list[float] = []

    def edit(parsed: dict[str, Any], **_: Any) -> None:
        if "HyperParameterTuningJobStatus" in parsed:
            parsed["HyperParameterTuningJobStatus"] = next(answers)

    with hook("sagemaker", "after-call.sagemaker.DescribeHyperParameterTuningJob", edit):
        final = tune_jobs.wait(AwsConfig(), study.name, poll_seconds=7, echo=lines.append, sleep=sleeps.append)
    assert final == "Completed" and sleeps == [7, 7]
    assert [line.split(":")[0] for line in lines] == ["InProgress", "Completed"]  # a line per change only
    with _tuning_status("InProgress"), pytest.raises(Exception, match="is still InProgress after 0 s; it goes on"):
        tune_jobs.wait(AwsConfig(), study.name, max_seconds=0, echo=lines.append, sleep=sleeps.append)
