"""``multitype sagemaker launch``: check everything, push code, configs and data, start the training job(s).

The route through :func:`launch`, in order, so that bad input costs nothing:

1. plan the jobs (one transformer, one ``train parallel`` job, one job per
   model, or the baselines) and resolve every setting: flags, then
   ``project.yaml`` (``aws.sagemaker``, ``aws.sagemaker_role`` or
   ``SAGEMAKER_ROLE``, ``storage.remote``, ``aws.region``, ``aws.tags``);
2. the instance type and the image from the catalog (:mod:`multitype.cloud.catalog`),
   the image's torch against the range we and our dependencies support;
3. the processed data of every channel is there (else: run ``multitype prepare``);
4. credentials resolve and STS accepts them (expired keys fail here);
5. the sourcedir is packed and each request built and validated
   (:mod:`~multitype.cloud.sagemaker.request`); ``--dry-run`` stops here;
6. ``data/processed``, the configs and the code (with the sourcedir) are
   pushed with :func:`multitype.sync.sync`: only what changed moves;
7. ``CreateTrainingJob`` is sent once (no blind retry) and the launch is
   recorded under ``runs/sagemaker/<job>.json``.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from multitype import layout
from multitype.cloud import aws as cloud_aws
from multitype.cloud import catalog
from multitype.cloud.sagemaker import records, request as req
from multitype.errors import AwsError, DataError
from multitype.project import Project
from multitype.storage import is_remote, split_s3_url

ROLE_ENV = "SAGEMAKER_ROLE"
BASELINE_INSTANCE_TYPE = "ml.m5.xlarge"  # the runbook's "cheap, fast" baseline step: a CPU instance


@dataclass
class LaunchOptions:
    """What ``multitype sagemaker launch`` was asked for; None: the project's default."""

    model_name: str | None = None
    models: list[str] | None = None
    baselines: bool = False
    one_job_per_model: bool = False
    spot: bool | None = None
    max_run: int | None = None
    max_wait: int | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    volume_gb: int | None = None
    image_uri: str | None = None
    role: str | None = None
    remote: str | None = None
    num_epochs: float | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    max_length: int | None = None
    resume: str = "auto"
    dry_run: bool = False
    budget: float | None = None     # USD; None: aws.budget_usd
    force: bool = False             # start even when the estimate is over the budget


@dataclass
class Launched:
    """One job: its request, and (unless a dry run) when it was sent."""

    job_name: str
    request: dict[str, Any]
    console_url: str
    seconds_to_request: float | None = None
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class LaunchResult:
    """What :func:`launch` did: the jobs, the sourcedir and the push."""

    jobs: list[Launched]
    sourcedir_uri: str
    sourcedir_bytes: int
    uploaded: list[str] = field(default_factory=list)
    uploaded_bytes: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step, in order


@dataclass(frozen=True)
class _Job:
    task: str
    slug: str
    models: list[str]
    hyper: dict[str, Any]


def console_url(region: str, job_name: str) -> str:
    """The AWS console page of a training job."""
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/jobs/{job_name}"


