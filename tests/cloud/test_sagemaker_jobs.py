"""``multitype sagemaker status|logs|stop|list|wait`` against moto (SageMaker, CloudWatch Logs).

Moto marks every job Completed at once and leaves out billable/training
seconds; where a test needs InProgress, Failed or Stopped, or the times, it
edits the parsed DescribeTrainingJob answer on our client (``after-call``
hook, see ``jobs_helpers.edit_describe``): the request itself still goes to
moto. Moto has no StopTrainingJob (it answers HTTP 500): the stop tests check
our exact request at the client layer (``before-call`` hook) and the error
handling of the real 500.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from multitype.cloud.sagemaker import jobs, records
from multitype.cloud.sagemaker.logs import LogReader, host_of, show_logs
from multitype.config import AwsConfig
from multitype.errors import AwsError
from multitype.storage import Storage
from tests.cloud.jobs_helpers import create_job, edit_describe, hook, put_lines, set_status

JOB = "multitype-minilm-20261201T101500Z"


@pytest.fixture
def proj(aws_env, tmp_path: Path, config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``--root``/``--config-dir`` of a local project root (no job launched from it yet); wide tables."""
    monkeypatch.setenv("COLUMNS", "250")
    return ["--root", str(tmp_path / "root"), "--config-dir", str(config_dir)]


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- status -------------------------------------------------------------------------------------
def _times(parsed: dict[str, Any], _: int) -> None:
    parsed.update(BillableTimeInSeconds=300, TrainingTimeInSeconds=1000, FinalMetricDataList=[
        {"MetricName": "val_accuracy", "Value": 0.81, "Timestamp": dt.datetime(2026, 12, 1, 10, 0)},
        {"MetricName": "val_accuracy", "Value": 0.93, "Timestamp": dt.datetime(2026, 12, 1, 11, 0)},
        {"MetricName": "train_loss", "Value": 0.12, "Timestamp": dt.datetime(2026, 12, 1, 11, 0)}])


def test_status_json_times_spot_saving_metrics(proj, cli) -> None:
    create_job(JOB, count=2)
    with edit_describe(_times):
        res = cli("sagemaker", "status", JOB, "--json", *proj)
    assert res.exit_code == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["status"] == "Completed" and info["spot"] is True
    assert (info["instance_type"], info["instance_count"]) == ("ml.g5.xlarge", 2)
    assert (info["billable_seconds"], info["training_seconds"], info["spot_saving_percent"]) == (300, 1000, 70.0)
    assert info["final_metrics"] == {"val_accuracy": 0.93, "train_loss": 0.12}  # the latest value of each
    assert info["transitions"][0]["status"] == "Starting" and info["transitions"][0]["start"]
    assert info["model_artifacts"] == f"s3://bucket/proj/models/sagemaker/{JOB}/output/model.tar.gz"
    assert info["failure_reason"] is None


def test_status_table_defaults_to_newest_job_of_root(proj, cli, tmp_path) -> None:
    create_job("multitype-old-1")
    create_job(JOB)
    storage = Storage(str(tmp_path / "root"))
    records.save_job(storage, "multitype-old-1", {"launched_at": "2026-12-01T09:00:00Z"})
    records.save_job(storage, JOB, {"launched_at": "2026-12-01T10:15:00Z"})
    storage.write_json(f"runs/sagemaker/{JOB}/result.json", {"job_name": "not-a-record"})  # a collected result
    with edit_describe(set_status("Failed", FailureReason="AlgorithmError: CUDA out of memory",
                                  BillableTimeInSeconds=120, TrainingTimeInSeconds=400)):
        res = cli("sagemaker", "status", *proj)
    assert res.exit_code == 0, res.stderr
    assert JOB in res.stdout and "Failed" in res.stdout
    assert "AlgorithmError: CUDA out of memory" in res.stdout
    assert "70.0%" in res.stdout and "6m40s" in res.stdout  # saving 1 - 120/400, training time 400 s
    assert "Preparing the instances for training" in res.stdout


def test_status_unknown_job_is_one_line(proj, cli) -> None:
    res = cli("sagemaker", "status", "multitype-nope", *proj)
    assert res.exit_code == 2
    assert res.stderr.strip() == ("error: no SageMaker training job named 'multitype-nope' in us-east-1; "
                                  "see 'multitype sagemaker list --all' for the jobs there")


