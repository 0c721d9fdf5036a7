"""``multitype ec2 launch|status|list|logs|terminate``: self-terminating (spot) training instances.

A thin layer over :mod:`multitype.cloud.ec2.launch` and
:mod:`multitype.cloud.ec2.instances`: parse, call one function, print. Tables
and JSON go to stdout, remarks to stderr.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from multitype.cli._common import ConfigDirOpt, RootOpt, duration, project
from multitype.cli.train import BatchSizeOpt, LearningRateOpt, MaxLengthOpt, NumEpochsOpt
from multitype.errors import UserError

app = typer.Typer(help="EC2 (spot) training instances that bootstrap, checkpoint to S3 and shut down.",
                  no_args_is_help=True)

TargetArg = Annotated[Optional[str], typer.Argument(
    help="Instance id (i-...) or run id (multitype-...) [default: the newest run launched from this root].",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of a table.")]


def _out() -> Console:
    """stdout for tables (remarks go to stderr); made per call so COLUMNS counts."""
    return Console()


def _note(line: str) -> None:
    """A remark for people on stderr, never wrapped (so it can be grepped)."""
    typer.echo(line, err=True)


def _usd(value: Any) -> str:
    return "-" if value is None else f"${value:.4f}" if value < 0.01 else f"${value:.2f}"


# --- launch -------------------------------------------------------------------------------------
@app.command("launch")
def launch(
    model_name: Annotated[Optional[str], typer.Option("--model-name", help="The transformer (default: models_transformer.yaml's model_name).")] = None,
    instance_type: Annotated[Optional[str], typer.Option("--instance-type", help="EC2 instance type (default: aws.ec2.instance_type).")] = None,
    spot: Annotated[Optional[bool], typer.Option("--spot/--on-demand", help="Spot or on-demand (default: aws.ec2.spot).")] = None,
    max_price: Annotated[Optional[float], typer.Option("--max-price", help="Spot: the most USD per hour, at most the on-demand price (default: aws.ec2.max_price; none: the spot price, capped at on-demand).")] = None,
    persistent: Annotated[bool, typer.Option("--restart-on-interruption", "--persistent", help="A persistent spot request: an interrupted instance is stopped and started again when capacity returns, and resumes from the newest checkpoint in S3.")] = False,
    ami: Annotated[Optional[str], typer.Option("--ami", help="AMI id (default: aws.ec2.ami, else the region's newest Deep Learning AMI for PyTorch).")] = None,
    volume_gb: Annotated[Optional[int], typer.Option("--volume-gb", min=1, help="Root EBS volume (gp3), GB (default: aws.ec2.volume_gb).")] = None,
    key_name: Annotated[Optional[str], typer.Option("--key-name", help="SSH key pair (default: aws.ec2.key_name; none: no SSH).")] = None,
    subnet: Annotated[Optional[str], typer.Option("--subnet", help="Subnet id (default: aws.ec2.subnet; none: the default VPC).")] = None,
    security_group: Annotated[Optional[list[str]], typer.Option("--security-group", help="Security group id; repeat for several (default: aws.ec2.security_groups).")] = None,
    instance_profile: Annotated[Optional[str], typer.Option("--instance-profile", help="Instance profile name or ARN (default: aws.ec2_instance_profile).")] = None,
    remote: Annotated[Optional[str], typer.Option("--remote", help="S3 root of the run (default: the root if on S3, else storage.remote).")] = None,
    num_epochs: NumEpochsOpt = None,
    learning_rate: LearningRateOpt = None,
    batch_size: BatchSizeOpt = None,
    max_length: MaxLengthOpt = None,
    budget: Annotated[Optional[float], typer.Option("--budget", help="USD: refuse to start when the estimate is above it (default: aws.budget_usd).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Start even when the estimate is above the budget.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the validated RunInstances request as JSON; upload and start nothing.")] = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Check, push code, configs and processed data, then start one training instance that terminates itself."""
    proj = project("ec2 launch", root, config_dir)
    from multitype.cloud.ec2.launch import Ec2LaunchOptions, launch as start

    opts = Ec2LaunchOptions(
        model_name=model_name, instance_type=instance_type, spot=spot, max_price=max_price, persistent=persistent,
        ami=ami, volume_gb=volume_gb, key_name=key_name, subnet=subnet, security_groups=security_group or None,
        instance_profile=instance_profile, remote=remote, budget=budget, force=force, num_epochs=num_epochs,
        learning_rate=learning_rate, batch_size=batch_size, max_length=max_length, dry_run=dry_run)
    result = start(proj, opts, config_dir=config_dir, echo=_note)  # one line each, never wrapped
    if dry_run:
        typer.echo(json.dumps(result.request, indent=2))
        _note(f"(dry run) run {result.run_id} on {result.image.image_id} ({result.image.name or '-'}): nothing "
              "uploaded or started")
        return
    typer.echo(result.instance_id)


# --- status, list, logs, terminate ---------------------------------------------------------------
def _resolve(command: str, root: Optional[str], config_dir: str, target: Optional[str]) -> tuple[Any, Any, Any]:
    from multitype.cloud.ec2 import instances

    proj = project(f"ec2 {command}", root, config_dir)
    aws = proj.configs.project.aws
    instance, record = instances.resolve(proj.storage, aws, target)
    return proj, instance, record


