"""``multitype sagemaker launch`` against moto (SageMaker) and SeaweedFS (S3).

The request is captured at our client layer (botocore's
``provide-client-params`` hook on the SageMaker client that launch uses) and
compared whole; the job must then exist in moto. Bad input must leave moto
without a job and the bucket empty.
"""

from __future__ import annotations

import json
import sys
import tarfile
import types
from pathlib import Path
from typing import Any

import pytest

from multitype.cloud import aws, catalog
from multitype.cloud.sagemaker import sourcedir
from multitype.config import AwsConfig
from tests.cloud.launch_helpers import ENTRY_SCRIPT, ROLE, make_project, project_yaml
from tests.conftest import write_configs

EVENT = "provide-client-params.sagemaker.CreateTrainingJob"


class Env:
    def __init__(self, s3_server: Any, tmp_path: Path) -> None:
        self.s3 = s3_server
        self.bucket = s3_server.make_bucket("sm")
        self.remote = f"s3://{self.bucket}/proj"
        self.root, self.configs = make_project(tmp_path, self.remote)
        self.sent: list[dict[str, Any]] = []

    def args(self, *extra: str) -> list[str]:
        return ["sagemaker", "launch", *extra, "--root", str(self.root), "--config-dir", str(self.configs)]

    def keys(self) -> list[str]:
        return self.s3.list_keys(self.bucket)

    def sagemaker(self) -> Any:
        return aws.client("sagemaker", AwsConfig())

    def jobs(self) -> list[str]:
        return [j["TrainingJobName"] for j in self.sagemaker().list_training_jobs()["TrainingJobSummaries"]]


@pytest.fixture
def env(s3_server, aws_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    e = Env(s3_server, tmp_path)
    client = aws.client("sagemaker", AwsConfig(), max_attempts=1)  # the one launch uses (shared per settings)

    def capture(params: dict[str, Any], **_: Any) -> None:
        e.sent.append(json.loads(json.dumps(params)))

    client.meta.events.register(EVENT, capture, unique_id="test-capture")
    yield e
    client.meta.events.unregister(EVENT, unique_id="test-capture")


def _expected(env: Env, name: str, *, image: str, task: str, hyper: dict[str, Any], instance_type: str,
              count: int, spot: bool, models: str, sourcedir_key: str) -> dict[str, Any]:
    root = env.remote
    channels = {"train": f"{root}/data/processed/train_4class.csv", "val": f"{root}/data/processed/val_4class.csv",
                "test": f"{root}/data/processed/test_4class.csv", "labels": f"{root}/data/processed/labels.json",
                "configs": f"{root}/configs/"}
    metrics = ["step", "epoch", "train_loss", "learning_rate", "val_loss", "val_accuracy", "val_macro_f1",
               "val_weighted_f1", "test_accuracy", "test_macro_f1", "train_samples_per_s"]
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File", "MetricDefinitions": [
            {"Name": m, "Regex": f"METRIC {m}=([-+0-9.eEnaif]+)"} for m in metrics]},
        "RoleArn": ROLE,
        "HyperParameters": {"task": json.dumps(task), **{k: json.dumps(v) for k, v in hyper.items()},
                            "root": json.dumps(root), "sagemaker_program": '"entry.py"',
                            "sagemaker_submit_directory": json.dumps(f"{root}/{sourcedir_key}"),
                            "sagemaker_region": '"us-east-1"', "sagemaker_container_log_level": "20"},
        "InputDataConfig": [{"ChannelName": c, "InputMode": "File", "CompressionType": "None",
                             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                                             "S3DataDistributionType": "FullyReplicated"}}}
                            for c, uri in channels.items()],
        "OutputDataConfig": {"S3OutputPath": f"{root}/models/sagemaker/"},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": count, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 43200, **({"MaxWaitTimeInSeconds": 86400} if spot else {})},
        "EnableManagedSpotTraining": spot,
        "CheckpointConfig": {"S3Uri": f"{root}/models/checkpoints/{name}/", "LocalPath": "/opt/ml/checkpoints"},
        "Tags": [{"Key": "multitype:project", "Value": "bbc-news"}, {"Key": "multitype:task", "Value": task},
                 {"Key": "multitype:model", "Value": models}, {"Key": "team", "Value": "nlp"}],
    }