def _plan(project: Project, opts: LaunchOptions) -> list[_Job]:
    """The jobs to start, their task and hyperparameters (flags checked against the configs)."""
    overrides = {"num_epochs": opts.num_epochs, "learning_rate": opts.learning_rate,
                 "batch_size": opts.batch_size, "max_length": opts.max_length}
    given = {k: v for k, v in overrides.items() if v is not None}
    resume = {"resume": opts.resume}
    if opts.resume not in ("auto", "never"):
        raise AwsError(f"--resume must be auto or never, got {opts.resume!r}")
    if opts.baselines:
        if opts.model_name or given:
            flags = ["--model-name"] * bool(opts.model_name) + [f"--{k.replace('_', '-')}" for k in given]
            raise AwsError(f"{', '.join(flags)} cannot be used with --baselines (they set transformer training)")
        names = opts.models or []
        unknown = [n for n in names if n not in layout.BASELINE_NAMES]
        if unknown:
            raise AwsError(f"--models {','.join(unknown)}: not a baseline; choose from "
                           f"{','.join(layout.BASELINE_NAMES)}")
        hyper = {"models": ",".join(names)} if names else {}
        return [_Job("baseline", "baselines", names, hyper)]
    if opts.model_name and opts.models:
        raise AwsError("pass either --model-name M (one model) or --models A B ... (several), not both")
    names = opts.models or [opts.model_name or project.configs.transformer.defaults.model_name]
    from multitype.transformer.models import MINILM_ALIAS, resolve_model

    for name in names:  # the flags are checked against each model's config now, not inside the job
        project.configs.transformer.params_for(name, **given)
        if name != MINILM_ALIAS and resolve_model(name).local:
            raise AwsError(f"model {name!r} is a local folder, which a SageMaker job cannot read; use 'minilm' "
                           "or a Hugging Face hub id")
    hyper_common = {k.replace("_", "-"): v for k, v in given.items()}
    if len(names) > 1 and not opts.one_job_per_model:
        return [_Job("parallel", "parallel", names, {"models": ",".join(names), **hyper_common, **resume})]
    return [_Job("transformer", layout.model_slug(name), [name], {"model-name": name, **hyper_common, **resume})
            for name in names]


def _role(opts: LaunchOptions, aws_role: str | None) -> str:
    return execution_role(opts.role, aws_role)


def execution_role(given: str | None, configured: str | None) -> str:
    """The SageMaker execution role: ``--role``, else ``SAGEMAKER_ROLE``, else ``aws.sagemaker_role``.

    Raises
    ------
    AwsError
        None of them is set.
    """
    role = given or os.environ.get(ROLE_ENV) or configured
    if not role:
        raise AwsError("no SageMaker execution role: set aws.sagemaker_role in project.yaml or SAGEMAKER_ROLE "
                       "(an IAM role ARN, arn:aws:iam::<account>:role/<name>), or pass --role")
    return role


def _remote_root(project: Project, opts: LaunchOptions) -> str:
    return remote_root(project, opts.remote)


def remote_root(project: Project, given: str | None, what: str = "the job") -> str:
    """The S3 root of ``what``: the project's root if it is on S3, else --remote / storage.remote."""
    if project.storage.remote:
        return project.storage.root
    remote = given or project.configs.project.storage.remote
    if not remote or not is_remote(remote):
        raise AwsError(f"no S3 root for {what}: set storage.remote (s3://bucket/prefix) in project.yaml or "
                       "pass --remote")
    split_s3_url(remote)
    return remote.rstrip("/")


def training_image(given: str | None, region: str, instance_type: str, configured: str | None,
                   echo: Callable[[str], None]) -> catalog.TrainingImage:
    """The job's image: ``given`` (--image-uri), else ``configured`` (aws.sagemaker.image_uri), else the AWS
    PyTorch training image for ``instance_type`` from the catalog; its torch checked against ours (a warning
    when unknown)."""
    from multitype.cloud.sagemaker.sourcedir import torch_specifier

    specifier = torch_specifier()
    uri = given or configured
    image = catalog.image_from_uri(uri) if uri else catalog.pytorch_training_image(region, instance_type, specifier)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", catalog.UnknownTorchWarning)
        catalog.check_torch(image, specifier)
    for warning in caught:
        echo(f"warning: {warning.message}")
    return image


def channels(project: Project, root: str) -> dict[str, str]:
    """Channel -> S3 URI; every file checked in the local (or S3) root first."""
    storage = project.storage
    if not storage.exists(layout.LABELS):
        raise DataError(f"no processed data: {storage.url(layout.LABELS)} is missing; run 'multitype prepare' "
                        "first")
    try:
        labels = storage.read_json(layout.LABELS)
        count = len(labels)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{storage.url(layout.LABELS)} cannot be read ({exc}); run 'multitype prepare' again") \
            from None
    channels = {}
    for split in layout.SPLITS:
        key = layout.processed_split(split, count)
        if not storage.exists(key):
            raise DataError(f"no processed data for channel {split!r}: {storage.url(key)} is missing; run "
                            "'multitype prepare' first")
        channels[split] = f"{root}/{key}"
    channels["labels"] = f"{root}/{layout.LABELS}"
    channels["configs"] = f"{root}/{layout.CONFIGS}/"
    return channels


