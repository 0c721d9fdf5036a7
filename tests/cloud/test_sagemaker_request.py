"""The CreateTrainingJob request: its layout, its name, and every check made before it is sent."""

from __future__ import annotations

import copy
import json
import re

import pytest

from multitype.cloud.sagemaker import request as req
from multitype.errors import AwsError

ROOT = "s3://bucket/proj"
ROLE = "arn:aws:iam::123456789012:role/MultitypeSageMaker"
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def _request(**changes: object) -> dict:
    args = dict(name="multitype-minilm-20261201-101500", image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/"
                "pytorch-training:2.9.0-gpu-py312", role_arn=ROLE, root=ROOT, region="us-east-1",
                sourcedir_uri=f"{ROOT}/code/sagemaker/sourcedir-0123456789ab.tar.gz", task="transformer",
                hyperparameters={"model-name": "minilm", "num-epochs": 3, "learning-rate": 2e-5, "resume": "auto"},
                channels={"train": f"{ROOT}/data/processed/train_4class.csv"}, instance_type="ml.g5.xlarge",
                instance_count=1, volume_gb=50, spot=True, max_run=3600, max_wait=7200,
                tags={"multitype:project": "bbc"})
    args.update(changes)
    return req.build_request(**args)  # type: ignore[arg-type]


def test_job_name_fits_the_pattern_and_keeps_the_timestamp() -> None:
    assert req.job_name("minilm", now=0) == "multitype-minilm-19700101-000000"
    long = req.job_name("sentence-transformers__all-MiniLM-L6-v2-with-a-very-long-suffix_x", now=1.8e9)
    assert len(long) == 63 and NAME_PATTERN.match(long) and long.endswith("-20270115-080000")
    assert long.startswith("multitype-sentence-transformers-all-MiniLM-L6-v-2027")
    assert NAME_PATTERN.match(req.job_name("__/.__", now=0)) and req.job_name("__", now=0).startswith("multitype-job-")


def test_hyperparameters_are_json_strings_as_the_sdk_sends() -> None:
    hyper = _request()["HyperParameters"]
    assert hyper == {"task": '"transformer"', "model-name": '"minilm"', "num-epochs": "3",
                     "learning-rate": "2e-05", "resume": '"auto"', "root": '"s3://bucket/proj"',
                     "sagemaker_program": '"entry.py"',
                     "sagemaker_submit_directory": '"s3://bucket/proj/code/sagemaker/sourcedir-0123456789ab.tar.gz"',
                     "sagemaker_region": '"us-east-1"', "sagemaker_container_log_level": "20"}
    assert all(isinstance(v, str) for v in hyper.values())
    assert json.loads(hyper["num-epochs"]) == 3 and json.loads(hyper["learning-rate"]) == 2e-5