def _image(instance_type: str) -> str:
    return catalog.pytorch_training_image("us-east-1", instance_type, sourcedir.torch_specifier()).uri


def _sourcedir_key(env: Env) -> str:
    keys = [k for k in env.keys() if k.startswith("proj/code/sagemaker/sourcedir-")]
    assert len(keys) == 1, keys
    return keys[0].removeprefix("proj/")


@pytest.mark.slow
def test_spot_then_on_demand_multi_instance(env: Env, cli) -> None:
    raw = env.root / "data" / "raw" / "raw_data.json"
    raw.parent.mkdir(parents=True)
    raw.write_text("[]")  # not a channel: must not be pushed
    result = cli(*env.args("--model-name", "minilm", "--num-epochs", "2", "--learning-rate", "3e-5"))
    assert result.exit_code == 0, result.stderr
    [sent] = env.sent
    name = sent["TrainingJobName"]
    assert result.stdout.strip() == name and name.startswith("multitype-minilm-")
    key = _sourcedir_key(env)
    assert sent == _expected(env, name, image=_image("ml.g5.xlarge"), task="transformer",
                             hyper={"model-name": "minilm", "num-epochs": 2, "learning-rate": 3e-5,
                                    "resume": "auto"},
                             instance_type="ml.g5.xlarge", count=1, spot=True, models="minilm", sourcedir_key=key)
    assert "-gpu-" in sent["AlgorithmSpecification"]["TrainingImage"]

    described = env.sagemaker().describe_training_job(TrainingJobName=name)
    assert described["RoleArn"] == ROLE and described["HyperParameters"] == sent["HyperParameters"]
    assert described["ResourceConfig"] == sent["ResourceConfig"]
    assert described["CheckpointConfig"] == sent["CheckpointConfig"]

    keys = env.keys()
    for k in ("data/processed/train_4class.csv", "data/processed/val_4class.csv", "data/processed/test_4class.csv",
              "data/processed/labels.json", "configs/project.yaml", "configs/models_transformer.yaml",
              "code/src/multitype/__init__.py", "code/bundle.json", key):
        assert f"proj/{k}" in keys, k
    assert not [k for k in keys if k.startswith("proj/data/raw") or k.startswith("proj/runs")]
    tarball = env.root / ".multitype" / "sagemaker" / Path(key).name
    with tarfile.open(tarball) as tar:
        assert "entry.py" in tar.getnames()
    record = json.loads((env.root / "runs" / "sagemaker" / f"{name}.json").read_text())
    assert record["request"] == sent and record["task"] == "transformer" and record["spot"] is True

    # the same code and data again, on demand over 2 instances: only the request changes
    from multitype.cloud.sagemaker.launch import LaunchOptions, launch
    from multitype.project import open_project

    project = open_project(str(env.root), str(env.configs), "sagemaker launch")
    import time

    time.sleep(1.0)  # job names carry the second
    again = launch(project, LaunchOptions(model_name="minilm", spot=False, instance_count=2), str(env.configs),
                   echo=lambda line: None)
    assert again.uploaded == [] and again.sourcedir_uri == f"{env.remote}/{key}"
    second = env.sent[1]
    assert second == _expected(env, second["TrainingJobName"], image=_image("ml.g5.xlarge"), task="transformer",
                               hyper={"model-name": "minilm", "resume": "auto"}, instance_type="ml.g5.xlarge",
                               count=2, spot=False, models="minilm", sourcedir_key=key)
    assert sorted(env.jobs()) == sorted([name, second["TrainingJobName"]])
    print(f"\nlaunch to request: {again.jobs[0].seconds_to_request:.2f} s with nothing to upload; "
          f"sourcedir {again.sourcedir_bytes / 1024:.0f} KiB")


