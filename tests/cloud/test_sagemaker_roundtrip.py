"""launch -> the job, as SageMaker would run it from the request -> collect -> report.

One path through every part of the SageMaker work. Only SageMaker itself is
played here, and only from what ``launch`` really sent (captured at our client
layer): the channels are downloaded from the request's S3 prefixes, the code is
the ``sourcedir.tar.gz`` named by ``sagemaker_submit_directory``, the
hyperparameters go into ``hyperparameters.json`` as sent and to ``entry.py`` as
the training toolkit passes them, and ``SM_MODEL_DIR`` is packed into
``model.tar.gz`` under the request's output path, where moto's job says it is.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from multitype.cloud import aws
from multitype.config import AwsConfig
from tests.cloud import opt_ml
from tests.cloud.launch_helpers import make_project

EVENT = "provide-client-params.sagemaker.CreateTrainingJob"


def _download(s3: Any, uri: str, dest: Path) -> None:
    """What SageMaker does for an S3Prefix channel: every object under the prefix, relative to its folder."""
    bucket, prefix = uri[len("s3://"):].split("/", 1)
    folder = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    keys = s3.list_keys(bucket, prefix)
    assert keys, f"channel {uri} is empty"
    for key in keys:
        target = dest / key[len(folder):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def _play_sagemaker(s3: Any, request: dict[str, Any], base: Path) -> tuple[list[str], dict[str, str]]:
    """Fill ``base`` as SageMaker fills /opt/ml for ``request``; returns the toolkit's (arguments, environment)."""
    hyper = request["HyperParameters"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    for name, uri in channels.items():
        _download(s3, uri, base / "input" / "data" / name)
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyper), encoding="utf-8")
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    for folder in ("model", "output/data", "checkpoints", "code"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    tarball = base / "sourcedir.tar.gz"
    bucket, key = json.loads(hyper["sagemaker_submit_directory"])[len("s3://"):].split("/", 1)
    tarball.write_bytes(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())
    with tarfile.open(tarball) as tar:
        tar.extractall(base / "code", filter="data")
    assert json.loads(hyper["sagemaker_program"]) == "entry.py" and (base / "code" / "entry.py").is_file()
    args: list[str] = []
    for name, value in sorted(hyper.items()):
        if not name.startswith("sagemaker_"):
            decoded = json.loads(value)
            args += [f"--{name}", decoded if isinstance(decoded, str) else json.dumps(decoded)]
    env = {f"SM_CHANNEL_{name.upper()}": str(base / "input" / "data" / name) for name in channels}
    env.update({"SM_MODEL_DIR": str(base / "model"), "SM_OUTPUT_DATA_DIR": str(base / "output" / "data"),
                "SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "0"})
    return args, env


@pytest.mark.slow
def test_launch_run_collect_report(s3_server: Any, aws_env: Any, tmp_path: Path, cli,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    bucket = s3_server.make_bucket("roundtrip")
    root, configs = make_project(tmp_path / "laptop", f"s3://{bucket}/proj")
    where = ["--root", str(root), "--config-dir", str(configs)]
    assert cli("train", "baseline", "--models", "logreg", *where).exit_code == 0  # a local run to compare with

    sent: list[dict[str, Any]] = []
    client = aws.client("sagemaker", AwsConfig(), max_attempts=1)
    client.meta.events.register(EVENT, lambda params, **_: sent.append(json.loads(json.dumps(params))),
                                unique_id="roundtrip")
    try:
        launched = cli("sagemaker", "launch", "--model-name", "minilm", "--num-epochs", "1", "--max-length", "32",
                       "--batch-size", "8", "--on-demand", "--instance-type", "ml.m5.xlarge", *where)
    finally:
        client.meta.events.unregister(EVENT, unique_id="roundtrip")
    assert launched.exit_code == 0, launched.stderr
    [request] = sent
    job = request["TrainingJobName"]

    base = tmp_path / "ml"
    args, env = _play_sagemaker(s3_server, request, base)
    code, stdout, stderr = opt_ml.run(base, job, args, env=env)
    assert code == 0, stderr[-3000:]
    assert f"from {base}/code/src/multitype" in stderr  # the bundled package ran, not this checkout's
    # SageMaker packs SM_MODEL_DIR where the job's ModelArtifacts say
    artifact = aws.client("sagemaker", AwsConfig()).describe_training_job(
        TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]
    packed = tmp_path / "model.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        for path in sorted((base / "model").iterdir()):
            tar.add(path, arcname=path.name)
    out_bucket, out_key = artifact[len("s3://"):].split("/", 1)
    s3_server.client().put_object(Bucket=out_bucket, Key=out_key, Body=packed.read_bytes())

    collected = cli("sagemaker", "collect", *where)  # JOB: the newest this root launched
    assert collected.exit_code == 0, collected.stderr
    metrics = json.loads((root / "results" / "transformer" / "minilm_metrics.json").read_text())
    result = json.loads(s3_server.client().get_object(
        Bucket=bucket, Key=f"proj/runs/sagemaker/{job}/result.json")["Body"].read())
    assert result["run_ids"] == [metrics["run_id"]]
    assert (root / "runs" / metrics["run_id"] / "manifest.json").is_file()
    assert f"METRIC test_accuracy={metrics['accuracy']:.6g}" in stdout.splitlines()

    from multitype.predictor import load_predictor

    labels, _ = load_predictor(root / "models" / "final" / "minilm", device="cpu").predict(["Shares fell sharply."])
    assert labels[0] in ("business", "politics", "sports", "tech")
    report = cli("report", *where)
    assert report.exit_code == 0, report.stderr
    text = (root / "results" / "report.md").read_text()
    assert "logreg" in text and "minilm" in text  # the local baseline and the cloud transformer, side by side