def test_spot_and_on_demand_stopping_conditions() -> None:
    spot = _request()
    assert spot["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert spot["EnableManagedSpotTraining"] is True
    assert spot["CheckpointConfig"] == {"S3Uri": f"{ROOT}/models/checkpoints/multitype-minilm-20261201-101500/",
                                        "LocalPath": "/opt/ml/checkpoints"}
    on_demand = _request(spot=False, max_wait=None)
    assert on_demand["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert on_demand["EnableManagedSpotTraining"] is False
    req.validate_request(spot, ROOT)
    req.validate_request(on_demand, ROOT)


def _refused(request: dict, match: str) -> None:
    with pytest.raises(AwsError, match=match) as info:
        req.validate_request(request, ROOT)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("role", ["MultitypeSageMaker", "arn:aws:iam::1234:role/x",
                                  "arn:aws:iam::123456789012:user/alice", "arn:aws:s3:::bucket"])
def test_malformed_role_arn(role: str) -> None:
    _refused(_request(role_arn=role), r"RoleArn '.*' is not an IAM role ARN \(arn:aws:iam::<12-digit account>:"
                                      r"role/<name>\); fix aws.sagemaker_role in project.yaml or SAGEMAKER_ROLE")


def test_role_arn_of_other_partitions() -> None:
    req.validate_request(_request(role_arn="arn:aws-cn:iam::123456789012:role/path/to/Role"), ROOT)


def test_name_pattern_from_the_service_model() -> None:
    _refused(_request(name="multitype_minilm"), r"TrainingJobName = 'multitype_minilm' does not match "
                                                r"SageMaker's pattern")
    _refused(_request(name="m" * 64), r"TrainingJobName is 64 characters long, at most 63 allowed")


def test_instance_type_must_be_in_the_catalog() -> None:
    _refused(_request(instance_type="ml.g5.xlarg"), r"did you mean ml\.g5\.xlarge")


def test_every_s3_uri_inside_the_root() -> None:
    _refused(_request(channels={"train": "s3://other/data/processed/train_4class.csv"}),
             r"InputDataConfig\[train\] = 's3://other/data/processed/train_4class.csv' is outside the configured "
             r"root s3://bucket/proj")
    _refused(_request(sourcedir_uri="s3://bucket/projection/code.tar.gz"),
             r"HyperParameters\[sagemaker_submit_directory\] .* is outside the configured root")


def test_spot_wait_at_least_run() -> None:
    _refused(_request(max_run=7200, max_wait=3600),
             r"^managed spot needs max-wait >= max-run: got --max-wait 3600 < --max-run 7200; raise --max-wait")
    request = _request(spot=False, max_wait=None)
    request["StoppingCondition"]["MaxWaitTimeInSeconds"] = 9000
    _refused(request, "MaxWaitTimeInSeconds is only allowed with managed spot training")


def test_hyperparameter_types() -> None:
    request = _request()
    request["HyperParameters"]["num-epochs"] = '"three"'
    _refused(request, r"hyperparameter num-epochs must be an integer or a number, got 'three'")
    request = _request()
    request["HyperParameters"]["batch-size"] = "1.5"
    _refused(request, r"hyperparameter batch-size must be an integer, got 1.5")
    request = _request()
    request["HyperParameters"]["learning-rate"] = "-1"
    _refused(request, r"hyperparameter learning-rate must be positive, got -1")
    request = _request()
    request["HyperParameters"]["model-name"] = "minilm"  # not JSON-encoded
    _refused(request, r"hyperparameter model-name = 'minilm' is not JSON")
    _refused(_request(hyperparameters={"models": ",".join(["m" * 100] * 30)}),
             r"HyperParameters\['models'\] is 3031 characters long, at most 2500 allowed")
    _refused(_request(task="tune"), r"hyperparameter task = \"tune\" is not one of transformer, baseline, parallel")


def test_several_instances_only_for_one_transformer() -> None:
    req.validate_request(_request(instance_count=2), ROOT)
    _refused(_request(instance_count=2, task="parallel", hyperparameters={"models": "a,b"}),
             r"--instance-count 2 needs one transformer \(--model-name\); task \"parallel\" runs on one instance")


def test_botocore_validation_runs_first() -> None:
    request = _request()
    del request["RoleArn"]
    _refused(request, r"^invalid CreateTrainingJob request: Parameter validation failed: Missing required "
                      r"parameter in input: \"RoleArn\"")
    request = _request()
    request["ResourceConfig"]["InstanceCount"] = "2"
    _refused(request, r"Invalid type for parameter ResourceConfig.InstanceCount")
    request = _request()
    request["StoppingCondition"]["MaxRuntimeInSeconds"] = 0
    _refused(request, r"Invalid value for parameter StoppingCondition.MaxRuntimeInSeconds")


def test_all_problems_in_one_line() -> None:
    request = copy.deepcopy(_request(name="multitype_x", max_run=9000, max_wait=10))
    _refused(request, r"TrainingJobName = 'multitype_x' does not match .*; managed spot needs max-wait >= max-run")
    _refused(_request(role_arn="nope"), r"^RoleArn 'nope' is not an IAM role ARN .*; invalid CreateTrainingJob "
                                        r"request: .*Invalid length for parameter RoleArn")


def test_metric_definitions_are_one_per_name() -> None:
    definitions = req.metric_definitions()
    assert [d["Name"] for d in definitions] == list(req.METRIC_NAMES)
    regex = dict((d["Name"], d["Regex"]) for d in definitions)["val_macro_f1"]
    assert re.search(regex, "METRIC val_macro_f1=0.912").group(1) == "0.912"
    assert re.search(regex, "METRIC val_macro_f1_x=1") is None
