"""``multitype sagemaker deploy|invoke|undeploy|endpoints``: a model behind a SageMaker endpoint.

Route through :func:`deploy`: the flags are checked (real-time ``--instance-type``
or ``--serverless --memory-mb``, names inside SageMaker's pattern and the
``multitype-`` prefix the launcher IAM policy allows, the execution role, the
S3 root, the inference image from sagemaker-core's catalog) -> the three
requests (``CreateModel``, ``CreateEndpointConfig``, ``CreateEndpoint``) are
built and validated against botocore's service model
(:func:`multitype.cloud.sagemaker.request.check_operation`) -> the source is
found (:func:`model_source`: a local or ``s3://`` model folder, a slug under the
root's ``models/final``, or a Completed training job of this project, whose
``model.tar.gz`` is fetched and checked as ``sagemaker collect`` does) -> the
endpoint name must be free -> ``model.tar.gz`` is packed
(:mod:`.modelpack`) and uploaded to ``<root>/models/deploy/<model>/`` -> the
three requests are sent; when one fails, what was created is deleted again.
Nothing is uploaded or created before every check passed.

:func:`invoke` sends JSON to ``InvokeEndpoint`` and reads the answer of
:mod:`.inference`; :func:`undeploy` deletes the endpoint, its endpoint
configuration and its model(s), naming what was already gone.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from multitype import layout
from multitype.cloud import aws as cloud_aws
from multitype.cloud import catalog
from multitype.cloud.sagemaker import request as req
from multitype.config import AwsConfig
from multitype.errors import AwsError, ModelError
from multitype.project import Project
from multitype.storage import Storage, is_remote

PREFIX = "multitype-"              # every endpoint, endpoint config and model we make (the launcher policy's scope)
NAME_MAX = 63
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # EndpointName / ModelName / EndpointConfigName
DEFAULT_INSTANCE_TYPE = "ml.c5.xlarge"
SERVERLESS_MEMORY = tuple(range(1024, 6144 + 1, 1024))   # MemorySizeInMB: 1 to 6 GB in 1 GB steps
DEFAULT_MEMORY_MB = 3072
DEFAULT_MAX_CONCURRENCY = 5
VARIANT = "AllTraffic"
MODEL_DIR = "/opt/ml/model"
LOG_LEVEL = 20
MAX_PAYLOAD = 6 * 2**20            # InvokeEndpoint's body limit (real-time; serverless: 4 MB)
WAIT_SECONDS = 1800.0
ENDPOINT_DONE = ("InService", "Failed", "OutOfService")


@dataclass
class DeployOptions:
    """The flags of ``sagemaker deploy`` (None: the default)."""

    source: str
    endpoint_name: str | None = None
    instance_type: str | None = None
    instance_count: int = 1
    serverless: bool = False
    memory_mb: int | None = None
    max_concurrency: int | None = None
    image_uri: str | None = None
    role: str | None = None
    remote: str | None = None
    dry_run: bool = False


@dataclass
class Deployed:
    """What :func:`deploy` did (or, with ``dry_run``, would do)."""

    endpoint_name: str
    model_name: str
    config_name: str
    model_data_url: str
    source: str
    requests: dict[str, dict[str, Any]]
    archive_bytes: int | None = None
    archive_members: tuple[str, ...] = ()
    seconds: float = 0.0
    created: list[str] = field(default_factory=list)


# --- names --------------------------------------------------------------------------------------
def check_name(name: str, what: str = "--endpoint-name") -> str:
    """``name`` if SageMaker takes it and the launcher policy covers it (``multitype-`` first), else AwsError."""
    if len(name) > NAME_MAX:
        raise AwsError(f"{what} {name!r} has {len(name)} characters; SageMaker allows at most {NAME_MAX}")
    if not _NAME.match(name):
        raise AwsError(f"{what} {name!r} is not a SageMaker name: letters, digits and hyphens, starting and "
                       "ending with a letter or digit")
    if not name.startswith(PREFIX):
        raise AwsError(f"{what} {name!r} must start with '{PREFIX}' (the launcher IAM policy of 'multitype iam "
                       "policy launcher' allows only such endpoints)")
    return name


def endpoint_name_for(slug: str) -> str:
    """``multitype-<slug>`` reduced to SageMaker's name rules (letters, digits, single hyphens, 63 characters)."""
    clean = re.sub(r"[^a-zA-Z0-9]+", "-", slug).strip("-") or "model"
    return f"{PREFIX}{clean}"[:NAME_MAX].rstrip("-")


