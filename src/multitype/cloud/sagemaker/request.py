"""The ``CreateTrainingJob`` request: built as a plain dict, validated before it is sent.

:func:`build_request` lays out the request of DESIGN.md section 6 (the
CONTRACT of issue 9): the stock PyTorch image in File mode, metric definitions
matching our ``METRIC name=value`` lines, the hyperparameters as JSON-encoded
strings beside the SDK's ``sagemaker_*`` ones, the channels ``train``/``val``/
``test``/``labels``/``configs``, the output and checkpoint locations under the
root, managed spot, tags. :func:`validate_request` checks it the way AWS would,
because a local test server accepts almost anything: botocore's own parameter
validation against the operation's input shape, then what botocore leaves to
the service (each string's ``pattern`` and ``max`` length from the same service
model) and what only we know (S3 URIs inside the root, the instance type, wait
>= run, hyperparameter types, multi-instance only for one transformer).
"""

from __future__ import annotations

import functools
import json
import re
import time
from typing import Any, Mapping

from multitype.errors import AwsError

TASKS = ("transformer", "baseline", "parallel")
CHANNELS = ("train", "val", "test", "labels", "configs")
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
NAME_PREFIX = "multitype"
NAME_MAX = 63
LOG_LEVEL = 20  # sagemaker_container_log_level: logging.INFO, as the SDK sends it
# every name our loop prints with transformer.logs.metric (tests/cloud/test_metric_definitions.py checks it)
METRIC_NAMES = ("step", "epoch", "train_loss", "learning_rate", "val_loss", "val_accuracy", "val_macro_f1",
                "val_weighted_f1", "test_accuracy", "test_macro_f1", "train_samples_per_s")
# what the hyperparameters must decode to (JSON), beside the sagemaker_* ones
_HYPER_TYPES: dict[str, tuple[type, ...]] = {
    "task": (str,), "model-name": (str,), "models": (str,), "root": (str,), "resume": (str,),
    "num-epochs": (int, float), "learning-rate": (int, float), "batch-size": (int,), "max-length": (int,),
    "sagemaker_program": (str,), "sagemaker_submit_directory": (str,), "sagemaker_region": (str,),
    "sagemaker_container_log_level": (int,), "tuning-job": (str,),
}
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")


def metric_definitions() -> list[dict[str, str]]:
    """One ``{"Name", "Regex"}`` per :data:`METRIC_NAMES`, matching ``METRIC <name>=<value>``."""
    return [{"Name": name, "Regex": f"METRIC {name}=([-+0-9.eEnaif]+)"} for name in METRIC_NAMES]


