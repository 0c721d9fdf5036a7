"""``multitype sagemaker tune``: the CreateHyperParameterTuningJob request, sent to moto, and bad input.

The request is captured at our client layer (botocore's ``provide-client-params``
hook on the SageMaker client the launch uses) and compared whole; it is also
validated against botocore's service model by the launch itself, and here
again through :func:`request.check_operation`. moto implements
CreateHyperParameterTuningJob and DescribeHyperParameterTuningJob, so the
tuning job must then exist in moto with our definition. Bad input must leave
moto without a tuning job and the bucket empty.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from multitype.cloud import aws, catalog
from multitype.cloud.sagemaker import request as req
from multitype.cloud.sagemaker import sourcedir, tune
from multitype.config import AwsConfig, default_yaml
from multitype.errors import AwsError
from tests.cloud.launch_helpers import ROLE, make_project, project_yaml

EVENT = "provide-client-params.sagemaker.CreateHyperParameterTuningJob"
SPACE = {"learning_rate": {"loguniform": [1.0e-5, 3.0e-4]}, "batch_size": {"choice": [16, 32]},
         "num_epochs": {"int": [2, 5]}, "warmup_ratio": {"uniform": [0.0, 0.2]},
         "precision": {"choice": ["fp32", "bf16"]}}
METRICS = ["step", "epoch", "train_loss", "learning_rate", "val_loss", "val_accuracy", "val_macro_f1",
           "val_weighted_f1", "test_accuracy", "test_macro_f1", "train_samples_per_s"]
NAME = re.compile(r"^multitype-minilm-\d{10}$")


def transformer_with_tune(**tune_block: Any) -> str:
    data = yaml.safe_load(default_yaml("transformer"))
    data["tune"] = {"metric": "macro_f1", "direction": "maximize", "trials": 20, "space": SPACE, **tune_block}
    return yaml.safe_dump(data, sort_keys=False)


class Env:
    def __init__(self, s3_server: Any, tmp_path: Path) -> None:
        self.s3 = s3_server
        self.bucket = s3_server.make_bucket("tune")
        self.remote = f"s3://{self.bucket}/proj"
        self.root, self.configs = make_project(tmp_path, self.remote)
        (self.configs / "models_transformer.yaml").write_text(transformer_with_tune())
        self.sent: list[dict[str, Any]] = []

    def args(self, *extra: str) -> list[str]:
        return ["sagemaker", "tune", *extra, "--root", str(self.root), "--config-dir", str(self.configs)]

    def keys(self) -> list[str]:
        return self.s3.list_keys(self.bucket)

    def tuning_jobs(self) -> list[str]:
        answer = aws.client("sagemaker", AwsConfig()).list_hyper_parameter_tuning_jobs()
        return [j["HyperParameterTuningJobName"] for j in answer["HyperParameterTuningJobSummaries"]]


@pytest.fixture
def env(s3_server, aws_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    e = Env(s3_server, tmp_path)
    client = aws.client("sagemaker", AwsConfig(), max_attempts=1)  # the one the launch uses

    def capture(params: dict[str, Any], **_: Any) -> None:
        e.sent.append(json.loads(json.dumps(params)))

    client.meta.events.register(EVENT, capture, unique_id="test-tune-capture")
    yield e
    client.meta.events.unregister(EVENT, unique_id="test-tune-capture")


def expected(remote: str, name: str, sourcedir_key: str, *, spot: bool = True,
             instance_type: str = "ml.g5.xlarge", max_jobs: int = 20, parallel: int = 4) -> dict[str, Any]:
    image = catalog.pytorch_training_image("us-east-1", instance_type, sourcedir.torch_specifier()).uri
    channels = {"train": f"{remote}/data/processed/train_4class.csv",
                "val": f"{remote}/data/processed/val_4class.csv",
                "labels": f"{remote}/data/processed/labels.json", "configs": f"{remote}/configs/"}
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "val_macro_f1"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs, "MaxParallelTrainingJobs": parallel},
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {"Name": "learning_rate", "MinValue": "1e-05", "MaxValue": "0.0003", "ScalingType": "Logarithmic"},
                    {"Name": "warmup_ratio", "MinValue": "0.0", "MaxValue": "0.2", "ScalingType": "Linear"}],
                "IntegerParameterRanges": [{"Name": "num_epochs", "MinValue": "2", "MaxValue": "5",
                                            "ScalingType": "Linear"}],
                "CategoricalParameterRanges": [{"Name": "batch_size", "Values": ["16", "32"]},
                                               {"Name": "precision", "Values": ['"fp32"', '"bf16"']}]},
            "TrainingJobEarlyStoppingType": "Auto"},
        "TrainingJobDefinition": {
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File", "MetricDefinitions": [
                {"Name": m, "Regex": f"METRIC {m}=([-+0-9.eEnaif]+)"} for m in METRICS]},
            "RoleArn": ROLE,
            "StaticHyperParameters": {
                "task": '"transformer"', "model-name": '"minilm"', "resume": '"auto"', "tuning-job": json.dumps(name),
                "root": json.dumps(remote), "sagemaker_program": '"entry.py"',
                "sagemaker_submit_directory": json.dumps(f"{remote}/{sourcedir_key}"),
                "sagemaker_region": '"us-east-1"', "sagemaker_container_log_level": "20"},
            "InputDataConfig": [{"ChannelName": c, "InputMode": "File", "CompressionType": "None",
                                 "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                                                 "S3DataDistributionType": "FullyReplicated"}}}
                                for c, uri in channels.items()],
            "OutputDataConfig": {"S3OutputPath": f"{remote}/models/sagemaker/"},
            "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 50},
            "StoppingCondition": {"MaxRuntimeInSeconds": 43200, **({"MaxWaitTimeInSeconds": 86400} if spot else {})},
            "EnableManagedSpotTraining": spot,
            "CheckpointConfig": {"S3Uri": f"{remote}/models/checkpoints/{name}/", "LocalPath": "/opt/ml/checkpoints"},
        },
        "Tags": [{"Key": "multitype:project", "Value": "bbc-news"}, {"Key": "multitype:task", "Value": "tune"},
                 {"Key": "multitype:model", "Value": "minilm"}, {"Key": "multitype:study", "Value": "minilm"},
                 {"Key": "team", "Value": "nlp"}],
    }


def _sourcedir_key(env: Env) -> str:
    keys = [k for k in env.keys() if k.startswith("proj/code/sagemaker/sourcedir-")]
    assert len(keys) == 1, keys
    return keys[0].removeprefix("proj/")


# --- names and the request ------------------------------------------------------------------------
def test_tuning_job_names_fit_32_characters() -> None:
    assert tune.tuning_job_name("minilm", now=0) == "multitype-minilm-7001010000"
    long = tune.tuning_job_name("sentence-transformers__all-MiniLM-L6-v2", now=1.8e9)
    assert long == "multitype-sentence-tr-2701150800" and len(long) == 32
    pattern = req.operation_model("CreateHyperParameterTuningJob").input_shape.members[
        "HyperParameterTuningJobName"].metadata["pattern"]
    for name in (long, tune.tuning_job_name("__", now=0), tune.tuning_job_name("a" * 80, now=0)):
        assert len(name) <= 32 and re.fullmatch(pattern, name), name
    # its trials are <name>-<NNN>-<8 hex>: still multitype-*, inside the 63 characters of a training job name
    assert len(f"{long}-020-0123abcd") <= req.NAME_MAX


def test_launch_sends_the_whole_request_and_moto_has_it(env: Env, cli) -> None:
    res = cli(*env.args("--model-name", "minilm"))
    assert res.exit_code == 0, res.stderr
    [sent] = env.sent
    name = sent["HyperParameterTuningJobName"]
    assert NAME.match(name) and res.stdout.strip() == name
    assert sent == expected(env.remote, name, _sourcedir_key(env))
    assert req.check_operation("CreateHyperParameterTuningJob", sent) == []
    # the training definition is CreateTrainingJob's (one builder): same keys but the hyperparameters' name
    training = set(req.build_request(
        name="x", image_uri="i", role_arn=ROLE, root=env.remote, region="us-east-1", sourcedir_uri="s", task="t",
        hyperparameters={}, channels={}, instance_type="ml.g5.xlarge", instance_count=1, volume_gb=1, spot=True,
        max_run=1, max_wait=1, tags={}))
    assert set(sent["TrainingJobDefinition"]) == training - {"TrainingJobName", "Tags", "HyperParameters"} | {
        "StaticHyperParameters"}
    described = aws.client("sagemaker", AwsConfig()).describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name)
    assert described["HyperParameterTuningJobConfig"] == sent["HyperParameterTuningJobConfig"]
    assert described["TrainingJobDefinition"]["StaticHyperParameters"] == sent["TrainingJobDefinition"][
        "StaticHyperParameters"]
    # the data, configs and code went up; no test split is read by a trial, but the launch pushes the whole data
    keys = env.keys()
    for k in ("data/processed/train_4class.csv", "data/processed/val_4class.csv", "configs/models_transformer.yaml",
              "code/src/multitype/__init__.py"):
        assert f"proj/{k}" in keys, k
    record = json.loads((env.root / "runs" / "sagemaker-tuning" / f"{name}.json").read_text())
    assert record["request"] == sent and record["study"] == "minilm" and record["model_name"] == "minilm"
    assert record["fingerprint"] and record["tune"]["space"]["batch_size"] == {"choice": [16, 32]}
    assert "tuning estimate: 20 trial(s) x $" in res.stderr


def test_dry_run_on_demand_prints_the_request_and_sends_nothing(env: Env, cli) -> None:
    res = cli(*env.args("--on-demand", "--max-jobs", "6", "--max-parallel-jobs", "2", "--study", "lr-sweep",
                        "--dry-run"))
    assert res.exit_code == 0, res.stderr
    printed = json.loads(res.stdout)
    name = printed["HyperParameterTuningJobName"]
    key = printed["TrainingJobDefinition"]["StaticHyperParameters"]["sagemaker_submit_directory"]
    want = expected(env.remote, name, json.loads(key).removeprefix(env.remote + "/"), spot=False, max_jobs=6,
                    parallel=2)
    want["Tags"][3]["Value"] = "lr-sweep"
    assert printed == want
    assert env.sent == [] and env.keys() == [] and env.tuning_jobs() == []


# --- bad input: one line, exit 2, nothing uploaded or started ---------------------------------------
def _refused(env: Env, cli, args: list[str], match: str) -> None:
    res = cli(*args)
    assert res.exit_code == 2, (res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    # a budget refusal follows the estimate lines it is based on, as in `sagemaker launch`
    assert len(lines) == (3 if "--budget" in args else 1), res.stderr
    assert lines[-1].startswith("error: ") and re.search(match, lines[-1]), res.stderr
    assert env.sent == [] and env.keys() == [] and env.tuning_jobs() == []


def test_without_a_tune_block(env: Env, cli) -> None:
    (env.configs / "models_transformer.yaml").write_text(default_yaml("transformer"))
    _refused(env, cli, env.args(), r"models_transformer.yaml has no 'tune:' block; add one such as")


@pytest.mark.parametrize("flags, match", [
    (["--max-jobs", "0"], r"--max-jobs must be at least 1, got 0"),
    (["--max-jobs", "3", "--max-parallel-jobs", "4"], r"--max-parallel-jobs 4 is more than --max-jobs 3"),
    (["--max-parallel-jobs", "0"], r"--max-parallel-jobs must be at least 1"),
    (["--study", "a/b"], r"--study 'a/b': use letters, digits"),
    (["--max-run", "7200", "--max-wait", "3600"], r"managed spot needs max-wait >= max-run"),
    (["--instance-type", "ml.g5.huge"], r"ml.g5.huge"),
    (["--role", "arn:aws:iam::1234:role/x"], r"RoleArn 'arn:aws:iam::1234:role/x' is not an IAM role ARN"),
    (["--budget", "0.01"], r"over the budget"),
])
def test_bad_flags(env: Env, cli, flags: list[str], match: str) -> None:
    _refused(env, cli, env.args(*flags), match)


def test_missing_role(env: Env, cli, tmp_path: Path) -> None:
    (env.configs / "project.yaml").write_text(project_yaml(env.remote, role=None))
    _refused(env, cli, env.args(), r"no SageMaker execution role: set aws.sagemaker_role")


def test_a_space_name_the_trainer_does_not_take(env: Env, cli) -> None:
    data = yaml.safe_load(transformer_with_tune())
    data["tune"]["space"]["dropout"] = {"uniform": [0.0, 0.3]}
    (env.configs / "models_transformer.yaml").write_text(yaml.safe_dump(data))
    _refused(env, cli, env.args(), r"'tune.space.dropout' is not a fine-tuning parameter")


def test_a_space_name_the_entry_script_does_not_take() -> None:
    """The config's tunable names and the entry script's agree; a hand-made range outside them is refused."""
    from multitype.cloud.sagemaker import entrypoint
    from multitype.config import TRANSFORMER_TUNABLE

    assert set(entrypoint.TUNED) == set(TRANSFORMER_TUNABLE)
    request = expected("s3://b/proj", "multitype-minilm-2612030000", "code/sagemaker/sourcedir-0.tar.gz")
    request["HyperParameterTuningJobConfig"]["ParameterRanges"]["ContinuousParameterRanges"].append(
        {"Name": "dropout", "MinValue": "0.0", "MaxValue": "0.3", "ScalingType": "Linear"})
    with pytest.raises(AwsError, match=r"tune.space dropout: the entry script does not take it; tunable: "):
        tune.validate_tuning_request(request, "s3://b/proj")


def test_the_service_model_refuses_what_moto_would_accept() -> None:
    request = expected("s3://b/proj", "multitype-minilm-2612030000", "code/sagemaker/sourcedir-0.tar.gz")
    tune.validate_tuning_request(request, "s3://b/proj")
    too_long = {**request, "HyperParameterTuningJobName": "multitype-" + "x" * 30}
    with pytest.raises(AwsError, match=r"HyperParameterTuningJobName is 40 characters long, at most 32"):
        tune.validate_tuning_request(too_long, "s3://b/proj")
    bad = json.loads(json.dumps(request))
    bad["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] = "On"
    with pytest.raises(AwsError, match=r"CreateHyperParameterTuningJob.HyperParameterTuningJobConfig."
                                       r"TrainingJobEarlyStoppingType = 'On' is not one of Off, Auto"):
        tune.validate_tuning_request(bad, "s3://b/proj")
    clash = json.loads(json.dumps(request))
    clash["TrainingJobDefinition"]["StaticHyperParameters"]["batch_size"] = "16"
    with pytest.raises(AwsError, match=r"batch_size both searched and static"):
        tune.validate_tuning_request(clash, "s3://b/proj")
    outside = json.loads(json.dumps(request))
    outside["TrainingJobDefinition"]["OutputDataConfig"]["S3OutputPath"] = "s3://other/x/"
    with pytest.raises(AwsError, match=r"OutputDataConfig.S3OutputPath = 's3://other/x/' is outside"):
        tune.validate_tuning_request(outside, "s3://b/proj")
    test_channel = json.loads(json.dumps(request))
    test_channel["TrainingJobDefinition"]["InputDataConfig"].append(
        {**test_channel["TrainingJobDefinition"]["InputDataConfig"][0], "ChannelName": "test"})
    with pytest.raises(AwsError, match=r"a tuning trial must not read the test split"):
        tune.validate_tuning_request(test_channel, "s3://b/proj")


def test_minimize_and_other_metrics_map_to_their_val_metric() -> None:
    from multitype.tuning.space import TuneConfig

    cfg = TuneConfig.model_validate({"metric": "weighted_f1", "direction": "minimize", "space": SPACE})
    definition = req.training_definition(
        image_uri="i", role_arn=ROLE, root="s3://b/p", region="us-east-1", sourcedir_uri="s3://b/p/c.tar.gz",
        task="transformer", hyperparameters={}, channels={}, instance_type="ml.g5.xlarge", instance_count=1,
        volume_gb=1, spot=False, max_run=60, max_wait=None, checkpoint_uri="s3://b/p/models/checkpoints/x/")
    request = tune.build_tuning_request(name="x", definition=definition, tune=cfg, max_jobs=2, max_parallel_jobs=1,
                                        tags={})
    assert request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"] == {
        "Type": "Minimize", "MetricName": "val_weighted_f1"}
    assert "val_weighted_f1" in [m["Name"] for m in definition["AlgorithmSpecification"]["MetricDefinitions"]]


def test_an_empty_val_split(env: Env, cli) -> None:
    val = env.root / "data" / "processed" / "val_4class.csv"
    val.write_text(val.read_text().splitlines()[0] + "\n")
    _refused(env, cli, env.args(), r"val_4class.csv has no rows: a tuning job optimises the val metric")


def test_the_space_of_a_tuning_job_not_launched_here_is_read_back_from_its_ranges() -> None:
    """status and collect without a launch record rebuild the space from ParameterRanges (same fingerprint)."""
    from multitype.cloud.sagemaker import tune_jobs
    from multitype.tuning.space import TuneConfig

    request = expected("s3://b/proj", "multitype-minilm-2612030000", "code/sagemaker/sourcedir-0.tar.gz")
    space = tune_jobs._space({"HyperParameterTuningJobConfig": request["HyperParameterTuningJobConfig"]}, None)
    rebuilt = TuneConfig.model_validate({"space": {k: v.spec() for k, v in space.items()}})
    original = TuneConfig.model_validate({"space": SPACE})
    assert rebuilt.space_spec() == original.space_spec() and rebuilt.fingerprint() == original.fingerprint()