@app.command("status")
def status(target: TargetArg = None, as_json: JsonOpt = False, root: RootOpt = None,
           config_dir: ConfigDirOpt = "configs") -> None:
    """State, spot request, uptime, cost so far (catalog price) and the run's newest METRIC values (CloudWatch Logs)."""
    from multitype.cloud.ec2 import instances

    proj, instance, record = _resolve("status", root, config_dir, target)
    info = instances.summary(proj.configs.project.aws, instance, record)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    request = info["spot_request"]
    spot = "-" if request is None else \
        f"{request['id']} {request['type']}, {request['state']} ({request['status'] or '-'})"
    price = "-" if info["price_usd_hour"] is None else f"${info['price_usd_hour']:.4g}/h ({info['price_basis']})"
    rows = [("instance", info["instance_id"]), ("run", info["run_id"] or "-"), ("model", info["model"] or "-"),
            ("state", info["state"] + (f" ({info['state_reason']})" if info["state_reason"] else "")),
            ("type", f"{info['instance_type']}, {info['market']}"), ("spot request", spot),
            ("launched", info["launched"] or "-"), ("uptime", duration(info["uptime_seconds"])),
            ("price", price), ("cost so far", _usd(info["cost_usd"])), ("image", info["image_id"] or "-"),
            ("root", info["root"] or "-")]
    rows += [(f"metric {k}", f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in info["metrics"].items()]
    if not info["metrics"]:
        rows.append(("metrics", "none yet in the run's CloudWatch Logs stream"))
    table = Table(title=f"EC2 run {info['run_id'] or info['instance_id']}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    for field, value in rows:
        table.add_row(field, Text(str(value)))
    _out().print(table)


@app.command("list")
def list_(all_states: Annotated[bool, typer.Option("--all", help="Terminated instances too.")] = False,
          as_json: JsonOpt = False, root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Every instance tagged multitype:project=<this project> in the region, newest first (not terminated ones unless --all)."""
    from multitype.cloud.ec2 import instances

    proj = project("ec2 list", root, config_dir)
    name = proj.configs.project.name
    rows = instances.list_instances(proj.configs.project.aws, name, all_states=all_states)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        _note(f"no {'' if all_states else 'live '}instances tagged multitype:project={name} in "
              f"{proj.configs.project.aws.region}")
        return
    table = Table()
    for column in ("instance", "run", "type", "market", "state", "launched", "uptime", "cost so far"):
        table.add_column(column)
    for r in rows:
        table.add_row(Text(r["instance_id"]), Text(r["run_id"] or "-"), r["instance_type"],
                      "spot" if r["spot"] else "on-demand", r["state"], r["launched"] or "-",
                      duration(r["uptime_seconds"]), _usd(r["cost_usd"]))
    _out().print(table)
    live = [r for r in rows if r["state"] in instances.RUNNING_STATES]
    if live:
        _note(f"{len(live)} instance(s) of {name} still running: 'multitype ec2 terminate <instance>' stops the bill")


@app.command("logs")
def logs(target: TargetArg = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the instance is terminated (or --max-seconds).")] = False,
         poll_seconds: Annotated[float, typer.Option("--poll-seconds", min=0.0, help="Seconds between polls.")] = 10.0,
         max_seconds: Annotated[float, typer.Option("--max-seconds", min=0.0, help="Stop following after this long.")] = 24 * 3600.0,
         timestamps: Annotated[bool, typer.Option("--timestamps", help="Prefix lines with their UTC time.")] = False,
         root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """The run's log lines from CloudWatch Logs (group /multitype/ec2, stream <run id>)."""
    from multitype.cloud.ec2 import instances

    proj, instance, record = _resolve("logs", root, config_dir, target)
    run_id = (record or {}).get("run_id") or {t["Key"]: t["Value"] for t in instance.get("Tags", [])}.get(
        instances.RUN_TAG)
    if not run_id:
        raise UserError(f"{instance['InstanceId']} has no {instances.RUN_TAG} tag, so it has no run log stream; "
                        "was it launched by 'multitype ec2 launch'?")
    instances.show_logs(proj.configs.project.aws, instance, run_id, follow=follow, poll_seconds=poll_seconds,
                        echo=typer.echo, note=_note, max_seconds=max_seconds, timestamps=timestamps)


@app.command("terminate")
def terminate(target: Annotated[str, typer.Argument(help="Instance id (i-...) or run id (multitype-...).",
                                                    show_default=False)],
              yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
              root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Cancel the instance's spot request (so no replacement starts), then terminate it; asks first unless --yes."""
    from multitype.cloud.ec2 import instances

    proj, instance, _ = _resolve("terminate", root, config_dir, target)
    row = instances.row(instance)
    what = (f"{row['instance_id']} (run {row['run_id'] or '-'}, {row['instance_type']}, {row['state']}, "
            f"cost so far {_usd(row['cost_usd'])})")
    if not yes:
        try:
            confirmed = typer.confirm(f"terminate {what}?", default=False, err=True)
        except typer.Abort:  # no answer (stdin closed): never terminate by default
            _note("")  # end the prompt's line, so the error is a line of its own
            raise UserError(f"terminate {row['instance_id']} needs a 'y' answer or --yes") from None
        if not confirmed:
            _note(f"not terminated: {row['instance_id']}")
            raise typer.Exit(1)
    for line in instances.terminate(proj.configs.project.aws, instance):
        _note(line)