def test_status_unknown_job_as_aws_words_it(proj, cli) -> None:
    """Real AWS answers 'Requested resource not found.' (moto words it otherwise): answered at our client."""
    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse(params["url"], 400, {}, None), {
            "Error": {"Code": "ValidationException", "Message": "Requested resource not found."}}

    with hook("sagemaker", "before-call.sagemaker.DescribeTrainingJob", answer):
        res = cli("sagemaker", "logs", "multitype-gone", *proj)
    assert res.exit_code == 2
    assert res.stderr.startswith("error: no SageMaker training job named 'multitype-gone' in us-east-1;")


def test_status_without_job_or_record(proj, cli) -> None:
    res = cli("sagemaker", "status", *proj)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "no SageMaker job was launched from" in res.stderr and "multitype sagemaker list" in res.stderr


def test_on_demand_has_no_spot_saving() -> None:
    desc = {"EnableManagedSpotTraining": False, "BillableTimeInSeconds": 100, "TrainingTimeInSeconds": 100}
    assert jobs.spot_saving(desc) is None
    assert jobs.spot_saving({**desc, "EnableManagedSpotTraining": True, "BillableTimeInSeconds": 25}) == 75.0


# --- logs ---------------------------------------------------------------------------------------
def test_logs_paginate_in_order_and_keep_to_the_job(aws_env) -> None:
    create_job(JOB)
    t0 = _now_ms()
    put_lines(JOB, "algo-1", [(t0 + i, f"line {i}" + (f"\nMETRIC val_accuracy={i / 100}" if i == 24 else ""))
                              for i in range(25)])
    put_lines(f"{JOB}-2", "algo-1", [(t0, "another job's line")])  # shares the name as a prefix, not `<job>/`
    pages = []
    with hook("logs", "before-call.logs.GetLogEvents", lambda **kw: pages.append(1)):
        lines: list[str] = []
        assert show_logs(AwsConfig(), JOB, echo=lines.append, page_size=7) == 25
    assert lines[:3] == ["line 0", "line 1", "line 2"] and lines[-1] == "line 24\nMETRIC val_accuracy=0.24"
    assert len(lines) == 25 and "another job's line" not in lines
    assert len(pages) == 5  # 7 + 7 + 7 + 4, then the page whose token repeats


def test_logs_multi_host_interleaved_by_time(proj, cli) -> None:
    create_job(JOB, count=2)
    t0 = _now_ms()
    put_lines(JOB, "algo-1", [(t0, "rank 0 up"), (t0 + 20, "METRIC train_loss=0.5"), (t0 + 40, "rank 0 done [bold]:tada:")])
    put_lines(JOB, "algo-2", [(t0 + 10, "rank 1 up"), (t0 + 30, "rank 1 done")], epoch="1733050007")
    res = cli("sagemaker", "logs", JOB, *proj)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.splitlines() == ["[algo-1] rank 0 up", "[algo-2] rank 1 up", "[algo-1] METRIC train_loss=0.5",
                                       "[algo-2] rank 1 done", "[algo-1] rank 0 done [bold]:tada:"]


def test_log_streams_are_paginated(aws_env) -> None:
    create_job(JOB, count=3)
    t0 = _now_ms()
    for i in (1, 2, 3):
        put_lines(JOB, f"algo-{i}", [(t0 + i, f"host {i}")], epoch=f"173305000{i}")
    pages: list[int] = []
    lines: list[str] = []
    with hook("logs", "before-call.cloudwatch-logs.DescribeLogStreams", lambda **kw: pages.append(1)):
        LogReader(AwsConfig(), JOB, echo=lines.append, stream_page_size=2).poll()
    assert lines == ["[algo-1] host 1", "[algo-2] host 2", "[algo-3] host 3"]
    assert len(pages) == 2


def test_logs_none_yet_is_a_message(proj, cli) -> None:
    create_job(JOB)
    with edit_describe(set_status("InProgress", SecondaryStatus="Starting")):
        res = cli("sagemaker", "logs", JOB, *proj)
    assert res.exit_code == 0 and res.stdout == ""
    assert f"no log lines yet for training job {JOB} (InProgress, Starting)" in res.stderr


def test_logs_follow_until_the_job_ends(aws_env) -> None:
    create_job(JOB)
    t0 = _now_ms()
    put_lines(JOB, "algo-1", [(t0, "epoch 1")])

    def edit(parsed: dict[str, Any], call: int) -> None:
        if call == 2:  # the job logs more while it runs; the last line lands before it is seen Completed
            put_lines(JOB, "algo-1", [(t0 + 10, "epoch 2")])
        if call == 3:
            put_lines(JOB, "algo-1", [(t0 + 20, "done")])
        else:
            parsed["TrainingJobStatus"] = "InProgress"

    lines: list[str] = []
    with edit_describe(edit) as calls:
        show_logs(AwsConfig(), JOB, follow=True, poll_seconds=0.01, echo=lines.append, max_seconds=30)
    assert lines == ["epoch 1", "epoch 2", "done"]
    assert calls[0] == 3


