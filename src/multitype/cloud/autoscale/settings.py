"""What ``multitype autoscale`` was asked for, resolved against ``aws.autoscale`` and checked before any AWS call.

:func:`resolve` takes the flags (:class:`AutoscaleOptions`, None: the
project's value), fills them from ``project.yaml`` and checks every rule the
requests depend on, collecting all problems into one line: the region and the
instance types against botocore's EC2 model (the catalog ``ec2 launch``
uses), ``min <= desired <= max``, the spot share in [0, 1], the CPU target
in (0, 100], each schedule (``"CRON=DESIRED"``: a five-field cron whose
desired capacity lies within min and max), subnet and security group ids,
and the model (an ``s3://`` URL, or a folder under the project's S3 root).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TypeVar

from multitype.cloud.ec2 import request as ec2_request
from multitype.errors import AwsError, UserError
from multitype.project import Project
from multitype.storage import split_s3_url

T = TypeVar("T")
PORT = 8080
# the sibling families tried as spot overrides of an x86 or a Graviton type, same size, newest last
_X86_GENERATIONS = ("5", "5a", "6i", "6a", "7i", "7a")
_ARM_GENERATIONS = ("6g", "7g", "8g")
OVERRIDES_MAX = 4
_NAME = re.compile(r"^[A-Za-z0-9().\-/_]{3,128}$")  # a launch template name (the group takes the same)
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
_AMI = re.compile(r"^ami-[0-9a-f]{8,17}$")

# cron fields: (name, lowest, highest, names accepted instead of numbers)
_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_DAYS = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}
_CRON_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
                ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))


@dataclass
class AutoscaleOptions:
    """The flags of ``multitype autoscale plan|apply``; None: ``aws.autoscale`` in project.yaml."""

    model: str | None = None
    instance_type: str | None = None
    instance_types: list[str] | None = None  # the spot overrides; None: siblings of instance_type
    min_size: int | None = None
    max_size: int | None = None
    desired: int | None = None
    target_cpu: float | None = None
    spot_share: float | None = None
    cooldown: int | None = None
    schedules: list[str] | None = None
    subnets: list[str] | None = None
    security_groups: list[str] | None = None
    instance_profile: str | None = None
    ami: str | None = None
    volume_gb: int | None = None
    name: str | None = None
    remote: str | None = None


@dataclass(frozen=True)
class Schedule:
    """One scheduled action: a cron recurrence (UTC) and the desired capacity it sets."""

    cron: str
    desired: int

    @property
    def name(self) -> str:
        """``multitype-<cron with '_' for spaces>``: the same cron keeps its action, a new desired updates it."""
        return "multitype-" + self.cron.replace(" ", "_")


@dataclass(frozen=True)
class Settings:
    """Everything the documents are built from, checked."""

    name: str
    project: str
    region: str
    root: str
    model: str
    instance_type: str
    instance_types: tuple[str, ...]
    min_size: int
    max_size: int
    desired: int
    desired_given: bool  # --desired on the command line: sent on an update too (else the policy's value stays)
    target_cpu: float
    spot_share: float
    cooldown: int
    health_check_grace: int
    schedules: tuple[Schedule, ...]
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    instance_profile: str
    ami: str | None
    volume_gb: int
    endpoint_url: str | None
    tags: dict[str, str] = field(default_factory=dict)
    port: int = PORT

    @property
    def on_demand_percent(self) -> int:
        """OnDemandPercentageAboveBaseCapacity: the share of instances above the base that are on-demand."""
        return int(round(100 * (1 - self.spot_share)))


def default_name(project: str) -> str:
    """``multitype-<project>-serve``, with what a launch template name cannot hold replaced by ``-``."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", project).strip("-")[:100] or "project"
    return f"multitype-{clean}-serve"


