"""``multitype ec2 launch``: check everything, push code, configs and data, start one self-terminating instance.

The route through :func:`launch`, in order, so that bad input costs nothing
(nothing uploaded, nothing started):

1. resolve every setting: flags, then ``project.yaml`` (``aws.ec2``,
   ``aws.ec2_instance_profile``, ``aws.region``, ``aws.tags``,
   ``aws.budget_usd``, ``storage.remote``); the region and the instance type
   against botocore's data (:mod:`~multitype.cloud.ec2.request`), the market
   flags against each other, ``--budget`` above 0, the model and
   hyperparameters against the configs;
2. the processed data is there; ``--max-price`` is not above the type's
   on-demand price in the price catalog (:mod:`multitype.cloud.prices`);
3. credentials resolve and STS accepts them; the instance profile exists (IAM)
   and holds a role; the AMI exists (``--ami``) or the newest Deep Learning
   AMI for PyTorch is found (:mod:`~multitype.cloud.ec2.ami`) and the root
   volume is at least its snapshot;
4. the user data is rendered (:func:`multitype.cloud.ec2.userdata.render_user_data`;
   for a persistent spot request wrapped by :func:`every_boot`) and the
   RunInstances request built and validated;
5. the estimate is printed and held against the budget, ``--force``
   overriding (:mod:`multitype.cloud.cost`, the guard ``sagemaker launch``
   uses); ``--dry-run`` stops here;
6. ``data/processed``, the configs and the code are pushed
   (:func:`multitype.cloud.upload.push`, the same push as ``sagemaker launch``);
7. RunInstances is sent once (no blind retry) and the run recorded under
   ``runs/ec2/<run-id>.json``.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from multitype.cloud import aws as cloud_aws
from multitype.cloud.ec2 import ami as amis
from multitype.cloud.ec2 import records
from multitype.cloud.ec2 import request as req
from multitype.errors import AwsError, ModelError, UserError
from multitype.project import Project
from multitype.storage import is_remote, split_s3_url

EVERY_BOOT_CLOUD_CONFIG = "#cloud-config\ncloud_final_modules:\n- [scripts-user, always]\n"
MIME_BOUNDARY = "==multitype-user-data=="


@dataclass
class Ec2LaunchOptions:
    """What ``multitype ec2 launch`` was asked for; None: the project's default."""

    model_name: str | None = None
    instance_type: str | None = None
    spot: bool | None = None
    max_price: float | None = None
    persistent: bool = False
    ami: str | None = None
    volume_gb: int | None = None
    key_name: str | None = None
    subnet: str | None = None
    security_groups: list[str] | None = None
    instance_profile: str | None = None
    remote: str | None = None
    budget: float | None = None
    force: bool = False
    num_epochs: float | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    max_length: int | None = None
    dry_run: bool = False


@dataclass
class Ec2Launch:
    """What :func:`launch` did: the run, its request and user data, and (unless a dry run) the instance."""

    run_id: str
    request: dict[str, Any]
    user_data: str
    image: amis.Image
    root: str
    instance_id: str | None = None
    spot_request_id: str | None = None
    estimate: Any = None
    uploaded: list[str] = field(default_factory=list)
    uploaded_bytes: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    seconds_to_request: float | None = None


def market(spot: bool, persistent: bool) -> str:
    """``spot persistent``, ``spot one-time`` or ``on-demand`` (for records and tables)."""
    return ("spot persistent" if persistent else "spot one-time") if spot else "on-demand"


def remote_root(project: Project, remote: str | None) -> str:
    """The S3 root of the run: the project's root if it is on S3, else --remote / storage.remote."""
    if project.storage.remote:
        return project.storage.root
    remote = remote or project.configs.project.storage.remote
    if not remote or not is_remote(remote):
        raise AwsError("no S3 root for the instance: set storage.remote (s3://bucket/prefix) in project.yaml or "
                       "pass --remote")
    split_s3_url(remote)
    return remote.rstrip("/")


def local_folder(project: Project) -> Path:
    """The project folder the code comes from; a per-user temp folder when the root is on S3."""
    if not project.storage.remote:
        return project.storage.local_path()
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"multitype-{uid}" / "ec2-launch"


def _train_args(project: Project, opts: Ec2LaunchOptions) -> tuple[str, list[str]]:
    """The model and the arguments after ``multitype train`` (checked against the configs now, not on the instance)."""
    given = {"num_epochs": opts.num_epochs, "learning_rate": opts.learning_rate, "batch_size": opts.batch_size,
             "max_length": opts.max_length}
    given = {k: v for k, v in given.items() if v is not None}
    name = opts.model_name or project.configs.transformer.defaults.model_name
    project.configs.transformer.params_for(name, **given)
    from multitype.transformer.models import MINILM_ALIAS, resolve_model

    if name != MINILM_ALIAS and resolve_model(name).local:
        raise AwsError(f"model {name!r} is a local folder, which the instance cannot read; use 'minilm' or a "
                       "Hugging Face hub id")
    args = ["transformer", "--model-name", name]
    for key, value in given.items():
        shown = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        args += [f"--{key.replace('_', '-')}", shown]
    return name, args