def test_logs_follow_through_the_cli(proj, cli) -> None:
    create_job(JOB)
    when = int(time.time()) - 60  # CloudWatch (and moto) drop events older than 14 days
    put_lines(JOB, "algo-1", [(when * 1000, "METRIC val_accuracy=0.9")])
    stamp = dt.datetime.fromtimestamp(when, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def edit(parsed: dict[str, Any], call: int) -> None:
        if call < 3:
            parsed.update(TrainingJobStatus="InProgress", SecondaryStatus="Training")

    with edit_describe(edit) as calls:
        res = cli("sagemaker", "logs", JOB, "--follow", "--poll-seconds", "0.01", "--timestamps", *proj)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.splitlines() == [f"{stamp} METRIC val_accuracy=0.9"]
    assert calls[0] == 3


def test_host_of_stream() -> None:
    assert host_of(f"{JOB}/algo-12-1733050000") == "algo-12"
    assert LogReader(AwsConfig(), JOB).tokens == {}


# --- stop ---------------------------------------------------------------------------------------
def test_stop_sends_exactly_our_request(proj, cli) -> None:
    """Moto lacks StopTrainingJob: the request is captured (and answered) at our client's before-call hook."""
    create_job(JOB)
    sent: list[dict[str, Any]] = []

    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        sent.append(json.loads(params["body"]))
        return AWSResponse(params["url"], 200, {}, None), {}

    with edit_describe(set_status("InProgress", SecondaryStatus="Training")), \
            hook("sagemaker", "before-call.sagemaker.StopTrainingJob", answer, max_attempts=1):
        res = cli("sagemaker", "stop", JOB, *proj)
    assert res.exit_code == 0, res.stderr
    assert sent == [{"TrainingJobName": JOB}]
    assert f"stopping training job {JOB} (was InProgress)" in res.stderr


@pytest.mark.parametrize("status", ["Stopping", "Stopped"])
def test_stop_a_stopped_job_is_a_no_op(proj, cli, status) -> None:
    create_job(JOB)
    sent: list[Any] = []
    with edit_describe(set_status(status)), \
            hook("sagemaker", "before-call.sagemaker.StopTrainingJob", lambda **kw: sent.append(kw), max_attempts=1):
        res = cli("sagemaker", "stop", JOB, *proj)
    assert res.exit_code == 0 and sent == []
    assert res.stderr.strip() == f"training job {JOB} is already {status}; nothing to do"


def test_stop_an_ended_job_fails_like_aws_cli(proj, cli) -> None:
    create_job(JOB)  # moto: Completed
    res = cli("sagemaker", "stop", JOB, *proj)
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"error: training job {JOB} already ended Completed; there is nothing to stop "
                                  f"(see 'multitype sagemaker status {JOB}')")


def test_stop_a_job_that_ends_meanwhile(proj, cli) -> None:
    """InProgress when described, Completed when the stop arrives: AWS's ValidationException, answered at our client."""
    create_job(JOB)

    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse(params["url"], 400, {}, None), {"Error": {
            "Code": "ValidationException",
            "Message": "The request was rejected because the training job is in status Completed."}}

    with edit_describe(lambda parsed, call: parsed.update(TrainingJobStatus="InProgress") if call == 1 else None), \
            hook("sagemaker", "before-call.sagemaker.StopTrainingJob", answer, max_attempts=1):
        res = cli("sagemaker", "stop", JOB, *proj)
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: training job {JOB} already ended Completed; there is nothing to stop")


def test_stop_failure_is_sent_once_and_one_line(proj, cli) -> None:
    """The real moto answer (HTTP 500, no StopTrainingJob): one attempt, one line, exit 2."""
    create_job(JOB)
    attempts: list[int] = []
    with edit_describe(set_status("InProgress")), \
            hook("sagemaker", "before-send.sagemaker.StopTrainingJob", lambda **kw: attempts.append(1), max_attempts=1):
        res = cli("sagemaker", "stop", JOB, *proj)
    assert res.exit_code == 2 and attempts == [1]
    assert res.stderr.strip() == (f"error: cannot stop the training job {JOB}: HTTP 500; the job may still be "
                                  f"running: check with 'multitype sagemaker status {JOB}'")