def cron_errors(cron: str) -> list[str]:
    """What is wrong with a five-field cron expression (minute hour day-of-month month day-of-week), if anything.

    Each field is ``*``, a value, a range ``a-b``, any of them with a step
    ``/n``, or a comma list of those; months and days of the week may be named
    (``JAN``, ``MON-FRI``), as EC2 Auto Scaling's recurrence accepts.
    """
    fields = cron.split()
    if len(fields) != 5:
        return [f"cron {cron!r} has {len(fields)} fields; it needs 5 (minute hour day-of-month month "
                "day-of-week), e.g. '0 8 * * MON-FRI'"]
    errors = []
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS):
        def value(token: str) -> int:
            token = token.upper()
            if token in names:
                return int(names[token])
            if not token.isdigit() or not low <= int(token) <= high:
                raise ValueError(token)
            return int(token)

        for part in text.split(","):
            base, _, step = part.partition("/")
            try:
                if step and (not step.isdigit() or int(step) < 1):
                    raise ValueError(step)
                if base != "*":
                    first, _, last = base.partition("-")
                    if value(first) > (value(last) if last else value(first)):
                        raise ValueError(base)
            except ValueError:
                errors.append(f"cron {cron!r}: the {what} field {text!r} is not valid ({low}-{high}"
                              f"{', or names like ' + next(iter(names)) if names else ''}; '*', 'a-b', '/n', lists)")
                break
    return errors


def parse_schedule(text: str) -> Schedule:
    """``"0 8 * * MON-FRI=4"`` -> Schedule (the capacity checked against min/max by :func:`resolve`)."""
    cron, sep, desired = text.rpartition("=")
    if not sep or not desired.strip().isdigit():
        raise UserError(f"--schedule {text!r} must be 'CRON=DESIRED', e.g. '0 8 * * MON-FRI=4'")
    cron = " ".join(cron.split())
    errors = cron_errors(cron)
    if errors:
        raise UserError(f"--schedule {text!r}: {errors[0]}")
    return Schedule(cron, int(desired))


def similar_types(instance_type: str, count: int = OVERRIDES_MAX) -> tuple[str, ...]:
    """``instance_type`` and up to ``count - 1`` siblings of the same size from other generations that EC2
    knows (``c5.xlarge`` -> ``c5.xlarge, c5a.xlarge, c6i.xlarge, c6a.xlarge``): more spot pools, one architecture."""
    known = set(ec2_request.instance_types())
    family, _, size = instance_type.partition(".")
    match = re.match(r"^([a-z]+?)(\d.*)$", family)
    if not match:
        return (instance_type,)
    letters, generation = match.groups()
    graviton = "g" in generation[1:]
    pool = _ARM_GENERATIONS if graviton else _X86_GENERATIONS
    out = [instance_type]
    for gen in pool:
        candidate = f"{letters}{gen}.{size}"
        if candidate in known and candidate not in out and len(out) < count:
            out.append(candidate)
    return tuple(out)


def model_url(model: str, root: str) -> str:
    """An ``s3://`` model as it is; a relative folder (``models/final/minilm``) under the S3 ``root``."""
    if model.startswith("s3://"):
        split_s3_url(model)
        return model.rstrip("/")
    parts = model.strip().strip("/").split("/")
    if "://" in model or model.startswith("/") or not model.strip() or any(p in ("", ".", "..") for p in parts):
        raise UserError(f"--model {model!r}: the instances read the model from S3; give an s3:// URL or a folder "
                        "under the project's S3 root such as models/final/minilm")
    return f"{root.rstrip('/')}/{'/'.join(parts)}"


def _pick(flag: T | None, configured: T) -> T:
    """The flag when given, else project.yaml's value."""
    return configured if flag is None else flag


