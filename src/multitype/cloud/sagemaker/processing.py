"""``multitype sagemaker prepare``: ``multitype prepare`` as a SageMaker Processing job, for data a laptop cannot hold.

The route through :func:`start_prepare`, in order, so that bad input costs nothing:

1. settings: the instance type (botocore's ``ProcessingInstanceType`` enum, nearest
   names suggested), the execution role and the S3 root (as ``sagemaker launch``
   resolves them), the image (the training jobs' image, from the same catalog);
2. the raw data: ``--input``, else ``input`` in data_config.yaml, else the root's
   ``data/raw/raw_data.json``; it must be an object or folder under the root
   (the job's role reads only the root);
3. credentials (not for ``--dry-run``); the sourcedir is packed (the training
   jobs' ``sourcedir.tar.gz``, same content hash and key) and the
   ``CreateProcessingJob`` request built and validated with botocore's service
   model; the cost bound (on-demand price x ``--max-run``) against the budget;
   ``--dry-run`` stops here;
4. the configs and the sourcedir are pushed, ``CreateProcessingJob`` sent once,
   and the launch recorded under ``runs/sagemaker-processing/<job>.json``.

Inside the container (``AppSpecification``): ``/bin/sh -c`` unpacks the sourcedir,
``pip install -r requirements.txt`` (what the training toolkit does for a training
job) and runs :mod:`multitype.cloud.sagemaker.process_entry` on
``/opt/ml/processing/input`` -> ``/opt/ml/processing/output``; SageMaker uploads
the output folder to the root at the end of the job, in the layout a local
``prepare`` writes (``data/raw``, ``data/processed``, ``figures/data``, ``runs/<run-id>``).
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from multitype import layout
from multitype.cloud import aws as cloud_aws
from multitype.cloud import catalog
from multitype.cloud.sagemaker import records
from multitype.cloud.sagemaker import request as req
from multitype.errors import AwsError, DataError
from multitype.project import Project
from multitype.storage import Storage

BASE = "/opt/ml/processing"
CODE_DIR = f"{BASE}/input/code"
CONFIGS_DIR = f"{BASE}/input/configs"
RAW_DIR = f"{BASE}/input/raw"
CURRENT_DIR = f"{BASE}/input/current"  # the root's raw copy, so that 'differs' is caught as locally
OUTPUT_DIR = f"{BASE}/output"
DEFAULT_INSTANCE_TYPE = "ml.m5.4xlarge"
DEFAULT_MAX_RUN = 4 * 3600
ENTRY_MODULE = "multitype.cloud.sagemaker.process_entry"


@dataclass
class PrepareOptions:
    """What ``multitype sagemaker prepare`` was asked for; None: the project's default."""

    instance_type: str | None = None
    volume_gb: int | None = None
    max_run: int | None = None
    image_uri: str | None = None
    role: str | None = None
    remote: str | None = None
    input: str | None = None
    force: bool = False          # replace a differing raw copy (prepare --force); start over the budget
    budget: float | None = None
    dry_run: bool = False


@dataclass
class PrepareJob:
    """The job: its name, request and (unless a dry run) its record."""

    job_name: str
    request: dict[str, Any]
    console_url: str
    sourcedir_bytes: int = 0
    uploaded: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    estimate_usd: float | None = None


def console_url(region: str, job_name: str) -> str:
    """The AWS console page of a processing job."""
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/processing-jobs/{job_name}"


def container_command(sourcedir_name: str, base: str = BASE) -> list[str]:
    """``AppSpecification.ContainerEntrypoint``: unpack the sourcedir, install its requirements, run the entry.

    SageMaker appends ``ContainerArguments``: the shell takes the first as ``$0``,
    so the entry point gets them all as ``"$0" "$@"``.
    """
    code = f"{base}/input/code"
    script = (f"set -e; cd {code}; tar -xzf {sourcedir_name}; python3 -m pip install -q -r requirements.txt; "
              f'export PYTHONPATH=$PWD/src; exec python3 -m {ENTRY_MODULE} "$0" "$@"')
    return ["/bin/sh", "-c", script]