def versioned_name(endpoint: str, now: float | None = None) -> str:
    """``<endpoint>-<UTC yyyymmdd-hhmmss>`` cut to fit: the model's and the endpoint config's name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{endpoint[:NAME_MAX - len(stamp) - 1].rstrip('-')}-{stamp}"


# --- requests -----------------------------------------------------------------------------------
def container_environment(region: str) -> dict[str, str]:
    """The inference container's environment for a ``model.tar.gz`` of :mod:`.modelpack` (also the registry's)."""
    return {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": f"{MODEL_DIR}/code",
            "SAGEMAKER_REGION": region, "SAGEMAKER_CONTAINER_LOG_LEVEL": str(LOG_LEVEL)}


def build_requests(*, endpoint_name: str, model_name: str, config_name: str, image_uri: str, model_data_url: str,
                   role_arn: str, region: str, tags: dict[str, str], instance_type: str | None,
                   instance_count: int, memory_mb: int | None, max_concurrency: int | None
                   ) -> dict[str, dict[str, Any]]:
    """The ``CreateModel``, ``CreateEndpointConfig`` and ``CreateEndpoint`` parameters (serverless without
    ``instance_type``)."""
    tag_list = [{"Key": key, "Value": value} for key, value in tags.items()]
    variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": model_name}
    if instance_type is None:
        variant["ServerlessConfig"] = {"MemorySizeInMB": int(memory_mb or DEFAULT_MEMORY_MB),
                                       "MaxConcurrency": int(max_concurrency or DEFAULT_MAX_CONCURRENCY)}
    else:
        variant.update({"InstanceType": instance_type, "InitialInstanceCount": int(instance_count),
                        "InitialVariantWeight": 1.0})
    return {
        "CreateModel": {
            "ModelName": model_name,
            "PrimaryContainer": {"Image": image_uri, "ModelDataUrl": model_data_url,
                                 "Environment": container_environment(region)},
            "ExecutionRoleArn": role_arn,
            "Tags": tag_list,
        },
        "CreateEndpointConfig": {"EndpointConfigName": config_name, "ProductionVariants": [variant],
                                 "Tags": tag_list},
        "CreateEndpoint": {"EndpointName": endpoint_name, "EndpointConfigName": config_name, "Tags": tag_list},
    }


def validate_requests(requests: dict[str, dict[str, Any]], root: str) -> None:
    """Check the three requests as SageMaker would (botocore's service model) and against our own rules.

    Raises
    ------
    AwsError
        Every problem found, in one line.
    """
    errors: list[str] = []
    role = requests["CreateModel"].get("ExecutionRoleArn")
    if isinstance(role, str) and not req._ROLE_ARN.match(role):
        errors.append(f"the execution role {role!r} is not an IAM role ARN (arn:aws:iam::<12-digit account>:"
                      "role/<name>); fix aws.sagemaker_role in project.yaml, SAGEMAKER_ROLE or --role")
    for operation, params in requests.items():
        errors += req.check_operation(operation, params)
    url = requests["CreateModel"]["PrimaryContainer"]["ModelDataUrl"]
    if not url.startswith(root.rstrip("/") + "/"):
        errors.append(f"ModelDataUrl {url!r} is outside the configured root {root}")
    if errors:
        raise AwsError("; ".join(errors))


def _tags(project: Project, slug: str) -> dict[str, str]:
    tags = {"multitype:project": project.configs.project.name, "multitype:task": "endpoint",
            "multitype:model": slug}
    return {**{k: v[:256] for k, v in tags.items()}, **project.configs.project.aws.tags}


def _variant(opts: DeployOptions) -> tuple[str | None, int | None, int | None]:
    """(instance type or None for serverless, memory MB, max concurrency), the flag combinations checked."""
    if opts.serverless:
        if opts.instance_type is not None:
            raise AwsError("pass either --instance-type (a real-time endpoint) or --serverless, not both")
        if opts.instance_count != 1:
            raise AwsError("--instance-count is for real-time endpoints; a serverless one scales by itself "
                           "(--max-concurrency)")
        memory = DEFAULT_MEMORY_MB if opts.memory_mb is None else opts.memory_mb
        if memory not in SERVERLESS_MEMORY:
            raise AwsError(f"--memory-mb {memory} is not a serverless memory size; use one of "
                           f"{', '.join(map(str, SERVERLESS_MEMORY))}")
        concurrency = DEFAULT_MAX_CONCURRENCY if opts.max_concurrency is None else opts.max_concurrency
        if not 1 <= concurrency <= 200:
            raise AwsError(f"--max-concurrency {concurrency} must be between 1 and 200")
        return None, memory, concurrency
    if opts.memory_mb is not None or opts.max_concurrency is not None:
        flag = "--memory-mb" if opts.memory_mb is not None else "--max-concurrency"
        raise AwsError(f"{flag} is for serverless endpoints; add --serverless (and drop --instance-type)")
    if opts.instance_count < 1:
        raise AwsError(f"--instance-count must be at least 1, got {opts.instance_count}")
    return catalog.check_hosting_instance_type(opts.instance_type or DEFAULT_INSTANCE_TYPE), None, None


def inference_image(region: str, instance_type: str | None, image_uri: str | None) -> catalog.TrainingImage:
    """The AWS PyTorch inference image (CPU for serverless and CPU types, GPU for GPU types), or ``image_uri``."""
    from multitype.cloud.sagemaker.sourcedir import torch_specifier

    specifier = torch_specifier()
    if image_uri:
        image = catalog.image_from_uri(image_uri)
    else:
        image = catalog.pytorch_image(region, instance_type or DEFAULT_INSTANCE_TYPE, specifier, scope="inference")
    if image.torch_version is not None:
        catalog.check_torch(image, specifier)
    return image


# --- the model to deploy ------------------------------------------------------------------------
def _job_model(project: Project, aws: AwsConfig, job_name: str, tmp: Path) -> tuple[Path, str, str]:
    """(folder, slug, archive URL) of the one model a Completed training job left in its model.tar.gz."""
    from multitype.cloud.sagemaker import collect, jobs

    desc = jobs.describe(aws, job_name)
    if desc.get("TrainingJobStatus") != "Completed":
        raise AwsError(f"training job {job_name} is {desc.get('TrainingJobStatus')}, not Completed: it has no "
                       f"model to deploy (see 'multitype sagemaker status {job_name}')")
    endpoint_url = project.storage.endpoint_url
    remote = Storage(collect.job_root(desc), endpoint_url=endpoint_url, profile=aws.profile)
    key = collect.result_key(job_name)
    if not remote.exists(key):
        raise AwsError(f"{remote.url(key)} not found: training job {job_name} wrote no result.json, so which "
                       "model it made is unknown")
    _, models = collect._check_result(remote.read_json(key), remote.url(key))
    with_model = {slug: info for slug, info in models.items() if info.get("model_dir") is not None}
    if len(with_model) != 1:
        names = ", ".join(sorted(with_model)) or "none"
        raise AwsError(f"training job {job_name} saved {len(with_model)} models ({names}); collect it "
                       f"('multitype sagemaker collect {job_name}') and deploy one of them by name")
    slug, info = next(iter(with_model.items()))
    url = collect.fetch_job_model(job_name, desc, tmp / "job-model", aws, endpoint_url, "deploy")
    model_dir = tmp / "job-model" / str(info["model_dir"]).strip("/")
    if not model_dir.is_dir():
        raise AwsError(f"{url} has no folder {info['model_dir']!r} for model {slug}")
    return model_dir, slug, url


@contextlib.contextmanager
def model_source(project: Project, source: str, aws: AwsConfig,
                 echo: Callable[[str], None] = print) -> Iterator[tuple[Path, str, str]]:
    """A local folder with the model ``source`` names, its slug and where it came from.

    ``source`` is, in this order: a registry version (``registry:NAME[:VERSION]``, slug NAME, the
    version named on ``echo``); an ``s3://`` model folder; a local model
    folder; a name under the root's ``models/final``; a training job of this
    project (``multitype-...``), whose single saved model is taken from its
    ``model.tar.gz``. Remote ones are copied to a temporary folder, removed afterwards.

    Raises
    ------
    ModelError
        None of these exists (the message names what was looked at).
    """
    with tempfile.TemporaryDirectory(prefix="multitype-deploy-") as tmp:
        if source.startswith("registry:"):
            from multitype.predict import model_place
            from multitype.registry import parse_ref

            place = model_place(project, source, echo)
            with place.storage.local_dir(place.key) as folder:
                yield folder, parse_ref(source)[0], place.url()
            return
        if is_remote(source):
            storage = Storage(source.rstrip("/"), endpoint_url=project.storage.endpoint_url, profile=aws.profile)
            if not storage.isdir(""):
                raise ModelError(f"model folder {source} not found; check the URL (models/final/<name> under a root)")
            yield storage.get_dir("", Path(tmp) / "model"), Path(source.rstrip("/")).name, source
            return
        local = Path(source).expanduser()
        if local.is_dir():
            yield local, local.resolve().name, str(local)
            return
        key = layout.final_model(source)
        if "/" not in source and source not in ("", ".", "..") and project.storage.isdir(key):
            with project.storage.local_dir(key) as folder:
                yield folder, source, project.storage.url(key)
            return
        if source.startswith(PREFIX) and _NAME.match(source):
            yield _job_model(project, aws, source, Path(tmp))
            return
        raise ModelError(f"unknown model {source!r}: no folder {local}, no {project.storage.url(key)}, and not a "
                         f"training job name ({PREFIX}...); pass a model folder, an s3:// URL, a name under "
                         "models/final or a training job of this project")


# --- deploy -------------------------------------------------------------------------------------
def describe_endpoint(aws: AwsConfig, name: str) -> dict[str, Any] | None:
    """DescribeEndpoint, or None when there is no such endpoint."""
    return _describe(aws, "describe_endpoint", "EndpointName", name, f"describe the endpoint {name}")


def _describe(aws: AwsConfig, method: str, field_name: str, name: str, action: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        with cloud_aws.aws_errors(action, aws):
            return dict(getattr(cloud_aws.client("sagemaker", aws), method)(**{field_name: name}))
    except (ClientError, AwsError) as exc:
        if _missing(exc):
            return None
        raise


def _missing(exc: BaseException) -> bool:
    """SageMaker's answer for a name it does not know (ValidationException "Could not find ..." / "not found")."""
    text = str(exc).lower()
    return ("validation" in text or "notfound" in text) and ("could not find" in text or "not found" in text
                                                             or "does not exist" in text)


def _rollback(client: Any, created: list[tuple[str, str]], echo: Callable[[str], None]) -> None:
    """Delete what a failed deploy created, newest first (best effort: each failure is reported, not raised)."""
    for kind, name in reversed(created):
        try:
            getattr(client, f"delete_{kind}")(**{_FIELDS[kind]: name})
            echo(f"deleted the {kind.replace('_', ' ')} {name} again")
        except Exception as exc:  # noqa: BLE001 - the original error is the one to raise
            echo(f"warning: could not delete the {kind.replace('_', ' ')} {name} ({exc}); delete it by hand")


_FIELDS = {"model": "ModelName", "endpoint_config": "EndpointConfigName", "endpoint": "EndpointName"}


def deploy(project: Project, opts: DeployOptions, echo: Callable[[str], None] = print) -> Deployed:
    """Package a model, upload it under the root and create the SageMaker model, endpoint config and endpoint.

    Parameters
    ----------
    project : Project
        The opened project.
    opts : DeployOptions
        The flags.
    echo : callable
        Progress lines (stderr in the CLI).

    Returns
    -------
    Deployed
        The names, the three requests and what was created (nothing with ``dry_run``).

    Raises
    ------
    AwsError
        A bad flag or name, no role or S3 root, an invalid request, an endpoint of that
        name already there, or AWS refused (what was created is deleted again).
    ModelError
        The source is no model.
    """
    start = time.perf_counter()
    aws = project.configs.project.aws
    from multitype.cloud.sagemaker.launch import execution_role, local_folder, remote_root

    instance_type, memory, concurrency = _variant(opts)
    if opts.endpoint_name is not None:
        check_name(opts.endpoint_name)
    role = execution_role(opts.role, aws.sagemaker_role)
    root = remote_root(project, opts.remote, "the endpoint's model")
    image = inference_image(aws.region, instance_type, opts.image_uri)
    with model_source(project, opts.source, aws, echo) as (folder, slug, origin):
        from multitype.cloud.sagemaker.modelpack import model_files

        model_files(folder)  # a model folder, before any name is sent anywhere
        endpoint = opts.endpoint_name or endpoint_name_for(slug)
        check_name(endpoint)
        version = versioned_name(endpoint)
        url = f"{root.rstrip('/')}/{layout.deployed_model(version)}"
        requests = build_requests(endpoint_name=endpoint, model_name=version, config_name=version,
                                  image_uri=image.uri, model_data_url=url, role_arn=role, region=aws.region,
                                  tags=_tags(project, slug), instance_type=instance_type,
                                  instance_count=opts.instance_count, memory_mb=memory, max_concurrency=concurrency)
        validate_requests(requests, root)
        if image.torch_version is None:
            echo(f"warning: cannot tell the torch version of the image {image.uri}; code/requirements.txt does not "
                 "pin torch, so make sure the image has one in multitype's range")
        result = Deployed(endpoint, version, version, url, origin, requests)
        if opts.dry_run:
            result.seconds = time.perf_counter() - start
            return result
        cloud_aws.check_credentials(aws)
        existing = describe_endpoint(aws, endpoint)
        if existing is not None:
            raise AwsError(f"endpoint {endpoint} already exists ({existing.get('EndpointStatus')}); remove it "
                           f"with 'multitype sagemaker undeploy {endpoint}' or pass another --endpoint-name")

        from multitype.cloud.sagemaker.modelpack import build_model_archive

        with tempfile.TemporaryDirectory(prefix="multitype-deploy-") as tmp:
            archive = build_model_archive(folder, Path(tmp) / "model.tar.gz", image.torch_version,
                                          local_folder(project))
            echo(f"model.tar.gz: {archive.size / 2**20:.1f} MiB, {len(archive.members)} files; uploading to {url}")
            Storage(root, endpoint_url=project.storage.endpoint_url, profile=aws.profile).put_file(
                archive.path, layout.deployed_model(version))
        result.archive_bytes, result.archive_members = archive.size, archive.members

    client = cloud_aws.client("sagemaker", aws, max_attempts=1)  # a create is not retried blindly
    created: list[tuple[str, str]] = []
    steps = (("model", "create_model", "CreateModel", version), ("endpoint_config", "create_endpoint_config",
             "CreateEndpointConfig", version), ("endpoint", "create_endpoint", "CreateEndpoint", endpoint))
    for kind, method, operation, name in steps:
        try:
            with cloud_aws.aws_errors(f"create the {kind.replace('_', ' ')} {name}", aws):
                getattr(client, method)(**requests[operation])
        except BaseException:
            _rollback(client, created, echo)
            raise
        created.append((kind, name))
        result.created.append(f"{kind}:{name}")
    result.seconds = time.perf_counter() - start
    echo(f"created the model, endpoint config {version} and endpoint {endpoint} "
         f"({'serverless, ' + str(memory) + ' MB' if instance_type is None else f'{instance_type} x{opts.instance_count}'}, "
         f"image {image.uri})")
    return result


def wait(aws: AwsConfig, endpoint: str, poll_seconds: float = 30.0, max_seconds: float = WAIT_SECONDS,
         echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Poll DescribeEndpoint until the endpoint is InService (returned) or Failed/OutOfService (AwsError).

    Raises
    ------
    AwsError
        No such endpoint, it failed (FailureReason named), or still not ready after ``max_seconds``.
    """
    deadline = time.monotonic() + max_seconds
    last = None
    while True:
        desc = describe_endpoint(aws, endpoint)
        if desc is None:
            raise AwsError(f"no SageMaker endpoint named {endpoint!r} in {aws.region}")
        status = desc.get("EndpointStatus")
        if status != last:
            echo(f"[{endpoint}] {status}")
            last = status
        if status == "InService":
            return desc
        if status in ENDPOINT_DONE:
            reason = str(desc.get("FailureReason") or "no reason given").rstrip(". ")
            raise AwsError(f"endpoint {endpoint} is {status}: {reason}; "
                           f"see its CloudWatch logs (/aws/sagemaker/Endpoints/{endpoint}), then "
                           f"'multitype sagemaker undeploy {endpoint}'")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AwsError(f"endpoint {endpoint} is still {status} after {max_seconds:.0f} s; it keeps starting: "
                           "check it with 'multitype sagemaker endpoints'")
        time.sleep(max(min(poll_seconds, remaining), 0.0))


# --- invoke -------------------------------------------------------------------------------------
def invoke(aws: AwsConfig, endpoint: str, texts: list[str]) -> dict[str, Any]:
    """Classify ``texts`` with the endpoint (InvokeEndpoint, JSON in and out); returns the parsed answer.

    Raises
    ------
    AwsError
        A bad endpoint name, no texts, a body over the limit, no such endpoint, or
        the model answered an error (its status and message named).
    """
    from botocore.exceptions import ClientError

    check_name(endpoint, "ENDPOINT")
    if not texts:
        raise AwsError("nothing to classify: pass --text TEXT (repeatable) or --file FILE (one text per line)")
    body = json.dumps({"texts": texts}).encode("utf-8")
    if len(body) > MAX_PAYLOAD:
        raise AwsError(f"the request has {len(body):,} bytes; InvokeEndpoint takes at most {MAX_PAYLOAD:,}: "
                       "send fewer texts per call")
    action = f"invoke the endpoint {endpoint}"
    try:
        with cloud_aws.aws_errors(action, aws):
            answer = cloud_aws.client("sagemaker-runtime", aws).invoke_endpoint(
                EndpointName=endpoint, Body=body, ContentType="application/json", Accept="application/json")
            raw = answer["Body"].read()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if cloud_aws.error_code(exc) == "ModelError":  # the container answered an error status
            original = exc.response.get("OriginalStatusCode") or "an error"
            detail = exc.response.get("OriginalMessage") or error.get("Message", "")
            raise AwsError(f"cannot {action}: the model answered {original}: {' '.join(str(detail).split())}") \
                from None
        if cloud_aws.error_code(exc) in ("ValidationError", "ValidationException"):
            raise AwsError(f"cannot {action}: {error.get('Message', '')}; see 'multitype sagemaker endpoints'") \
                from None
        raise
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AwsError(f"endpoint {endpoint} answered something that is not JSON ({raw[:80]!r}); is it a "
                       "multitype endpoint?") from None
    if not isinstance(data, dict) or not isinstance(data.get("labels"), list) or len(data["labels"]) != len(texts):
        raise AwsError(f"endpoint {endpoint} answered JSON without one label per text ({str(data)[:120]}); is it a "
                       "multitype endpoint?")
    return data


# --- undeploy -----------------------------------------------------------------------------------
@dataclass
class Plan:
    """What :func:`undeploy` deletes: (kind, name) in order, and what was already gone."""

    delete: list[tuple[str, str]]
    missing: list[str]


def undeploy_plan(aws: AwsConfig, endpoint: str) -> Plan:
    """The endpoint, its endpoint config and its model(s), as they are now.

    Raises
    ------
    AwsError
        A bad name, or no endpoint of that name.
    """
    check_name(endpoint, "ENDPOINT")
    desc = describe_endpoint(aws, endpoint)
    if desc is None:
        raise AwsError(f"no SageMaker endpoint named {endpoint!r} in {aws.region}; nothing was deleted (see "
                       "'multitype sagemaker endpoints')")
    plan = Plan([("endpoint", endpoint)], [])
    config = desc.get("EndpointConfigName")
    if not config:
        return plan
    conf = _describe(aws, "describe_endpoint_config", "EndpointConfigName", config,
                     f"describe the endpoint config {config}")
    if conf is None:
        plan.missing.append(f"endpoint config {config}")
        return plan
    plan.delete.append(("endpoint_config", config))
    for name in dict.fromkeys(v["ModelName"] for v in conf.get("ProductionVariants", []) if v.get("ModelName")):
        plan.delete.append(("model", name))
    return plan


def undeploy(aws: AwsConfig, plan: Plan, echo: Callable[[str], None] = print) -> list[str]:
    """Delete what ``plan`` names; a resource already gone is named and skipped. Returns what was deleted."""
    from botocore.exceptions import ClientError

    client = cloud_aws.client("sagemaker", aws)
    deleted = []
    for what in plan.missing:
        echo(f"{what}: already gone")
    for kind, name in plan.delete:
        what = f"{kind.replace('_', ' ')} {name}"
        try:
            with cloud_aws.aws_errors(f"delete the {what}", aws):
                getattr(client, f"delete_{kind}")(**{_FIELDS[kind]: name})
        except (ClientError, AwsError) as exc:
            if not _missing(exc):
                raise
            plan.missing.append(what)
            echo(f"{what}: already gone")
            continue
        deleted.append(what)
        echo(f"deleted the {what}")
    return deleted


# --- list ---------------------------------------------------------------------------------------
def list_endpoints(aws: AwsConfig, all_endpoints: bool = False) -> list[dict[str, Any]]:
    """Endpoints, newest first (``multitype-...`` ones unless ``all_endpoints``): name, status, created."""
    kwargs: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Descending"}
    if not all_endpoints:
        kwargs["NameContains"] = PREFIX
    rows = []
    with cloud_aws.aws_errors("list the endpoints", aws):
        for page in cloud_aws.client("sagemaker", aws).get_paginator("list_endpoints").paginate(**kwargs):
            for item in page.get("Endpoints", []):
                if all_endpoints or item["EndpointName"].startswith(PREFIX):
                    created = item.get("CreationTime")
                    rows.append({"endpoint": item["EndpointName"], "status": item.get("EndpointStatus"),
                                 "created": created.isoformat() if hasattr(created, "isoformat") else created})
    return rows
