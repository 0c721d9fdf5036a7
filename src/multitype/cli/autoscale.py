"""``multitype autoscale plan|apply|status|destroy``: the API on an EC2 Auto Scaling group.

A thin layer over :mod:`multitype.cloud.autoscale.fleet`: parse, call, print.
Documents and JSON go to stdout, remarks to stderr.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from multitype.cli._common import ConfigDirOpt, RootOpt, project, split_names
from multitype.errors import UserError

app = typer.Typer(help="Serve a model from an EC2 Auto Scaling group: launch template, group, CPU target tracking.",
                  no_args_is_help=True)

ModelOpt = Annotated[Optional[str], typer.Option("--model", help="The model: s3://... or a folder under the S3 root such as models/final/minilm (default: aws.autoscale.model).")]
InstanceTypeOpt = Annotated[Optional[str], typer.Option("--instance-type", help="EC2 instance type (default: aws.autoscale.instance_type, c5.xlarge).")]
InstanceTypesOpt = Annotated[Optional[str], typer.Option("--instance-types", help="With --spot-share: comma-separated types the group may launch (default: the instance type and up to 3 siblings of its size).")]
MinOpt = Annotated[Optional[int], typer.Option("--min", help="Fewest instances (default: aws.autoscale.min_size, 1).")]
MaxOpt = Annotated[Optional[int], typer.Option("--max", help="Most instances (default: aws.autoscale.max_size, 5).")]
DesiredOpt = Annotated[Optional[int], typer.Option("--desired", help="Instances to start with (default: aws.autoscale.desired, 2); on a later apply only sent when given.")]
TargetOpt = Annotated[Optional[float], typer.Option("--target-cpu", help="Average CPU percent the group keeps (default: aws.autoscale.target_cpu, 60).")]
SpotOpt = Annotated[Optional[float], typer.Option("--spot-share", help="Share of instances on spot, 0 to 1 (default: aws.autoscale.spot_share, 0).")]
CooldownOpt = Annotated[Optional[int], typer.Option("--cooldown", help="Seconds: the policy's instance warm-up and the group's default cooldown (default: 300).")]
ScheduleOpt = Annotated[Optional[list[str]], typer.Option("--schedule", help="'CRON=DESIRED' (UTC), e.g. '0 8 * * MON-FRI=4'; repeat for several (default: aws.autoscale.schedules).")]
SubnetsOpt = Annotated[Optional[str], typer.Option("--subnets", help="Comma-separated subnet ids (default: aws.autoscale.subnets, else aws.ec2.subnet).")]
SecurityGroupOpt = Annotated[Optional[list[str]], typer.Option("--security-group", help="Security group id (port 8080 open to your clients); repeat for several (default: aws.autoscale.security_groups, else aws.ec2.security_groups).")]
ProfileOpt = Annotated[Optional[str], typer.Option("--instance-profile", help="Instance profile name or ARN (default: aws.ec2_instance_profile).")]
AmiOpt = Annotated[Optional[str], typer.Option("--ami", help="AMI id (default: aws.autoscale.ami, else the region's newest Deep Learning AMI for PyTorch).")]
VolumeOpt = Annotated[Optional[int], typer.Option("--volume-gb", help="Root gp3 volume, GB (default: aws.autoscale.volume_gb).")]
NameOpt = Annotated[Optional[str], typer.Option("--name", help="Name of the launch template and the group (default: multitype-<project>-serve).")]
RemoteOpt = Annotated[Optional[str], typer.Option("--remote", help="S3 root the instances install the code from (default: the root if on S3, else storage.remote).")]


def _note(line: str) -> None:
    typer.echo(line, err=True)


def _plan(command: str, root: Optional[str], config_dir: str, **flags: Any) -> tuple[Any, Any]:
    from multitype.cloud.autoscale.fleet import plan
    from multitype.cloud.autoscale.settings import AutoscaleOptions

    proj = project(f"autoscale {command}", root, config_dir)
    flags["instance_types"] = split_names(flags["instance_types"])
    flags["subnets"] = split_names(flags["subnets"])
    flags["security_groups"] = flags["security_groups"] or None
    flags["schedules"] = flags["schedules"] or None
    return proj, plan(proj, AutoscaleOptions(**flags))


@app.command("plan")
def plan_(model: ModelOpt = None, instance_type: InstanceTypeOpt = None, instance_types: InstanceTypesOpt = None,
          min_size: MinOpt = None, max_size: MaxOpt = None, desired: DesiredOpt = None, target_cpu: TargetOpt = None,
          spot_share: SpotOpt = None, cooldown: CooldownOpt = None, schedule: ScheduleOpt = None,
          subnets: SubnetsOpt = None, security_group: SecurityGroupOpt = None, instance_profile: ProfileOpt = None,
          ami: AmiOpt = None, volume_gb: VolumeOpt = None, name: NameOpt = None, remote: RemoteOpt = None,
          user_data: Annotated[bool, typer.Option("--user-data", help="Print the instances' user data (bash) instead of the requests.")] = False,
          root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Print, as JSON, the exact requests 'apply' would send now (an empty list: nothing to change)."""
    _, result = _plan("plan", root, config_dir, model=model, instance_type=instance_type,
                      instance_types=instance_types, min_size=min_size, max_size=max_size, desired=desired,
                      target_cpu=target_cpu, spot_share=spot_share, cooldown=cooldown, schedules=schedule,
                      subnets=subnets, security_groups=security_group, instance_profile=instance_profile, ami=ami,
                      volume_gb=volume_gb, name=name, remote=remote)
    if user_data:
        typer.echo(result.user_data, nl=False)
        return
    typer.echo(json.dumps(result.as_json(), indent=2))
    _note(f"{len(result.steps)} request(s) for {result.settings.name} in {result.settings.region}" +
          (" (nothing to change)" if not result.steps else "; 'multitype autoscale apply' sends them"))