def on_demand_price(instance_type: str) -> tuple[float | None, str]:
    """The catalog's on-demand $/hour of ``instance_type`` (None: not in the catalog) and the catalog's date."""
    from multitype.cloud import prices

    catalog = prices.load_catalog()
    return catalog.price(instance_type, spot=False), str(catalog.date)


def _check_max_price(max_price: float | None, instance_type: str, echo: Callable[[str], None]) -> None:
    if max_price is None:
        return
    price, date = on_demand_price(instance_type)
    if price is None:
        echo(f"warning: {instance_type} has no on-demand price in the price catalog ({date}); --max-price "
             f"{max_price:g} is not checked against it")
        return
    if max_price > price:
        raise AwsError(f"--max-price {max_price:g} is above the on-demand price of {instance_type} (${price:g}/h, "
                       f"price catalog of {date}); a spot instance never needs more: lower it, or leave it unset "
                       "to pay the current spot price (capped at on-demand)")


def _budget(project: Project, opts: Ec2LaunchOptions, model: str, instance_type: str, spot: bool,
            echo: Callable[[str], None]) -> Any:
    """Print the run's estimate and refuse it above the budget unless --force (the guard ``sagemaker launch`` uses).

    Returns the estimate (None when the price catalog lacks the type and the launch goes on without one).
    """
    from multitype.cloud import cost
    from multitype.cloud.prices import load_catalog

    budget = opts.budget if opts.budget is not None else project.configs.project.aws.budget_usd
    catalog = load_catalog()
    if catalog.instance(instance_type) is None:  # a valid EC2 type the price catalog lacks
        cost.check_unpriced(instance_type, budget, force=opts.force, catalog=catalog, echo=echo)
        return None
    try:
        estimate = cost.estimate(project, model, instance_type, spot=spot, epochs=opts.num_epochs, catalog=catalog)
    except ModelError as exc:  # a model whose shape is unknown offline; EC2 has no max_run to bound the run by
        if budget is not None and budget <= 0:
            raise UserError(f"--budget must be above 0 USD, got {budget:g}") from None
        if budget is not None and not opts.force:
            raise cost.OverBudget(f"no estimate for {model} on {instance_type} ({exc}), so the budget of "
                                  f"${budget:.2f} cannot be checked; pass --force to start it anyway") from None
        echo(f"warning: no estimate for {model} on {instance_type} ({exc})")
        return None
    echo(cost.describe(estimate))
    cost.check_budget(estimate.usd, budget, force=opts.force,
                      what=f"the EC2 run of {model} on {instance_type} ({'spot' if spot else 'on-demand'})")
    return estimate


def check_instance_profile(aws: Any, profile: str) -> None:
    """The instance profile exists and holds a role (else the instance would have no credentials)."""
    name = profile.rsplit("/", 1)[-1] if profile.startswith("arn:") else profile
    fix = "create it with 'multitype iam policy ec2-profile --create', or fix aws.ec2_instance_profile"
    try:
        with cloud_aws.aws_errors(f"look up the instance profile {name}", aws):
            found = cloud_aws.client("iam", aws).get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except AwsError as exc:
        if "NoSuchEntity" in str(exc):
            raise AwsError(f"instance profile {name!r} (aws.ec2_instance_profile) does not exist; {fix}") from None
        raise
    if not found.get("Roles"):
        raise AwsError(f"instance profile {name!r} has no role, so the instance would have no credentials; add "
                       "the role ('multitype iam policy ec2-profile --create')")


def every_boot(script: str) -> str:
    """``script`` as cloud-init MIME multipart user data that runs it at every boot, not only the first.

    A persistent spot request through RunInstances stops its instance on an
    interruption and starts the same instance when capacity returns; cloud-init
    runs a plain user-data script once per instance, so that restart would sit
    idle (and bill) without this. The ``cloud-config`` part sets
    ``scripts-user`` to ``always`` (the AWS knowledge-center recipe); the run's
    ``ec2-finished.json`` keeps a finished run from training again.
    """
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    message = MIMEMultipart(boundary=MIME_BOUNDARY)
    message.attach(MIMEText(EVERY_BOOT_CLOUD_CONFIG, "cloud-config"))
    message.attach(MIMEText(script, "x-shellscript"))
    return message.as_string()


def _user_data(root: str, region: str, run_id: str, train_args: list[str], endpoint_url: str | None,
               persistent: bool) -> str:
    from multitype.cloud.ec2.userdata import render_user_data

    script = render_user_data(root=root, region=region, run_id=run_id, train_args=train_args,
                              log_group=req.LOG_GROUP, endpoint_url=endpoint_url)
    return every_boot(script) if persistent else script


