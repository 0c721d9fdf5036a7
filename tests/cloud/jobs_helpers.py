"""Helpers for the status/logs/stop/list/wait/collect tests: jobs in moto, log lines, response edits at our client.

Moto creates every training job ``Completed`` at once, without billable or
training seconds, and has no StopTrainingJob. Where a test needs another state,
:func:`edit_describe` changes the parsed DescribeTrainingJob answer on our own
botocore client (event ``after-call.sagemaker.DescribeTrainingJob``): the
request still goes to moto, only its answer is altered.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any, Callable, Iterator

from multitype.cloud import aws
from multitype.config import AwsConfig

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def create_job(name: str, root: str = "s3://bucket/proj", spot: bool = True, count: int = 1,
               instance_type: str = "ml.g5.xlarge") -> None:
    """A minimal valid CreateTrainingJob request, sent to moto (which marks the job Completed)."""
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "HyperParameters": {"task": json.dumps("transformer"), "root": json.dumps(root),
                            "sagemaker_program": json.dumps("entry.py")},
        "OutputDataConfig": {"S3OutputPath": f"{root}/models/sagemaker/"},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": count, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600, **({"MaxWaitTimeInSeconds": 7200} if spot else {})},
        "EnableManagedSpotTraining": spot,
    }
    if spot:
        request["CheckpointConfig"] = {"S3Uri": f"{root}/models/checkpoints/{name}/", "LocalPath": "/opt/ml/checkpoints"}
    aws.client("sagemaker", AwsConfig()).create_training_job(**request)


@contextlib.contextmanager
def hook(service: str, event: str, handler: Callable[..., Any], max_attempts: int | None = None) -> Iterator[None]:
    """Register ``handler`` on our shared client of ``service`` for ``event``; removed afterwards."""
    events = aws.client(service, AwsConfig(), max_attempts=max_attempts).meta.events
    uid = uuid.uuid4().hex
    events.register(event, handler, unique_id=uid)
    try:
        yield
    finally:
        events.unregister(event, unique_id=uid)


@contextlib.contextmanager
def edit_describe(edit: Callable[[dict[str, Any], int], None], api: str = "TrainingJob") -> Iterator[list[int]]:
    """Alter each parsed Describe<api> answer with ``edit(parsed, call_number)`` (1-based); yields the count.

    ``api="ProcessingJob"`` edits DescribeProcessingJob (moto creates those Completed too).
    """
    calls = [0]

    def handler(parsed: dict[str, Any], **_: Any) -> None:
        if f"{api}Status" in parsed:  # not an error answer
            calls[0] += 1
            edit(parsed, calls[0])

    with hook("sagemaker", f"after-call.sagemaker.Describe{api}", handler):
        yield calls


def set_status(status: str, **fields: Any) -> Callable[[dict[str, Any], int], None]:
    """An edit that reports ``status`` (and ``fields``) on every call."""
    def edit(parsed: dict[str, Any], _: int) -> None:
        parsed.update({"TrainingJobStatus": status, "SecondaryStatus": status, **fields})
    return edit


def put_lines(job: str, host: str, lines: list[tuple[int, str]], epoch: str = "1733050000",
              group: str = "/aws/sagemaker/TrainingJobs") -> str:
    """Put ``(timestamp ms, message)`` events into the job's stream for ``host`` in moto's CloudWatch Logs."""
    logs = aws.client("logs", AwsConfig())
    if not logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
        logs.create_log_group(logGroupName=group)
    stream = f"{job}/{host}-{epoch}"
    if not logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=stream)["logStreams"]:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    logs.put_log_events(logGroupName=group, logStreamName=stream,
                        logEvents=[{"timestamp": ts, "message": msg} for ts, msg in lines])
    return stream