@pytest.mark.slow
def test_baselines_and_parallel(env: Env, cli) -> None:
    result = cli(*env.args("--baselines", "--on-demand"))
    assert result.exit_code == 0, result.stderr
    key = _sourcedir_key(env)
    baseline = env.sent[0]
    assert baseline == _expected(env, baseline["TrainingJobName"], image=_image("ml.m5.xlarge"), task="baseline",
                                 hyper={}, instance_type="ml.m5.xlarge", count=1, spot=False,
                                 models="logreg,linear_svm", sourcedir_key=key)
    assert "-cpu-" in baseline["AlgorithmSpecification"]["TrainingImage"]
    assert baseline["TrainingJobName"].startswith("multitype-baselines-")

    result = cli(*env.args("--models", "minilm", "sentence-transformers/all-MiniLM-L6-v2",
                           "--instance-type", "ml.g5.12xlarge", "--batch-size", "8"))
    assert result.exit_code == 0, result.stderr
    parallel = env.sent[1]
    models = "minilm,sentence-transformers/all-MiniLM-L6-v2"
    assert parallel == _expected(env, parallel["TrainingJobName"], image=_image("ml.g5.12xlarge"), task="parallel",
                                 hyper={"models": models, "batch-size": 8, "resume": "auto"},
                                 instance_type="ml.g5.12xlarge", count=1, spot=True, models=models,
                                 sourcedir_key=key)

    result = cli(*env.args("--models", "minilm,sentence-transformers/all-MiniLM-L6-v2", "--one-job-per-model"))
    assert result.exit_code == 0, result.stderr
    names = [s["TrainingJobName"] for s in env.sent[2:]]
    assert [s["HyperParameters"]["task"] for s in env.sent[2:]] == ['"transformer"'] * 2
    assert names[0].startswith("multitype-minilm-")
    assert names[1].startswith("multitype-sentence-transformers-all-MiniLM-L6-v-")  # cut to fit 63
    assert result.stdout.split() == names
    assert len(env.jobs()) == 4


def test_dry_run_prints_the_request_and_sends_nothing(env: Env, cli) -> None:
    result = cli(*env.args("--dry-run", "--model-name", "minilm"))
    assert result.exit_code == 0, result.stderr
    request = json.loads(result.stdout)
    assert request["HyperParameters"]["model-name"] == '"minilm"' and request["RoleArn"] == ROLE
    result = cli(*env.args("--dry-run", "--baselines", "--models", "logreg"))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["HyperParameters"]["models"] == '"logreg"'
    custom = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:2.7.1-gpu-py312"
    result = cli(*env.args("--dry-run", "--image-uri", custom))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["AlgorithmSpecification"]["TrainingImage"] == custom
    result = cli(*env.args("--dry-run", "--image-uri", custom.replace(":2.7.1-gpu-py312", ":latest")))
    assert result.exit_code == 0, result.stderr
    assert "warning: cannot tell the torch version of the image 123456789012.dkr.ecr.us-east-1.amazonaws.com/" \
           "mine:latest; make sure it is torch" in " ".join(result.stderr.split())
    assert "(dry run) nothing uploaded or started" in result.stderr
    assert env.sent == [] and env.keys() == [] and env.jobs() == []


def _write_project(env: Env, **project: Any) -> None:
    remote = project.pop("remote", env.remote)
    write_configs(env.configs, project=project_yaml(remote, **project))