def _tags(project: Project, job: _Job) -> dict[str, str]:
    tags = {"multitype:project": project.configs.project.name, "multitype:task": job.task,
            "multitype:model": ",".join(job.models) or "logreg,linear_svm"}
    tags = {k: v[:256] for k, v in tags.items()}
    return {**tags, **project.configs.project.aws.tags}


def local_folder(project: Project) -> Path:
    """Where the code comes from and the generated files are staged.

    A local root is the project folder (its ``src/`` if it has one, else the
    running package). With a root on S3 nothing is written to the working
    folder: the running package is packed in a per-user temp folder.
    """
    if not project.storage.remote:
        return project.storage.local_path()
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"multitype-{uid}" / "sagemaker-launch"


def push(project: Project, root: str, config_dir: str, sourcedir: Any, local: Path) -> tuple[list[str], int]:
    """Push data/processed, configs and code (with the sourcedir) to ``root`` (see :mod:`multitype.cloud.upload`)."""
    from multitype.cloud import upload

    return upload.push(project, root, config_dir, local, extra={sourcedir.key: Path(sourcedir.path)},
                       code_to_remote_root=False)


def _guard_budget(project: Project, opts: LaunchOptions, jobs: list[_Job], instance_type: str, spot: bool,
                  count: int, max_run: int, echo: Callable[[str], None]) -> None:
    """Print each job's estimate; refuse (before anything is uploaded) when the total is over the budget."""
    from multitype.cloud import cost
    from multitype.cloud.prices import load_catalog

    budget = opts.budget if opts.budget is not None else project.configs.project.aws.budget_usd
    cost.check_budget(0.0, budget, force=opts.force, what="")  # a budget of 0 or below: named before any estimate
    catalog = load_catalog()
    if catalog.instance(instance_type) is None:  # a valid training type the price catalog lacks
        cost.check_unpriced(instance_type, budget, force=opts.force, catalog=catalog, echo=echo)
        return
    estimates = [cost.launch_estimate(project, job.task, job.models, instance_type, spot=spot, count=count,
                                      epochs=opts.num_epochs, max_run=max_run, catalog=catalog) for job in jobs]
    for est in estimates:
        echo(cost.describe(est))
    cost.check_budget(sum(e.usd for e in estimates), budget, force=opts.force,
                      what=f"the SageMaker launch ({len(jobs)} job(s) on {instance_type})")