def launch(project: Project, opts: Ec2LaunchOptions, config_dir: str = "configs",
           echo: Callable[[str], None] = print) -> Ec2Launch:
    """Start the EC2 training instance that ``opts`` asks for.

    Parameters
    ----------
    project : Project
        The opened project (configs validated).
    opts : Ec2LaunchOptions
        The flags; None fields take ``project.yaml``'s values.
    config_dir : str, default="configs"
        Where the configs in force came from (pushed to ``<root>/configs/``).
    echo : callable, default=print
        Receives the human-readable lines (estimate, warnings, what started).

    Returns
    -------
    Ec2Launch
        The run id, the validated request, the user data and, unless a dry run,
        the instance id, what was uploaded and the record.

    Raises
    ------
    AwsError
        A setting, a price, the budget, credentials, the profile, the AMI, the request or AWS refused it (one line).
    DataError
        The processed data is missing.
    """
    start = time.perf_counter()
    aws = project.configs.project.aws
    cfg = aws.ec2
    req.check_region(aws.region)
    if opts.budget is not None and opts.budget <= 0:  # before any AWS call (the guard itself comes later)
        raise UserError(f"--budget must be above 0 USD, got {opts.budget:g}")
    instance_type = req.check_instance_type(opts.instance_type or cfg.instance_type)
    spot = cfg.spot if opts.spot is None else opts.spot
    max_price = opts.max_price if opts.max_price is not None else (cfg.max_price if spot else None)
    if not spot and opts.persistent:
        raise AwsError("--persistent (--restart-on-interruption) is a spot request; drop --on-demand or it")
    if not spot and max_price is not None:
        raise AwsError(f"--max-price {max_price:g} is for spot instances; drop --on-demand or --max-price")
    profile = opts.instance_profile or aws.ec2_instance_profile
    if not profile:
        raise AwsError("no instance profile for the instance: set aws.ec2_instance_profile in project.yaml (create "
                       "one with 'multitype iam policy ec2-profile --create')")
    volume_gb = opts.volume_gb or cfg.volume_gb
    model, train_args = _train_args(project, opts)
    root = remote_root(project, opts.remote)
    from multitype.cloud import upload

    upload.require_processed(project.storage)
    run_id = req.run_id(model.rsplit("/", 1)[-1])
    _check_max_price(max_price, instance_type, echo)

    account = cloud_aws.caller_account(aws)
    check_instance_profile(aws, profile)
    ami_id = opts.ami or cfg.ami
    image = amis.check_ami(aws, ami_id, instance_type) if ami_id else amis.default_ami(aws, instance_type)
    if image.root_size_gb and volume_gb < image.root_size_gb:
        raise AwsError(f"--volume-gb {volume_gb} is smaller than the AMI's root snapshot ({image.root_size_gb} GB, "
                       f"{image.image_id}); pass --volume-gb {image.root_size_gb} or more (aws.ec2.volume_gb)")

    user_data = _user_data(root, aws.region, run_id, train_args, project.configs.project.storage.endpoint_url,
                           spot and opts.persistent)
    tags = {"multitype:project": project.configs.project.name, "multitype:run": run_id, "multitype:model": model,
            "Name": run_id}
    tags = {**{k: v[:req.TAG_VALUE_MAX] for k, v in tags.items()}, **aws.tags}
    request = req.build_request(
        image_id=image.image_id, instance_type=instance_type, instance_profile=profile, user_data=user_data,
        volume_gb=volume_gb, root_device=image.root_device, tags=tags, spot=spot, persistent=opts.persistent,
        max_price=max_price, key_name=opts.key_name or cfg.key_name, subnet=opts.subnet or cfg.subnet,
        security_groups=opts.security_groups or cfg.security_groups)
    req.validate_request(request)
    # after validation, so a malformed request is named first; before any upload, so a refusal leaves nothing
    estimate = _budget(project, opts, model, instance_type, spot, (lambda _line: None) if opts.dry_run else echo)
    result = Ec2Launch(run_id, request, user_data, image, root, estimate=estimate)
    if opts.dry_run:
        return result

    result.uploaded, result.uploaded_bytes = upload.push(project, root, config_dir, local_folder(project))
    client = cloud_aws.client("ec2", aws, max_attempts=1)  # a launch is not retried blindly
    result.seconds_to_request = time.perf_counter() - start
    with cloud_aws.aws_errors(f"start the instance for {run_id}", aws):
        started = client.run_instances(**request)["Instances"][0]
    result.instance_id = started["InstanceId"]
    result.spot_request_id = started.get("SpotInstanceRequestId")
    result.record = records.save(project.storage, run_id, {
        "instance_id": result.instance_id, "region": aws.region, "account": account, "root": root,
        "model": model, "instance_type": instance_type, "spot": spot, "persistent": opts.persistent,
        "market": market(spot, opts.persistent), "max_price": max_price, "spot_request_id": result.spot_request_id,
        "ami": image.image_id, "ami_name": image.name, "log_group": req.LOG_GROUP, "log_stream": run_id,
        "estimate_usd": getattr(estimate, "usd", None), "request": request})
    echo(f"started {result.instance_id} for run {run_id} ({instance_type}, {market(spot, opts.persistent)}, "
         f"{image.name or image.image_id}); {len(result.uploaded)} file(s) uploaded "
         f"({result.uploaded_bytes / 2**20:.1f} MiB); follow it with 'multitype ec2 logs {run_id} --follow'")
    return result