def _no_credentials(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(env.root / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(env.root / "none"))


BAD = {
    "no role": (lambda env, mp: _write_project(env, role=None), (),
                r"^error: no SageMaker execution role: set aws.sagemaker_role in project.yaml or SAGEMAKER_ROLE"),
    "malformed role": (lambda env, mp: mp.setenv("SAGEMAKER_ROLE", "arn:aws:iam::12345:role/x"), (),
                       r"^error: RoleArn 'arn:aws:iam::12345:role/x' is not an IAM role ARN"),
    "region without image": (lambda env, mp: _write_project(env, region="xx-nowhere-1"), (),
                             r"^error: no AWS PyTorch training image \(torch .*\) in region 'xx-nowhere-1'; "
                             r"regions with one: .*us-east-1"),
    "instance type": (None, ("--instance-type", "ml.p3.2xlarg"),
                      r"^error: instance type 'ml.p3.2xlarg' is not a SageMaker training instance type; did you mean "
                      r"ml.p3.2xlarge"),
    "spot wait < run": (None, ("--max-run", "7200", "--max-wait", "3600"),
                        r"^error: managed spot needs max-wait >= max-run: got --max-wait 3600 < --max-run 7200"),
    "no credentials": (_no_credentials, (), r"^error: no AWS credentials found; tried: env, .*shared-credentials-file"),
    "no data": (lambda env, mp: (env.root / "data/processed/val_4class.csv").unlink(), (),
                r"^error: no processed data for channel 'val': .*val_4class.csv is missing; run 'multitype prepare'"),
    "not prepared": (lambda env, mp: (env.root / "data/processed/labels.json").unlink(), (),
                     r"^error: no processed data: .*labels.json is missing; run 'multitype prepare' first"),
    "no S3 root": (lambda env, mp: _write_project(env, remote=None), (),
                   r"^error: no S3 root for the job: set storage.remote"),
    "one GPU for several models": (None, ("--models", "minilm", "roberta-base"),
                                   r"^error: --models with 2 models runs one model per GPU, but ml.g5.xlarge has 1 "
                                   r"GPU\(s\); pick a multi-GPU --instance-type such as ml.g4dn.12xlarge"),
    "several instances for baselines": (None, ("--baselines", "--instance-count", "2"),
                                        r"^error: --instance-count 2 needs one transformer"),
    "image with another torch": (None, ("--image-uri", "763104351884.dkr.ecr.us-east-1.amazonaws.com/"
                                        "pytorch-training:1.13.1-gpu-py39-cu117-ubuntu20.04-sagemaker"),
                                 r"^error: the image .*pytorch-training:1.13.1-gpu.* has torch 1.13.1, outside the "
                                 r"supported range torch"),
    "bad hyperparameter": (None, ("--learning-rate", "-1"), r"^error: .*learning_rate"),
    "local model folder": (lambda env, mp: (env.root / "mymodel").mkdir() or (env.root / "mymodel/config.json")
                           .write_text("{}"), ("--model-name", "{root}/mymodel"),
                           r"^error: model '.*/mymodel' is a local folder, which a SageMaker job cannot read"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_launches_nothing(env: Env, cli, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    setup, extra, message = BAD[case]
    if setup is not None:
        setup(env, monkeypatch)
    result = cli(*env.args(*(arg.format(root=env.root) for arg in extra)))
    assert result.exit_code == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    import re

    assert re.search(message, result.stderr), result.stderr
    print(f"\n{case}: {result.stderr.strip()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", env.s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", env.s3.secret_key)
    assert env.sent == [] and env.keys() == [] and env.jobs() == []


def test_create_refused_by_aws_is_one_line(env: Env, cli) -> None:
    def refuse(params: dict[str, Any], **_: Any) -> None:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "ResourceLimitExceeded", "Message": "The account-level service limit "
                                     "'ml.g5.xlarge for spot training job usage' is 0 Instances"}}, "CreateTrainingJob")

    client = aws.client("sagemaker", AwsConfig(), max_attempts=1)
    client.meta.events.register("before-call.sagemaker.CreateTrainingJob", refuse, unique_id="test-refuse")
    try:
        result = cli(*env.args())
    finally:
        client.meta.events.unregister("before-call.sagemaker.CreateTrainingJob", unique_id="test-refuse")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: cannot start the training job multitype-minilm-")
    assert "ResourceLimitExceeded: The account-level service limit" in result.stderr
    assert len(env.sent) == 1 and env.jobs() == []


def test_expired_credentials_fail_before_any_upload(env: Env, cli) -> None:
    def expired(params: dict[str, Any], **_: Any) -> None:
        from botocore.exceptions import ClientError

        # what STS answers for an expired session token (moto accepts any key, so it is injected here)
        raise ClientError({"Error": {"Code": "ExpiredToken", "Message": "The security token included in the "
                                     "request is expired"}}, "GetCallerIdentity")

    sts = aws.client("sts", AwsConfig())
    sts.meta.events.register("before-call.sts.GetCallerIdentity", expired, unique_id="test-expired")
    try:
        result = cli(*env.args())
    finally:
        sts.meta.events.unregister("before-call.sts.GetCallerIdentity", unique_id="test-expired")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: cannot check the AWS credentials: the AWS credentials have expired "
                                     "(ExpiredToken); refresh them (aws sso login, a new session token) and retry")
    assert env.sent == [] and env.keys() == [] and env.jobs() == []


@pytest.fixture
def fake_jobs(monkeypatch: pytest.MonkeyPatch):
    """``multitype.cloud.sagemaker.jobs`` (CONTRACT 7) with wait() answering a chosen final status."""
    calls: list[tuple[str, bool]] = []
    final: dict[str, Any] = {}

    def wait(aws_cfg: AwsConfig, job_name: str, follow_logs: bool = True, poll_seconds: float = 30.0,
             echo=print) -> dict:
        calls.append((job_name, follow_logs))
        echo(f"[{job_name}] METRIC val_macro_f1=0.9")
        echo(f"training job {job_name} ended {final['TrainingJobStatus']}")  # as the real wait() ends
        return {"TrainingJobName": job_name, **final}

    try:
        from multitype.cloud.sagemaker import jobs
        monkeypatch.setattr(jobs, "wait", wait)
    except ImportError:  # the jobs module's branch is not merged here yet: its contract, with the documented codes
        jobs = types.ModuleType("multitype.cloud.sagemaker.jobs")
        jobs.wait = wait  # type: ignore[attr-defined]
        jobs.exit_code = lambda status: {"Completed": 0, "Failed": 1, "Stopped": 143}.get(status, 1)  # type: ignore
        monkeypatch.setitem(sys.modules, "multitype.cloud.sagemaker.jobs", jobs)
    return calls, final


@pytest.mark.parametrize("status,reason,code", [("Completed", None, 0), ("Failed", "AlgorithmError: boom", 1),
                                                 ("Stopped", None, None)])
def test_wait_maps_the_final_status(env: Env, cli, fake_jobs, status: str, reason: str | None,
                                    code: int | None) -> None:
    from multitype.cloud.sagemaker import jobs

    calls, final = fake_jobs
    final.update({"TrainingJobStatus": status, **({"FailureReason": reason} if reason else {})})
    result = cli(*env.args("--wait"))
    expected = jobs.exit_code(status) if code is None else code
    assert result.exit_code == expected != (0 if status != "Completed" else 1)
    [(name, follow)] = calls
    assert follow is True and name == env.sent[0]["TrainingJobName"]
    assert f"[{name}] METRIC val_macro_f1=0.9" in result.stdout
    assert f"training job {name} ended {status}" in result.stdout


def test_root_on_s3_adds_only_the_sourcedir_and_configs(env: Env, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from multitype.sync import sync

    workdir = env.root.parent / "elsewhere"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    sync("push", local=env.root, remote=env.remote, only="data")
    before = set(env.keys())
    result = cli("sagemaker", "launch", "--model-name", "minilm", "--root", env.remote, "--config-dir", env.configs)
    assert result.exit_code == 0, result.stderr
    [sent] = env.sent
    added = sorted(set(env.keys()) - before)
    assert [k for k in added if not k.startswith("proj/runs/")] == sorted(
        ["proj/" + _sourcedir_key(env)] + [f"proj/configs/{n}" for n in
                                          ("data_config.yaml", "models_baseline.yaml", "models_transformer.yaml",
                                           "project.yaml")])
    assert f"proj/runs/sagemaker/{sent['TrainingJobName']}.json" in added  # the record lives in the root
    assert json.loads(sent["HyperParameters"]["root"]) == env.remote
    assert list(workdir.iterdir()) == []  # nothing staged in the working folder
    assert sent["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == \
        f"{env.remote}/data/processed/train_4class.csv"