@app.command("apply")
def apply_(model: ModelOpt = None, instance_type: InstanceTypeOpt = None, instance_types: InstanceTypesOpt = None,
           min_size: MinOpt = None, max_size: MaxOpt = None, desired: DesiredOpt = None,
           target_cpu: TargetOpt = None, spot_share: SpotOpt = None, cooldown: CooldownOpt = None,
           schedule: ScheduleOpt = None, subnets: SubnetsOpt = None, security_group: SecurityGroupOpt = None,
           instance_profile: ProfileOpt = None, ami: AmiOpt = None, volume_gb: VolumeOpt = None,
           name: NameOpt = None, remote: RemoteOpt = None, root: RootOpt = None,
           config_dir: ConfigDirOpt = "configs") -> None:
    """Push the code, then create or update the launch template, group, policy and schedules (only differences)."""
    from multitype.cloud.autoscale.fleet import apply

    proj, result = _plan("apply", root, config_dir, model=model, instance_type=instance_type,
                         instance_types=instance_types, min_size=min_size, max_size=max_size, desired=desired,
                         target_cpu=target_cpu, spot_share=spot_share, cooldown=cooldown, schedules=schedule,
                         subnets=subnets, security_groups=security_group, instance_profile=instance_profile,
                         ami=ami, volume_gb=volume_gb, name=name, remote=remote)
    apply(proj, result, echo=_note)
    s = result.settings
    _note(f"{s.name}: {'up to date' if not result.steps else f'{len(result.steps)} change(s) sent'}; serving "
          f"{s.model} on port {s.port} ({s.min_size}-{s.max_size} instances, target CPU {s.target_cpu:g}%)")


@app.command("status")
def status(name: NameOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
           root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Desired/min/max, the instances, the scaling policy, scheduled actions and the newest scaling activities."""
    from multitype.cloud.autoscale.fleet import status as read

    info = read(project("autoscale status", root, config_dir), name)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    policy = info["policy"]
    lines = [f"group {info['name']} ({info['region']}): desired {info['desired']}, min {info['min']}, "
             f"max {info['max']}; launch template {info['launch_template']} {info['template_version']}",
             "policy: " + ("none" if policy is None else
                           f"{policy['name']} {policy['metric']} target {policy['target']:g}, warm-up "
                           f"{policy['warmup']} s")]
    lines += [f"instance {i['id']} {i['type']} {i['zone']} {i['state']} {i['health']}" for i in info["instances"]]
    lines += [f"schedule {a['name']}: '{a['recurrence']}' -> desired {a['desired']}" for a in info["schedules"]]
    lines += [f"activity {a['start']} {a['status']}: {a['description']}" for a in info["activities"]]
    typer.echo("\n".join(lines))


@app.command("destroy")
def destroy(name: NameOpt = None, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
            root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Delete the scheduled actions and the policy, force-delete the group (terminating its instances) and
    delete the launch template; asks first unless --yes."""
    from multitype.cloud.autoscale.fleet import destroy_steps, send

    proj = project("autoscale destroy", root, config_dir)
    steps = destroy_steps(proj, name)
    if not steps:
        _note("nothing to destroy: no such group or launch template")
        return
    what = ", ".join(f"{s.operation} {s.request.get('ScheduledActionName') or s.request.get('PolicyName') or ''}"
                     .strip() for s in steps)
    if not yes:
        try:
            confirmed = typer.confirm(f"{what}?", default=False, err=True)
        except typer.Abort:  # no answer (stdin closed): never delete by default
            _note("")
            raise UserError("autoscale destroy needs a 'y' answer or --yes") from None
        if not confirmed:
            _note("nothing destroyed")
            raise typer.Exit(1)
    send(proj, steps, echo=_note)