def resolve(project: Project, opts: AutoscaleOptions) -> Settings:
    """Fill ``opts`` from project.yaml and check everything (see the module docstring).

    Raises
    ------
    UserError
        Every problem found, in one line.
    """
    from multitype.cloud.ec2.launch import remote_root

    config = project.configs.project
    aws, cfg = config.aws, config.aws.autoscale

    errors: list[str] = []
    try:
        ec2_request.check_region(aws.region)
    except AwsError as exc:
        errors.append(str(exc))
    instance_type = _pick(opts.instance_type, cfg.instance_type)
    types = tuple(opts.instance_types) if opts.instance_types else similar_types(instance_type)
    if instance_type not in types:
        types = (instance_type, *types)
    for name in types:
        try:
            ec2_request.check_instance_type(name)
        except AwsError as exc:
            errors.append(str(exc))
    min_size, max_size = _pick(opts.min_size, cfg.min_size), _pick(opts.max_size, cfg.max_size)
    desired = _pick(opts.desired, cfg.desired)
    if min_size < 0 or max_size < 1:
        errors.append(f"--min {min_size} must be 0 or more and --max {max_size} 1 or more")
    if not min_size <= desired <= max_size:
        errors.append(f"the sizes must satisfy min <= desired <= max, got --min {min_size} --desired {desired} "
                      f"--max {max_size}")
    target = float(_pick(opts.target_cpu, cfg.target_cpu))
    if not 0 < target <= 100:
        errors.append(f"--target-cpu {target:g} must be in (0, 100] (percent CPU)")
    share = float(_pick(opts.spot_share, cfg.spot_share))
    if not 0 <= share <= 1:
        errors.append(f"--spot-share {share:g} must be in [0, 1] (the share of instances on spot)")
    cooldown = _pick(opts.cooldown, cfg.cooldown)
    if cooldown < 0:
        errors.append(f"--cooldown {cooldown} must be 0 or more seconds")
    schedules: list[Schedule] = []
    for text in _pick(opts.schedules, cfg.schedules) or []:
        try:
            schedule = parse_schedule(text)
        except UserError as exc:
            errors.append(str(exc))
            continue
        if not min_size <= schedule.desired <= max_size:
            errors.append(f"--schedule {text!r}: desired {schedule.desired} must lie within --min {min_size} and "
                          f"--max {max_size}")
        if schedule.name in {s.name for s in schedules}:
            errors.append(f"--schedule {text!r}: the cron {schedule.cron!r} is given twice")
        schedules.append(schedule)
    subnets = _pick(opts.subnets, cfg.subnets) or ([aws.ec2.subnet] if aws.ec2.subnet else [])
    if not subnets:
        errors.append("no subnets for the group: pass --subnets subnet-a,subnet-b or set aws.autoscale.subnets in "
                      "project.yaml")
    errors += [f"subnet {s!r} is not a subnet id (subnet-...)" for s in subnets if not _SUBNET.match(s)]
    groups = _pick(opts.security_groups, cfg.security_groups) or aws.ec2.security_groups
    errors += [f"security group {g!r} is not a security group id (sg-...)" for g in groups
               if not _SECURITY_GROUP.match(g)]
    ami = _pick(opts.ami, cfg.ami)
    if ami and not _AMI.match(ami):
        errors.append(f"--ami {ami!r} is not an AMI id (ami-...)")
    volume_gb = _pick(opts.volume_gb, cfg.volume_gb)
    if not 8 <= volume_gb <= 16384:
        errors.append(f"--volume-gb {volume_gb} must be between 8 and 16384")
    name = opts.name or default_name(config.name)
    if not _NAME.match(name):
        errors.append(f"--name {name!r} must be 3-128 letters, digits or ().-/_ (a launch template name)")
    profile = opts.instance_profile or aws.ec2_instance_profile
    if not profile:
        errors.append("no instance profile for the instances: set aws.ec2_instance_profile in project.yaml (create "
                      "one with 'multitype iam policy ec2-profile --create') or pass --instance-profile")
    root = model = ""
    try:
        root = remote_root(project, opts.remote)
        chosen = _pick(opts.model, cfg.model)
        if not chosen:
            raise UserError("no model to serve: pass --model (s3://... or models/final/<name> under the S3 root) or "
                            "set aws.autoscale.model")
        model = model_url(chosen, root)
    except UserError as exc:
        errors.append(str(exc))
    if errors:
        raise UserError("; ".join(errors))
    tags = {"multitype:project": config.name, "multitype:role": "serve", "Name": name, **aws.tags}
    return Settings(
        name=name, project=config.name, region=aws.region, root=root, model=model, instance_type=instance_type,
        instance_types=types, min_size=min_size, max_size=max_size, desired=desired,
        desired_given=opts.desired is not None, target_cpu=target, spot_share=share, cooldown=cooldown,
        health_check_grace=cfg.health_check_grace, schedules=tuple(schedules), subnets=tuple(subnets),
        security_groups=tuple(groups), instance_profile=str(profile), ami=ami, volume_gb=volume_gb,
        endpoint_url=config.storage.endpoint_url, tags=tags)