def launch(project: Project, opts: LaunchOptions, config_dir: str = "configs",
           echo: Callable[[str], None] = print) -> LaunchResult:
    """Start the SageMaker training job(s) that ``opts`` asks for.

    Parameters
    ----------
    project : Project
        The opened project (configs validated).
    opts : LaunchOptions
        The flags; None fields take ``project.yaml``'s values.
    config_dir : str, default="configs"
        Where the configs in force came from (pushed to ``<root>/configs/``).
    echo : callable, default=print
        Receives the human-readable lines (and, with ``dry_run``, nothing: the
        caller prints the requests).

    Returns
    -------
    LaunchResult
        The jobs with their requests, the sourcedir's URI and size, what was
        uploaded, and the seconds from the start to each request being sent.

    Raises
    ------
    AwsError
        A setting, the catalog, credentials, the request or AWS refused it (one line).
    DataError
        The processed data of a channel is missing.
    """
    start = last = time.perf_counter()
    phases: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        phases[name], last = now - last, now

    aws = project.configs.project.aws
    sm = aws.sagemaker
    jobs = _plan(project, opts)
    task = jobs[0].task
    instance_type = catalog.check_instance_type(
        opts.instance_type or (BASELINE_INSTANCE_TYPE if task == "baseline" else sm.instance_type))
    if task == "parallel":
        gpus = catalog.gpu_count(instance_type, aws.region)
        if gpus < 2:
            better = catalog.multi_gpu_types(len(jobs[0].models), aws.region)[:3] or \
                catalog.multi_gpu_types(2, aws.region)[:3]
            raise AwsError(f"--models with {len(jobs[0].models)} models runs one model per GPU, but {instance_type} "
                           f"has {gpus} GPU(s); pick a multi-GPU --instance-type such as {', '.join(better)}, or "
                           "pass --one-job-per-model")
    count = opts.instance_count or (sm.instance_count if task == "transformer" else 1)
    role = _role(opts, aws.sagemaker_role)
    root = _remote_root(project, opts)
    image = training_image(opts.image_uri, aws.region, instance_type, sm.image_uri, echo)
    lap("settings_and_catalog")
    channel_uris = channels(project, root)
    spot = sm.spot if opts.spot is None else opts.spot
    max_run = opts.max_run or sm.max_run
    max_wait = (opts.max_wait or sm.max_wait) if spot else None
    account = None if opts.dry_run else cloud_aws.caller_account(aws)
    lap("data_and_credentials")

    from multitype.cloud.sagemaker.sourcedir import build_sourcedir

    local = local_folder(project)
    sourcedir = build_sourcedir(local)
    sourcedir_uri = f"{root}/{sourcedir.key}"
    lap("sourcedir")
    now = time.time()
    launched = []
    for job in jobs:
        name = req.job_name(job.slug, now)
        request = req.build_request(
            name=name, image_uri=image.uri, role_arn=role, root=root, region=aws.region,
            sourcedir_uri=sourcedir_uri, task=job.task, hyperparameters=job.hyper, channels=channel_uris,
            instance_type=instance_type, instance_count=count, volume_gb=opts.volume_gb or sm.volume_gb,
            spot=spot, max_run=max_run, max_wait=max_wait, tags=_tags(project, job))
        req.validate_request(request, root)
        launched.append(Launched(name, request, console_url(aws.region, name)))
    names = [j.job_name for j in launched]
    if len(set(names)) != len(names):
        raise AwsError(f"two jobs would be named alike ({', '.join(names)}); give the models distinct names")
    lap("requests_validated")
    # after validation, so a malformed request is named first; before any upload, so a refusal leaves nothing
    _guard_budget(project, opts, jobs, instance_type, spot, count, max_run,
                  (lambda _line: None) if opts.dry_run else echo)
    result = LaunchResult(launched, sourcedir_uri, sourcedir.size, phases=phases)
    if opts.dry_run:
        result.seconds = time.perf_counter() - start
        return result

    result.uploaded, result.uploaded_bytes = push(project, root, config_dir, sourcedir, local)
    client = cloud_aws.client("sagemaker", aws, max_attempts=1)  # a create is not retried blindly
    lap("push")
    for item, job in zip(launched, jobs):
        item.seconds_to_request = time.perf_counter() - start
        with cloud_aws.aws_errors(f"start the training job {item.job_name}", aws):
            client.create_training_job(**item.request)
        lap(f"create {item.job_name}")
        item.record = records.save_job(project.storage, item.job_name, {
            "task": job.task, "models": job.models, "region": aws.region, "account": account, "root": root,
            "instance_type": instance_type, "instance_count": count, "spot": spot, "image": image.uri,
            "torch_version": image.torch_version, "sourcedir": sourcedir_uri, "sourcedir_bytes": sourcedir.size,
            "console_url": item.console_url, "request": item.request})
        echo(f"started {item.job_name} ({job.task}, {instance_type} x{count}, "
             f"{'spot' if spot else 'on-demand'}): {item.console_url}")
    result.seconds = time.perf_counter() - start
    echo(f"sourcedir {sourcedir.size / 1024:.0f} KiB; {len(result.uploaded)} file(s) uploaded "
         f"({result.uploaded_bytes / 2**20:.1f} MiB); request sent {launched[0].seconds_to_request:.1f} s after "
         "the start")
    return result
