"""sagemaker tune -> two trials, as SageMaker would run them from the request -> tune collect -> report.

Only SageMaker is played here, and only from what ``sagemaker tune`` really
sent (captured at our client layer): each trial is a training job built from
the ``TrainingJobDefinition`` (its static hyperparameters plus one value per
``ParameterRanges`` entry, as strings), created in moto, run with the real
``sourcedir.tar.gz`` (see ``test_sagemaker_roundtrip._play_sagemaker``); its
objective value is read from its stdout with the request's own metric
definition regex, as SageMaker reads it. moto has no
ListTrainingJobsForHyperParameterTuningJob: it is answered at our client from
those trials.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.awsrequest import AWSResponse

from multitype.cloud import aws
from multitype.config import AwsConfig
from tests.cloud import opt_ml
from tests.cloud.jobs_helpers import hook
from tests.cloud.launch_helpers import make_project
from tests.cloud.test_sagemaker_roundtrip import _play_sagemaker
from tests.transformer.conftest import transformer_yaml

EVENT = "provide-client-params.sagemaker.CreateHyperParameterTuningJob"
# what SageMaker's Bayesian search might pick: one value per range, as the strings it sends
PICKS = [{"learning_rate": "0.0002", "batch_size": "8"}, {"learning_rate": "1.5e-05", "batch_size": "4"}]


@pytest.mark.slow
def test_tune_trials_collect_report(s3_server: Any, aws_env: Any, tmp_path: Path, cli,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    bucket = s3_server.make_bucket("tuneround")
    root, configs = make_project(tmp_path / "laptop", f"s3://{bucket}/proj")
    data = yaml.safe_load(transformer_yaml(max_steps=3, max_length=32, num_epochs=1))
    data["tune"] = {"metric": "macro_f1", "space": {"learning_rate": {"loguniform": [1.0e-5, 3.0e-4]},
                                                    "batch_size": {"choice": [4, 8]}}}
    (configs / "models_transformer.yaml").write_text(yaml.safe_dump(data))
    where = ["--root", str(root), "--config-dir", str(configs)]

    sent: list[dict[str, Any]] = []
    client = aws.client("sagemaker", AwsConfig(), max_attempts=1)
    client.meta.events.register(EVENT, lambda params, **_: sent.append(json.loads(json.dumps(params))),
                                unique_id="tune-roundtrip")
    try:
        launched = cli("sagemaker", "tune", "--model-name", "minilm", "--max-jobs", "2", "--max-parallel-jobs", "1",
                       "--on-demand", "--instance-type", "ml.m5.xlarge", *where)
    finally:
        client.meta.events.unregister(EVENT, unique_id="tune-roundtrip")
    assert launched.exit_code == 0, launched.stderr
    [request] = sent
    name = request["HyperParameterTuningJobName"]
    definition = request["TrainingJobDefinition"]
    objective = request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
    regex = {m["Name"]: m["Regex"] for m in definition["AlgorithmSpecification"]["MetricDefinitions"]}[objective]

    summaries = []
    t0 = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.timezone.utc)
    for k, picked in enumerate(PICKS):
        job = f"{name}-{k + 1:03d}-{k:08x}"
        job_request = {"TrainingJobName": job, "HyperParameters": {**definition["StaticHyperParameters"], **picked},
                       **{key: value for key, value in definition.items() if key != "StaticHyperParameters"}}
        aws.client("sagemaker", AwsConfig()).create_training_job(**job_request)
        base = tmp_path / f"ml{k}"
        # the toolkit's arguments carry the searched strings JSON-decoded, as it decodes every value
        args, env = _play_sagemaker(s3_server, job_request, base)
        code, stdout, stderr = opt_ml.run(base, job, args, env=env)
        assert code == 0, stderr[-3000:]
        assert "test" not in [c["ChannelName"] for c in job_request["InputDataConfig"]]
        value = float(re.findall(regex, stdout)[-1])  # SageMaker's final objective value
        artifact = aws.client("sagemaker", AwsConfig()).describe_training_job(
            TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]
        packed = tmp_path / f"model{k}.tar.gz"
        with tarfile.open(packed, "w:gz") as tar:
            for path in sorted((base / "model").iterdir()):
                tar.add(path, arcname=path.name)
        out_bucket, out_key = artifact[len("s3://"):].split("/", 1)
        s3_server.client().put_object(Bucket=out_bucket, Key=out_key, Body=packed.read_bytes())
        summaries.append({"TrainingJobName": job, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:1:job/{job}",
                          "CreationTime": t0 + dt.timedelta(minutes=k), "TrainingStartTime": t0,
                          "TrainingEndTime": t0 + dt.timedelta(seconds=60), "TrainingJobStatus": "Completed",
                          "TunedHyperParameters": picked, "FinalHyperParameterTuningJobObjectiveMetric": {
                              "Type": "Maximize", "MetricName": objective, "Value": value}})

    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        assert json.loads(params["body"])["HyperParameterTuningJobName"] == name
        return AWSResponse(params["url"], 200, {}, None), {"TrainingJobSummaries": summaries}

    with hook("sagemaker", "before-call.sagemaker.ListTrainingJobsForHyperParameterTuningJob", answer):
        collected = cli("sagemaker", "tune", "collect", name, *where)
    assert collected.exit_code == 0, collected.stderr
    assert "warning" not in collected.stderr  # the best trial's manifest names this root's train/val/labels
    doc = json.loads((root / "results" / "tuning" / "minilm.json").read_text())
    values = [s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in summaries]
    best = max(range(2), key=lambda i: (values[i], -i))
    assert doc["best"]["slug"] == summaries[best]["TrainingJobName"] and doc["best"]["value"] == values[best]
    assert doc["best"]["params"] == {"batch_size": int(PICKS[best]["batch_size"]),
                                     "learning_rate": float(PICKS[best]["learning_rate"])}
    # each trial's objective is the val macro-F1 its own metrics JSON records (val alone: no test split)
    for k, summary in enumerate(summaries):
        trial = f"proj/runs/sagemaker-tuning/{name}/{summary['TrainingJobName']}"
        key = f"{trial}/results/transformer/minilm_metrics.json"
        record = json.loads(s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read())
        assert set(record["splits"]) == {"val"}
        assert f"{record['splits']['val']['macro_f1']:.6g}" == f"{values[k]:.6g}"
        assert record["params"]["batch_size"] == int(PICKS[k]["batch_size"])
    assert set(doc["best"]["test_metrics"]) == {"accuracy", "macro_f1", "weighted_f1", "num_samples"}
    assert (root / "models" / "final" / doc["best"]["slug"] / "model.safetensors").is_file()

    # the report needs a run's metrics to report on (a tuning study is a section of it): a local baseline
    assert cli("train", "baseline", "--models", "logreg", *where).exit_code == 0
    report = cli("report", *where)
    assert report.exit_code == 0, report.stderr
    text = (root / "results" / "report.md").read_text()
    assert "### Study `minilm`" in text and f"by SageMaker tuning job `{name}`" in text
