"""``multitype sagemaker prepare``: the CreateProcessingJob request against moto (SageMaker) and SeaweedFS (S3),
bad input refused before anything is uploaded, and ``prepare status|logs|stop|wait``.

The request is captured at our client (botocore's ``provide-client-params`` hook on the SageMaker client
that the command uses), compared whole, and checked against botocore's service model; moto implements
CreateProcessingJob, DescribeProcessingJob and StopProcessingJob, so the job must then exist there. Moto
creates every processing job Completed at once: where a test needs InProgress or Failed it edits the parsed
DescribeProcessingJob answer on our client (``jobs_helpers.edit_describe``); the requests still go to moto.
The entry point itself runs on a fake ``/opt/ml/processing`` tree in ``test_sagemaker_prepare_entry.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from multitype.cloud import aws, catalog
from multitype.cloud.sagemaker import request as req
from multitype.cloud.sagemaker import sourcedir
from multitype.config import AwsConfig
from multitype.data.sources import BBC_CLASSES, BBC_FOLDERS
from tests.cloud.jobs_helpers import edit_describe, hook, put_lines
from tests.cloud.launch_helpers import ROLE, make_project
from tests.conftest import bbc_data_dir

EVENT = "provide-client-params.sagemaker.CreateProcessingJob"
GROUP = "/aws/sagemaker/ProcessingJobs"


def bbc_jsonl(path: Path, per_class: int = 20) -> Path:
    """``per_class`` real BBC articles of each of the 4 classes, as JSON Lines."""
    rows = []
    for label in BBC_CLASSES:
        folder = next(bbc_data_dir() / name for name, cls in BBC_FOLDERS.items() if cls == label
                      and (bbc_data_dir() / name).is_dir())
        for f in sorted(folder.glob("*.txt"))[:per_class]:
            rows.append({"text": f.read_bytes().decode("utf-8", errors="replace"), "label": label, "file": f.name})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


class Env:
    def __init__(self, s3_server: Any, tmp_path: Path, **project: Any) -> None:
        self.s3 = s3_server
        self.bucket = s3_server.make_bucket("smp")
        self.remote = f"s3://{self.bucket}/proj"
        self.root, self.configs = make_project(tmp_path, self.remote, prepared=False, **project)
        self.sent: list[dict[str, Any]] = []
        self.raw = bbc_jsonl(tmp_path / "news.jsonl")

    def upload_raw(self, key: str = "data/raw/news.jsonl") -> str:
        self.s3.client().put_object(Bucket=self.bucket, Key=f"proj/{key}", Body=self.raw.read_bytes())
        return f"{self.remote}/{key}"

    def args(self, *extra: str) -> list[str]:
        return ["sagemaker", "prepare", *extra, "--root", str(self.root), "--config-dir", str(self.configs)]

    def keys(self) -> list[str]:
        return self.s3.list_keys(self.bucket)

    def jobs(self) -> list[str]:
        client = aws.client("sagemaker", AwsConfig())
        return [j["ProcessingJobName"] for j in client.list_processing_jobs()["ProcessingJobSummaries"]]


@pytest.fixture
def env(s3_server, aws_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    e = Env(s3_server, tmp_path)

    def capture(params: dict[str, Any], **_: Any) -> None:
        e.sent.append(json.loads(json.dumps(params)))

    with hook("sagemaker", EVENT, capture, max_attempts=1):  # the client the command creates the job with
        yield e


def _expected(env: Env, name: str, raw_uri: str, sourcedir_key: str, *, current: bool = False,
              force: bool = False, instance_type: str = "ml.m5.4xlarge", volume: int = 50,
              max_run: int = 14400) -> dict[str, Any]:
    root = env.remote

    def s3_input(input_name: str, uri: str, local: str) -> dict[str, Any]:
        return {"InputName": input_name, "AppManaged": False,
                "S3Input": {"S3Uri": uri, "LocalPath": local, "S3DataType": "S3Prefix", "S3InputMode": "File",
                            "S3DataDistributionType": "FullyReplicated", "S3CompressionType": "None"}}

    tarball = sourcedir_key.rsplit("/", 1)[1]
    inputs = [s3_input("code", f"{root}/{sourcedir_key}", "/opt/ml/processing/input/code"),
              s3_input("configs", f"{root}/configs/", "/opt/ml/processing/input/configs"),
              s3_input("raw", raw_uri, "/opt/ml/processing/input/raw")]
    arguments = ["prepare", "--input-name", raw_uri.rsplit("/", 1)[1]]
    if current:
        inputs.append(s3_input("current", f"{root}/data/raw/raw_data.json", "/opt/ml/processing/input/current"))
        arguments += ["--current", "/opt/ml/processing/input/current/raw_data.json"]
    arguments += ["--force"] * force
    image = catalog.pytorch_training_image("us-east-1", instance_type, sourcedir.torch_specifier()).uri
    return {
        "ProcessingJobName": name,
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "root", "AppManaged": False, "S3Output": {
            "S3Uri": root, "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": instance_type,
                                                  "VolumeSizeInGB": volume}},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_run},
        "AppSpecification": {"ImageUri": image, "ContainerEntrypoint": [
            "/bin/sh", "-c",
            f"set -e; cd /opt/ml/processing/input/code; tar -xzf {tarball}; python3 -m pip install -q -r "
            "requirements.txt; export PYTHONPATH=$PWD/src; exec python3 -m multitype.cloud.sagemaker.process_entry "
            '"$0" "$@"'], "ContainerArguments": arguments},
        "Environment": {"PYTHONUNBUFFERED": "1"},
        "RoleArn": ROLE,
        "Tags": [{"Key": "multitype:project", "Value": "bbc-news"}, {"Key": "multitype:task", "Value": "prepare"},
                 {"Key": "team", "Value": "nlp"}],
    }


def test_dry_run_then_start_sends_the_exact_request(env: Env, cli) -> None:
    raw_uri = env.upload_raw()
    before = env.keys()
    dry = cli(*env.args("--input", raw_uri, "--dry-run"))
    assert dry.exit_code == 0, dry.stderr
    printed = json.loads(dry.stdout)
    assert env.sent == [] and env.jobs() == [] and env.keys() == before  # nothing sent, nothing uploaded
    assert req.check_operation("CreateProcessingJob", printed) == []

    res = cli(*env.args("--input", raw_uri, "--instance-type", "ml.m5.2xlarge", "--volume-gb", "80",
                        "--max-run", "7200"))
    assert res.exit_code == 0, res.stderr
    [sent] = env.sent
    name = sent["ProcessingJobName"]
    assert res.stdout.strip() == name and name.startswith("multitype-prepare-")
    [key] = [k.removeprefix("proj/") for k in env.keys() if k.startswith("proj/code/sagemaker/sourcedir-")]
    assert sent == _expected(env, name, raw_uri, key, instance_type="ml.m5.2xlarge", volume=80, max_run=7200)
    assert req.check_operation("CreateProcessingJob", sent) == []  # botocore's model of the operation
    assert printed["AppSpecification"] == {**sent["AppSpecification"], "ImageUri": printed["AppSpecification"]
                                           ["ImageUri"]}  # the dry run's image is the m5.4xlarge default's
    assert "estimate: at most $" in res.stderr and "ml.m5.2xlarge on-demand" in res.stderr

    described = aws.client("sagemaker", AwsConfig()).describe_processing_job(ProcessingJobName=name)
    assert described["RoleArn"] == ROLE and described["AppSpecification"] == sent["AppSpecification"]
    assert described["ProcessingInputs"] == sent["ProcessingInputs"]
    for k in ("configs/data_config.yaml", "configs/project.yaml", key):  # what the job reads was pushed
        assert f"proj/{k}" in env.keys()
    record = json.loads((env.root / "runs" / "sagemaker-processing" / f"{name}.json").read_text())
    assert record["request"] == sent and record["input"] == raw_uri and record["task"] == "prepare"


def test_existing_raw_copy_is_an_input_and_force_is_passed(env: Env, cli) -> None:
    raw_uri = env.upload_raw("data/raw/more.jsonl")
    env.upload_raw("data/raw/raw_data.json")  # the root's raw copy, from an earlier prepare
    res = cli(*env.args("--input", raw_uri, "--force", "--dry-run"))
    assert res.exit_code == 0, res.stderr
    sent = json.loads(res.stdout)
    [key] = [i["S3Input"]["S3Uri"].removeprefix(env.remote + "/") for i in sent["ProcessingInputs"]
             if i["InputName"] == "code"]
    expected = _expected(env, sent["ProcessingJobName"], raw_uri, key, current=True, force=True)
    assert sent == expected
    # without --input: the raw copy itself is the input, and the copy to compare with
    res = cli(*env.args("--dry-run"))
    assert res.exit_code == 0, res.stderr
    args = json.loads(res.stdout)["AppSpecification"]["ContainerArguments"]
    assert args == ["prepare", "--input-name", "raw_data.json", "--current",
                    "/opt/ml/processing/input/raw/raw_data.json"]


def _refused(res, *fragments: str) -> None:
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, (fragment, res.stderr)


def test_bad_input_exits_2_before_anything_is_uploaded(env: Env, cli, s3_server, aws_env, tmp_path: Path) -> None:
    _refused(cli(*env.args()), "no raw data in the root", f"{env.remote}/data/raw/raw_data.json is missing")
    _refused(cli(*env.args("--input", f"{env.remote}/data/raw/nope.jsonl")), "no raw data in the root",
             "nope.jsonl not found")
    _refused(cli(*env.args("--input", str(env.raw))), "is not on S3", "--input")
    _refused(cli(*env.args("--input", "s3://elsewhere/news.jsonl")), "is outside the root")
    env.upload_raw()
    before = env.keys()
    _refused(cli(*env.args("--instance-type", "ml.m5.4xlarg")),
             "'ml.m5.4xlarg' is not a SageMaker Processing instance type", "did you mean ml.m5.4xlarge")
    no_role = Env(s3_server, tmp_path / "norole", role=None)
    _refused(cli(*no_role.args("--input", f"{env.remote}/data/raw/news.jsonl")), "no SageMaker execution role",
             "SAGEMAKER_ROLE")
    _refused(cli(*env.args("--input", f"{env.remote}/data/raw/news.jsonl", "--role", "my-role")),
             "RoleArn 'my-role' is not an IAM role ARN")
    _refused(cli(*env.args("--input", f"{env.remote}/data/raw/news.jsonl", "--budget", "0.01")),
             "may cost up to $", "over the budget of $0.01", "--max-run")
    assert env.sent == [] and env.jobs() == []
    assert [k for k in env.keys() if k not in before] == []  # no code, no configs pushed


# --- status, logs, stop, wait -------------------------------------------------------------------
JOB = "multitype-prepare-20261203-101500"


def _create(name: str = JOB) -> None:
    """A valid CreateProcessingJob request sent to moto (which marks the job Completed)."""
    aws.client("sagemaker", AwsConfig()).create_processing_job(
        ProcessingJobName=name, RoleArn=ROLE,
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.4xlarge",
                                               "VolumeSizeInGB": 50}},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
        AppSpecification={"ImageUri": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311",
                          "ContainerEntrypoint": ["/bin/sh", "-c", "true"]},
        ProcessingInputs=[{"InputName": "raw", "S3Input": {
            "S3Uri": "s3://bucket/proj/data/raw/news.jsonl", "LocalPath": "/opt/ml/processing/input/raw",
            "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
        ProcessingOutputConfig={"Outputs": [{"OutputName": "root", "S3Output": {
            "S3Uri": "s3://bucket/proj", "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]})


def _status(status: str, **fields: Any):
    def edit(parsed: dict[str, Any], _: int) -> None:
        parsed.update({"ProcessingJobStatus": status, **fields})
    return edit


@pytest.fixture
def where(aws_env, tmp_path: Path, config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("COLUMNS", "250")
    return ["--root", str(tmp_path / "root"), "--config-dir", str(config_dir)]


def test_status_logs_of_the_newest_job(where, cli, tmp_path: Path) -> None:
    _create()
    from multitype.cloud.sagemaker.records import PROCESSING_JOBS
    from multitype.storage import Storage

    PROCESSING_JOBS.save(Storage(str(tmp_path / "root")), JOB, {"task": "prepare"})
    # moto keeps no ProcessingResources or start time: the edit puts back what AWS answers
    resources = {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.4xlarge", "VolumeSizeInGB": 50}}
    with edit_describe(lambda parsed, _: parsed.update(
            ProcessingResources=resources, ProcessingStartTime=dt.datetime(2026, 12, 3, 10, 16, tzinfo=dt.timezone.utc),
            ProcessingEndTime=dt.datetime(2026, 12, 3, 10, 21, 30, tzinfo=dt.timezone.utc)), "ProcessingJob"):
        res = cli("sagemaker", "prepare", "status", "--json", *where)
    assert res.exit_code == 0, res.stderr
    info = json.loads(res.stdout)
    assert (info["job_name"], info["status"], info["instance_type"]) == (JOB, "Completed", "ml.m5.4xlarge")
    assert info["duration_seconds"] == 330.0
    assert info["inputs"] == {"raw": "s3://bucket/proj/data/raw/news.jsonl"}
    assert info["outputs"] == {"root": "s3://bucket/proj"}
    with edit_describe(_status("Failed", FailureReason="AlgorithmError: see the log",
                               ExitMessage="error: news.jsonl line 3 column 1: not valid JSON"), "ProcessingJob"):
        res = cli("sagemaker", "prepare", "status", *where)
    assert res.exit_code == 0, res.stderr
    assert "Failed" in res.stdout and "error: news.jsonl line 3 column 1: not valid JSON" in res.stdout

    res = cli("sagemaker", "prepare", "logs", JOB, *where)
    assert res.exit_code == 0 and "no log lines yet for processing job" in res.stderr and GROUP in res.stderr
    now = int(time.time() * 1000)  # CloudWatch refuses events older than 14 days
    put_lines(JOB, "algo-1", [(now - 2000, "reading input"), (now - 1000, "split 80 records")], group=GROUP)
    res = cli("sagemaker", "prepare", "logs", JOB, *where)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.splitlines() == ["reading input", "split 80 records"]


def test_stop_sends_one_request_and_refuses_an_ended_job(where, cli) -> None:
    _create()
    stops: list[dict[str, Any]] = []
    with hook("sagemaker", "provide-client-params.sagemaker.StopProcessingJob",
              lambda params, **_: stops.append(dict(params)), max_attempts=1):
        res = cli("sagemaker", "prepare", "stop", JOB, *where)  # moto: Completed
        _refused(res, f"processing job {JOB} already ended Completed", "nothing to stop")
        assert stops == []
        with edit_describe(_status("InProgress"), "ProcessingJob"):
            res = cli("sagemaker", "prepare", "stop", JOB, *where)
        assert res.exit_code == 0, res.stderr
        assert stops == [{"ProcessingJobName": JOB}] and f"stopping processing job {JOB}" in res.stderr
    described = aws.client("sagemaker", AwsConfig()).describe_processing_job(ProcessingJobName=JOB)
    assert described["ProcessingJobStatus"] == "Stopped"  # moto's StopProcessingJob ran
    _refused(cli("sagemaker", "prepare", "stop", "multitype-prepare-nope", *where),
             "no SageMaker processing job named 'multitype-prepare-nope'")


def test_wait_exit_codes_and_reason(where, cli) -> None:
    _create()
    put_lines(JOB, "algo-1", [(int(time.time() * 1000), "prepared")], group=GROUP)
    with edit_describe(lambda parsed, n: parsed.update(ProcessingJobStatus="InProgress" if n == 1 else "Completed"),
                       "ProcessingJob"):
        res = cli("sagemaker", "prepare", "wait", JOB, "--poll-seconds", "0", *where)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.splitlines() == [f"[{JOB}] InProgress", "prepared", f"[{JOB}] Completed",
                                       f"processing job {JOB} ended Completed; exit 0"]
    with edit_describe(_status("Failed", ExitMessage="error: no 'label' column"), "ProcessingJob"):
        res = cli("sagemaker", "prepare", "wait", JOB, "--no-logs", *where)
    assert res.exit_code == 1
    assert f"processing job {JOB} ended Failed: error: no 'label' column; exit 1" in res.stdout