@dataclass(frozen=True)
class RawInput:
    """Where the job's raw data comes from: its S3 URI, and the name the entry point reads it under."""

    uri: str            # s3://bucket/prefix/<key> (a file) or .../<folder>/ (a folder of <label>/*.txt)
    name: str           # the file's name under RAW_DIR, "" for a folder
    is_raw_copy: bool   # it is the root's data/raw/raw_data.json itself


def raw_input(project: Project, root: str, given: str | None) -> RawInput:
    """The raw data of the job: ``given`` (--input), ``input`` in data_config.yaml, else the root's raw copy.

    Raises
    ------
    DataError
        A local input (the job reads S3), one outside the root (its role reads
        only the root), or nothing there.
    """
    target = _root_storage(project, root)
    location = given or project.configs.data.input
    if location is None:
        if not target.exists(layout.RAW_DATA):
            raise DataError(f"no raw data in the root: {root}/{layout.RAW_DATA} is missing and data_config.yaml names "
                            f"no input; upload the data under {root}/data/raw/ and pass --input "
                            f"{root}/data/raw/<file>, or run 'multitype prepare' here once")
        return RawInput(f"{root}/{layout.RAW_DATA}", posixpath.basename(layout.RAW_DATA), True)
    if not location.startswith("s3://"):
        raise DataError(f"input {location!r} is not on S3, and a Processing job reads only S3: upload it under the "
                        f"root (e.g. {root}/data/raw/{posixpath.basename(location.rstrip('/')) or 'input'}) and pass that "
                        "URL with --input (or as input: in data_config.yaml)")
    inside = root.rstrip("/") + "/"
    if not location.startswith(inside):
        raise DataError(f"input {location} is outside the root {root}: the job's role reads only the root; copy it "
                        f"under {root}/data/raw/ and pass that URL with --input")
    key = location[len(inside):].rstrip("/")
    if not key or not target.exists(key):
        raise DataError(f"no raw data in the root: {location} not found; upload it there or fix --input "
                        "(or input: in data_config.yaml)")
    if target.isdir(key):
        return RawInput(f"{root}/{key}/", "", False)
    return RawInput(f"{root}/{key}", posixpath.basename(key), key == layout.RAW_DATA)


def _root_storage(project: Project, root: str) -> Storage:
    cfg = project.configs.project
    return Storage(root, endpoint_url=cfg.storage.endpoint_url, profile=cfg.aws.profile)


def _s3_input(name: str, uri: str, local: str) -> dict[str, Any]:
    return {"InputName": name, "AppManaged": False,
            "S3Input": {"S3Uri": uri, "LocalPath": local, "S3DataType": "S3Prefix", "S3InputMode": "File",
                        "S3DataDistributionType": "FullyReplicated", "S3CompressionType": "None"}}