def job_name(slug: str, now: float | None = None) -> str:
    """``multitype-<slug>-<UTC yyyymmdd-hhmmss>`` inside SageMaker's 63-character name pattern.

    The slug is reduced to letters, digits and single hyphens and cut so that
    the timestamp always fits.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    room = NAME_MAX - len(NAME_PREFIX) - len(stamp) - 2
    clean = re.sub(r"[^a-zA-Z0-9]+", "-", slug).strip("-")[:room].strip("-") or "job"
    return f"{NAME_PREFIX}-{clean}-{stamp}"


def encode_hyperparameters(values: Mapping[str, Any]) -> dict[str, str]:
    """Every value JSON-encoded as a string, as the SageMaker SDK sends them (``3`` -> ``"3"``, ``"a"`` -> ``'"a"'``).

    A whole float (``--num-epochs 2`` arrives as ``2.0``) is sent as the integer it is.
    """
    return {key: json.dumps(int(value) if isinstance(value, float) and value.is_integer() else value)
            for key, value in values.items() if value is not None}


def training_definition(*, image_uri: str, role_arn: str, root: str, region: str, sourcedir_uri: str, task: str,
                        hyperparameters: Mapping[str, Any], channels: Mapping[str, str], instance_type: str,
                        instance_count: int, volume_gb: int, spot: bool, max_run: int, max_wait: int | None,
                        checkpoint_uri: str) -> dict[str, Any]:
    """What a training job is made of, shared by ``CreateTrainingJob`` and a tuning job's ``TrainingJobDefinition``.

    The image with our metric definitions, the role, the hyperparameters
    (JSON-encoded beside the SDK's ``sagemaker_*`` ones, under
    ``HyperParameters``), the channels, the output and checkpoint locations,
    the instances, the stopping condition and managed spot. The tuning job
    renames ``HyperParameters`` to ``StaticHyperParameters``.
    """
    root = root.rstrip("/")
    hyper = encode_hyperparameters({
        "task": task, **hyperparameters, "root": root,
        "sagemaker_program": "entry.py", "sagemaker_submit_directory": sourcedir_uri,
        "sagemaker_region": region, "sagemaker_container_log_level": LOG_LEVEL})
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": int(max_run)}
    if spot:
        stopping["MaxWaitTimeInSeconds"] = int(max_wait if max_wait is not None else max_run)
    return {
        "AlgorithmSpecification": {"TrainingImage": image_uri, "TrainingInputMode": "File",
                                   "MetricDefinitions": metric_definitions()},
        "RoleArn": role_arn,
        "HyperParameters": hyper,
        "InputDataConfig": [
            {"ChannelName": channel, "InputMode": "File", "CompressionType": "None",
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                             "S3DataDistributionType": "FullyReplicated"}}}
            for channel, uri in channels.items()],
        "OutputDataConfig": {"S3OutputPath": f"{root}/models/sagemaker/"},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": int(instance_count),
                           "VolumeSizeInGB": int(volume_gb)},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": bool(spot),
        "CheckpointConfig": {"S3Uri": checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH},
    }


def build_request(*, name: str, image_uri: str, role_arn: str, root: str, region: str, sourcedir_uri: str,
                  task: str, hyperparameters: Mapping[str, Any], channels: Mapping[str, str],
                  instance_type: str, instance_count: int, volume_gb: int, spot: bool, max_run: int,
                  max_wait: int | None, tags: Mapping[str, str]) -> dict[str, Any]:
    """The ``CreateTrainingJob`` parameters (a plain dict, as botocore takes them).

    Parameters
    ----------
    name : str
        The job name (:func:`job_name`).
    root : str
        The S3 root (``s3://bucket/prefix``): outputs go to ``<root>/models/...``
        and the job writes its results there.
    sourcedir_uri : str
        ``s3://`` URI of the sourcedir.tar.gz.
    task : {"transformer", "baseline", "parallel"}
    hyperparameters : mapping
        The user's (``model-name``, ``models``, ``num-epochs``...), not yet encoded.
    channels : mapping
        Channel name -> S3 prefix.
    spot : bool
        Managed spot; then ``MaxWaitTimeInSeconds`` = ``max_wait``.
    tags : mapping
        Key -> value.
    """
    definition = training_definition(
        image_uri=image_uri, role_arn=role_arn, root=root, region=region, sourcedir_uri=sourcedir_uri, task=task,
        hyperparameters=hyperparameters, channels=channels, instance_type=instance_type,
        instance_count=instance_count, volume_gb=volume_gb, spot=spot, max_run=max_run, max_wait=max_wait,
        checkpoint_uri=f"{root.rstrip('/')}/models/checkpoints/{name}/")
    return {"TrainingJobName": name, **definition,
            "Tags": [{"Key": key, "Value": value} for key, value in tags.items()]}


# --- validation -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _operation() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob")


def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # \p{L} and other classes Python's re lacks: left to the service
        return None


def _shape_errors(value: Any, shape: Any, path: str) -> list[str]:
    """What botocore's validator leaves to the service: string ``pattern``, ``max`` length and enum, list ``max``."""
    errors: list[str] = []
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                errors += _shape_errors(item, shape.members[key], f"{path}.{key}")
    elif kind == "list" and isinstance(value, list):
        limit = shape.metadata.get("max")
        if limit is not None and len(value) > limit:
            errors.append(f"{path} has {len(value)} items, at most {limit} allowed")
        for i, item in enumerate(value):
            errors += _shape_errors(item, shape.member, f"{path}[{i}]")
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            errors += _shape_errors(key, shape.key, f"{path} key {key!r}")
            errors += _shape_errors(item, shape.value, f"{path}[{key!r}]")
    elif kind == "string" and isinstance(value, str):
        limit = shape.metadata.get("max")
        if limit is not None and len(value) > limit:
            errors.append(f"{path} is {len(value)} characters long, at most {limit} allowed")
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            errors.append(f"{path} = {value!r} is not one of {', '.join(enum)}")
        pattern = shape.metadata.get("pattern")
        compiled = _compiled(pattern) if pattern else None
        if compiled is not None and compiled.fullmatch(value) is None:
            errors.append(f"{path} = {value!r} does not match SageMaker's pattern {pattern}")
    elif kind in ("integer", "long") and isinstance(value, int):
        limit = shape.metadata.get("max")
        if limit is not None and value > limit:
            errors.append(f"{path} = {value} exceeds SageMaker's maximum {limit}")
    return errors


def _s3_uris(request: Mapping[str, Any]) -> list[tuple[str, str]]:
    found = [(f"InputDataConfig[{c['ChannelName']}]", c["DataSource"]["S3DataSource"]["S3Uri"])
             for c in request.get("InputDataConfig", [])]
    found.append(("OutputDataConfig.S3OutputPath", request.get("OutputDataConfig", {}).get("S3OutputPath", "")))
    found.append(("CheckpointConfig.S3Uri", request.get("CheckpointConfig", {}).get("S3Uri", "")))
    hyper = hyperparameters_of(request)
    for key in ("sagemaker_submit_directory", "root"):
        if key in hyper:
            try:
                found.append((f"HyperParameters[{key}]", str(json.loads(hyper[key]))))
            except ValueError:
                pass  # reported by the hyperparameter check
    return found


def _hyperparameter_errors(hyper: Mapping[str, Any]) -> list[str]:
    errors = []
    for key, raw in hyper.items():
        if not isinstance(raw, str):
            errors.append(f"hyperparameter {key} must be a JSON-encoded string, got {raw!r}")
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            errors.append(f"hyperparameter {key} = {raw!r} is not JSON")
            continue
        types = _HYPER_TYPES.get(key)
        if types is not None and (not isinstance(value, types) or isinstance(value, bool)):
            wanted = " or ".join("a number" if t is float else "an integer" if t is int else "a string"
                                 for t in types)
            errors.append(f"hyperparameter {key} must be {wanted}, got {value!r}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            errors.append(f"hyperparameter {key} must be positive, got {value!r}")
    task = hyper.get("task")
    if task is not None and task not in [json.dumps(t) for t in TASKS]:
        errors.append(f"hyperparameter task = {task} is not one of {', '.join(TASKS)}")
    if hyper.get("resume") not in (None, '"auto"', '"never"'):
        errors.append(f"hyperparameter resume = {hyper['resume']} must be \"auto\" or \"never\"")
    return errors


def validate_request(request: Mapping[str, Any], root: str) -> None:
    """Check ``request`` as SageMaker would, before anything is sent.

    Parameters
    ----------
    request : mapping
        From :func:`build_request` (or edited).
    root : str
        The configured S3 root; every S3 URI of the request must be inside it.

    Raises
    ------
    AwsError
        The first problem, in one line naming the field, the value and the rule.
    """
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    operation = _operation()
    errors = role_errors(request.get("RoleArn"))
    try:
        validate_parameters(dict(request), operation.input_shape)
    except ParamValidationError as exc:
        errors.append(f"invalid CreateTrainingJob request: {' '.join(str(exc).split())}")
    if errors:  # the rest reads the request's structure, which botocore has not vouched for
        raise AwsError("; ".join(errors))
    errors = _shape_errors(request, operation.input_shape, "CreateTrainingJob") + definition_errors(request, root)
    if errors:
        raise AwsError("; ".join(errors))


def role_errors(role: Any) -> list[str]:
    """A malformed execution role ARN, said before botocore (whose length rule says less)."""
    if isinstance(role, str) and not _ROLE_ARN.match(role):
        return [f"RoleArn {role!r} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>); "
                "fix aws.sagemaker_role in project.yaml or SAGEMAKER_ROLE"]
    return []


def hyperparameters_of(definition: Mapping[str, Any]) -> Mapping[str, Any]:
    """A training job's hyperparameters, or a tuning job definition's static ones."""
    return definition.get("HyperParameters", definition.get("StaticHyperParameters", {}))


def definition_errors(definition: Mapping[str, Any], root: str) -> list[str]:
    """What only we check in a training job (or tuning definition) that botocore has vouched for.

    The instance type, every S3 URI inside ``root``, max-wait >= max-run under
    managed spot, the hyperparameters' types, several instances only for one transformer.
    """
    from multitype.cloud import catalog

    resources = definition["ResourceConfig"]
    catalog.check_instance_type(resources["InstanceType"])
    errors = []
    inside = root.rstrip("/") + "/"
    for where, uri in _s3_uris(definition):
        if not (uri + "/").startswith(inside):
            errors.append(f"{where} = {uri!r} is outside the configured root {root.rstrip('/')}")
    stopping = definition["StoppingCondition"]
    if definition.get("EnableManagedSpotTraining"):
        wait = stopping.get("MaxWaitTimeInSeconds")
        if wait is None or wait < stopping["MaxRuntimeInSeconds"]:
            errors.append(f"managed spot needs max-wait >= max-run: got --max-wait {wait} < --max-run "
                          f"{stopping['MaxRuntimeInSeconds']}; raise --max-wait (aws.sagemaker.max_wait) or "
                          "pass --on-demand")
    elif "MaxWaitTimeInSeconds" in stopping:
        errors.append("MaxWaitTimeInSeconds is only allowed with managed spot training")
    hyper = hyperparameters_of(definition)
    errors += _hyperparameter_errors(hyper)
    if resources["InstanceCount"] > 1 and hyper.get("task") != json.dumps("transformer"):
        errors.append(f"--instance-count {resources['InstanceCount']} needs one transformer (--model-name); "
                      f"task {hyper.get('task')} runs on one instance")
    return errors


@functools.lru_cache(maxsize=None)
def operation_model(name: str, service: str = "sagemaker") -> Any:
    """botocore's model of one operation (``CreateModel``, ``CreateEndpointConfig``, ...)."""
    import botocore.session

    return botocore.session.get_session().get_service_model(service).operation_model(name)


def check_operation(name: str, request: Mapping[str, Any], service: str = "sagemaker") -> list[str]:
    """What SageMaker would refuse in ``request`` for operation ``name``, by botocore's service model.

    botocore's own parameter validation (types, required members, ranges), then
    what it leaves to the service: each string's ``pattern`` and ``max`` length,
    list and integer maxima. Returns one line per problem (empty: it passes).
    """
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    operation = operation_model(name, service)
    try:
        validate_parameters(dict(request), operation.input_shape)
    except ParamValidationError as exc:
        return [f"invalid {name} request: {' '.join(str(exc).split())}"]
    return _shape_errors(request, operation.input_shape, name)