# --- list ---------------------------------------------------------------------------------------
def test_list_this_projects_jobs_newest_first(proj, cli, tmp_path) -> None:
    for name in ("multitype-a-1", "other-job", "custom-name", "multitype-b-2"):
        create_job(name, spot=name != "multitype-b-2", instance_type="ml.m5.xlarge")
        time.sleep(0.002)  # distinct creation times (moto: milliseconds)
    records.save_job(Storage(str(tmp_path / "root")), "custom-name", {})
    res = cli("sagemaker", "list", "--json", *proj)
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["job_name"] for r in rows] == ["multitype-b-2", "custom-name", "multitype-a-1"]
    assert rows[0]["spot"] is False and rows[1]["spot"] is True
    assert {r["instance_type"] for r in rows} == {"ml.m5.xlarge"} and all(r["status"] == "Completed" for r in rows)
    assert all(r["duration_seconds"] is not None for r in rows)

    res = cli("sagemaker", "list", "--all", *proj)
    assert res.exit_code == 0
    for name in ("multitype-a-1", "other-job", "custom-name", "multitype-b-2"):
        assert name in res.stdout
    res = cli("sagemaker", "list", "--status", "Failed", *proj)
    assert res.exit_code == 0 and res.stderr.strip() == "no training jobs from this project with status Failed"
    res = cli("sagemaker", "list", "--status", "Done", *proj)
    assert res.exit_code == 2 and "--status 'Done' is not a training job status" in res.stderr


def test_list_pages_through_every_job(aws_env) -> None:
    for i in range(5):
        create_job(f"multitype-p-{i}")
    pages: list[int] = []
    with hook("sagemaker", "before-call.sagemaker.ListTrainingJobs", lambda **kw: pages.append(1)):
        rows = jobs.list_jobs(AwsConfig(), page_size=2)
    assert sorted(r["job_name"] for r in rows) == [f"multitype-p-{i}" for i in range(5)]
    assert len(pages) == 3


# --- wait and exit codes ------------------------------------------------------------------------
def test_exit_codes() -> None:
    assert [jobs.exit_code(s) for s in ("Completed", "Failed", "Stopped")] == [0, 1, 143]
    with pytest.raises(ValueError, match="'InProgress' is not a final one"):
        jobs.exit_code("InProgress")
    assert jobs.default_wait_seconds({"StoppingCondition": {"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 120}}) \
        == 180 + jobs.WAIT_SLACK_SECONDS


@pytest.mark.parametrize("final, code", [("Completed", 0), ("Failed", 1), ("Stopped", 143)])
def test_wait_maps_the_end_to_exit_codes(proj, cli, final, code) -> None:
    create_job(JOB)
    put_lines(JOB, "algo-1", [(_now_ms(), "training...")])

    def edit(parsed: dict[str, Any], call: int) -> None:
        if call == 1:
            parsed.update(TrainingJobStatus="InProgress", SecondaryStatus="Training")
        else:
            parsed.update(TrainingJobStatus=final, SecondaryStatus=final,
                          SecondaryStatusTransitions=[*parsed["SecondaryStatusTransitions"],
                                                      {"Status": final, "StartTime": dt.datetime(2026, 12, 1)}])
            if final == "Failed":
                parsed["FailureReason"] = "AlgorithmError: ExecuteUserScriptError: exit code 1"

    with edit_describe(edit) as calls:
        res = cli("sagemaker", "wait", JOB, "--poll-seconds", "0.01", *proj)
    assert res.exit_code == code, res.stderr
    assert calls[0] == 2
    out = res.stdout.splitlines()
    assert out[0] == f"[{JOB}] Starting: Preparing the instances for training"
    assert "training..." in out and f"[{JOB}] {final}" in out
    assert out[-1].startswith(f"training job {JOB} ended {final}") and out[-1].endswith(f"exit {code}")
    if final == "Failed":
        assert "AlgorithmError: ExecuteUserScriptError: exit code 1" in out[-1]


def test_wait_gives_up_after_max_seconds(aws_env) -> None:
    create_job(JOB)
    with edit_describe(set_status("InProgress")), pytest.raises(AwsError, match=(
            f"training job {JOB} is still InProgress after waiting 0 s; it keeps running")):
        jobs.wait(AwsConfig(), JOB, follow_logs=False, poll_seconds=0.01, echo=lambda line: None, max_seconds=0.05)