def build_request(*, name: str, image_uri: str, role_arn: str, root: str, sourcedir_uri: str,
                  raw: RawInput, current: bool, force: bool, instance_type: str, volume_gb: int, max_run: int,
                  tags: dict[str, str]) -> dict[str, Any]:
    """The ``CreateProcessingJob`` parameters (a plain dict, as botocore takes them).

    Inputs: ``code`` (the sourcedir), ``configs`` (``<root>/configs/``), ``raw``
    (the raw data) and, when the root has a raw copy that is not the input,
    ``current`` (that copy, so a differing input needs ``--force`` as locally).
    One output: the working root ``/opt/ml/processing/output`` -> ``<root>``,
    uploaded at the end of the job.
    """
    root = root.rstrip("/")
    inputs = [_s3_input("code", sourcedir_uri, CODE_DIR),
              _s3_input("configs", f"{root}/{layout.CONFIGS}/", CONFIGS_DIR),
              _s3_input("raw", raw.uri, RAW_DIR)]
    arguments = ["prepare", "--input-name", raw.name or "."]
    if current and not raw.is_raw_copy:
        inputs.append(_s3_input("current", f"{root}/{layout.RAW_DATA}", CURRENT_DIR))
        arguments += ["--current", f"{CURRENT_DIR}/{posixpath.basename(layout.RAW_DATA)}"]
    elif raw.is_raw_copy:
        arguments += ["--current", f"{RAW_DIR}/{raw.name}"]
    if force:
        arguments.append("--force")
    return {
        "ProcessingJobName": name,
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {"Outputs": [
            {"OutputName": "root", "AppManaged": False,
             "S3Output": {"S3Uri": root, "LocalPath": OUTPUT_DIR, "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": instance_type,
                                                  "VolumeSizeInGB": int(volume_gb)}},
        "StoppingCondition": {"MaxRuntimeInSeconds": int(max_run)},
        "AppSpecification": {"ImageUri": image_uri,
                             "ContainerEntrypoint": container_command(posixpath.basename(sourcedir_uri)),
                             "ContainerArguments": arguments},
        "Environment": {"PYTHONUNBUFFERED": "1"},  # log lines reach CloudWatch as they are printed
        "RoleArn": role_arn,
        "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
    }


def validate_request(request: dict[str, Any], root: str) -> None:
    """Check ``request`` as SageMaker would (botocore's model of CreateProcessingJob), and what only we know.

    Raises
    ------
    AwsError
        Every problem, in one line: the role ARN, the model's types, patterns and
        lengths, the instance type, an S3 URI outside the root.
    """
    errors = []
    role = request.get("RoleArn")
    if isinstance(role, str) and not req._ROLE_ARN.match(role):
        errors.append(f"RoleArn {role!r} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>); "
                      "fix aws.sagemaker_role in project.yaml or SAGEMAKER_ROLE")
    errors += req.check_operation("CreateProcessingJob", request)
    if errors:
        raise AwsError("; ".join(errors))
    catalog.check_processing_instance_type(request["ProcessingResources"]["ClusterConfig"]["InstanceType"])
    inside = root.rstrip("/") + "/"
    uris = [(f"ProcessingInputs[{i['InputName']}]", i["S3Input"]["S3Uri"]) for i in request["ProcessingInputs"]]
    uris += [(f"ProcessingOutputConfig.Outputs[{o['OutputName']}]", o["S3Output"]["S3Uri"])
             for o in request["ProcessingOutputConfig"]["Outputs"]]
    errors += [f"{where} = {uri!r} is outside the configured root {root.rstrip('/')}"
               for where, uri in uris if not (uri + "/").startswith(inside)]
    if errors:
        raise AwsError("; ".join(errors))


def _estimate(instance_type: str, max_run: int, budget: float | None, force: bool,
              echo: Callable[[str], None]) -> float | None:
    """The most the job can cost (on-demand price x max-run, plus start-up), checked against the budget."""
    from multitype.cloud import cost
    from multitype.cloud.prices import load_catalog

    cost.check_budget(0.0, budget, force=force, what="")  # a budget of 0 or below: named before any estimate
    prices = load_catalog()
    spec = prices.instance(instance_type)
    if spec is None:
        cost.check_unpriced(instance_type, budget, force=force, catalog=prices, echo=echo)
        return None
    hours = max_run / 3600 + prices.startup_hours(instance_type)
    usd = spec.on_demand_usd_hour * hours
    if budget is not None and usd > budget and not force:
        raise cost.OverBudget(f"the SageMaker Processing job on {instance_type} may cost up to {cost.money(usd)} "
                              f"(--max-run {cost.duration(max_run / 3600)}), over the budget of {cost.money(budget)} "
                              "(--budget or aws.budget_usd in project.yaml), so it was not started; pass --force to "
                              "start it anyway, or a lower --max-run or a cheaper --instance-type")
    echo(f"estimate: at most {cost.money(usd)} ({instance_type} on-demand at {cost.money(spec.on_demand_usd_hour)}/h "
         f"for --max-run {cost.duration(max_run / 3600)} plus start-up; the catalog's price of {prices.date})")
    return usd


def start_prepare(project: Project, opts: PrepareOptions, config_dir: str = "configs",
                  echo: Callable[[str], None] = print) -> PrepareJob:
    """Check everything, push the configs and code, and start the processing job (see the module's route).

    Raises
    ------
    AwsError
        A setting, the catalog, credentials, the request or AWS refused it (one line).
    DataError
        No raw data in the root, or an input the job cannot read.
    """
    from multitype.cloud.sagemaker import launch

    aws = project.configs.project.aws
    sm = aws.sagemaker
    instance_type = catalog.check_processing_instance_type(opts.instance_type or DEFAULT_INSTANCE_TYPE)
    role = launch.execution_role(opts.role, aws.sagemaker_role)
    root = launch.remote_root(project, opts.remote, "the processing job")
    image = launch.training_image(opts.image_uri, aws.region, instance_type, sm.image_uri, echo)
    account = None if opts.dry_run else cloud_aws.caller_account(aws)
    raw = raw_input(project, root, opts.input)
    current = not raw.is_raw_copy and _root_storage(project, root).exists(layout.RAW_DATA)

    from multitype.cloud.sagemaker.sourcedir import build_sourcedir

    local = launch.local_folder(project)
    sourcedir = build_sourcedir(local)
    sourcedir_uri = f"{root}/{sourcedir.key}"
    name = req.job_name("prepare", time.time())
    max_run = opts.max_run or DEFAULT_MAX_RUN
    tags = {"multitype:project": project.configs.project.name[:256], "multitype:task": "prepare",
            **aws.tags}
    request = build_request(name=name, image_uri=image.uri, role_arn=role, root=root, sourcedir_uri=sourcedir_uri,
                            raw=raw, current=current, force=opts.force, instance_type=instance_type,
                            volume_gb=opts.volume_gb or sm.volume_gb, max_run=max_run, tags=tags)
    validate_request(request, root)
    job = PrepareJob(name, request, console_url(aws.region, name), sourcedir.size)
    # after validation, so a malformed request is named first; before any upload, so a refusal leaves nothing
    job.estimate_usd = _estimate(instance_type, max_run, opts.budget if opts.budget is not None else aws.budget_usd,
                                 opts.force, (lambda _line: None) if opts.dry_run else echo)
    if opts.dry_run:
        return job

    from multitype.cloud import upload

    target = _root_storage(project, root)
    size = 0
    if not target.exists(sourcedir.key):
        target.put_file(sourcedir.path, sourcedir.key)
        job.uploaded.append(sourcedir.key)
        size += sourcedir.size
    written, count = upload.push_configs(config_dir, target, project.configs.project.storage.endpoint_url, aws.profile)
    job.uploaded += written
    size += count
    client = cloud_aws.client("sagemaker", aws, max_attempts=1)  # a create is not retried blindly
    with cloud_aws.aws_errors(f"start the processing job {name}", aws):
        client.create_processing_job(**request)
    job.record = records.PROCESSING_JOBS.save(project.storage, name, {
        "task": "prepare", "region": aws.region, "account": account, "root": root, "input": raw.uri,
        "instance_type": instance_type, "image": image.uri, "sourcedir": sourcedir_uri,
        "sourcedir_bytes": sourcedir.size, "console_url": job.console_url, "request": request})
    echo(f"started {name} (prepare, {instance_type}, input {raw.uri}): {job.console_url}")
    echo(f"sourcedir {sourcedir.size / 1024:.0f} KiB; {len(job.uploaded)} file(s) uploaded ({size / 2**20:.1f} MiB)")
    return job
