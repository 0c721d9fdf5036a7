"""``multitype sagemaker prepare [status|logs|stop|wait]``: ``prepare`` as a SageMaker Processing job."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from multitype.cli._common import ConfigDirOpt, RootOpt, console, duration, project

app = typer.Typer(help="Run 'multitype prepare' as a SageMaker Processing job, and watch it.",
                  invoke_without_command=True)

JobArg = Annotated[Optional[str], typer.Argument(
    help="Processing job name (default: the newest one started from this root).", show_default=False)]


@app.callback()
def prepare(
    ctx: typer.Context,
    instance_type: Annotated[Optional[str], typer.Option("--instance-type", help="Processing instance type (default: ml.m5.4xlarge).")] = None,
    volume_gb: Annotated[Optional[int], typer.Option("--volume-gb", min=1, help="EBS volume, GB (holds the input and the output) (default: aws.sagemaker.volume_gb).")] = None,
    max_run: Annotated[Optional[int], typer.Option("--max-run", min=1, help="MaxRuntimeInSeconds (default: 14400).")] = None,
    input: Annotated[Optional[str], typer.Option("--input", help="s3:// URL of the raw data under the root (default: input in data_config.yaml, else <root>/data/raw/raw_data.json).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a differing data/raw/raw_data.json (as prepare --force), and start even when the estimate is over the budget.")] = False,
    image_uri: Annotated[Optional[str], typer.Option("--image-uri", help="Image (default: the training jobs' image).")] = None,
    role: Annotated[Optional[str], typer.Option("--role", help="Execution role ARN (default: SAGEMAKER_ROLE, else aws.sagemaker_role).")] = None,
    remote: Annotated[Optional[str], typer.Option("--remote", help="S3 root of the job (default: storage.remote).")] = None,
    budget: Annotated[Optional[float], typer.Option("--budget", help="USD: refuse to start when the cost bound is above it (default: aws.budget_usd).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the validated request as JSON; upload and start nothing.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the logs until the job ends; exit non-zero if it Failed or Stopped.")] = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Start 'multitype prepare' on the raw data in the S3 root as a SageMaker Processing job
    (outputs: the same layout under the root); or watch one: status, logs, stop, wait."""
    if ctx.invoked_subcommand is not None:
        return
    proj = project("sagemaker prepare", root, config_dir)
    from multitype.cloud.sagemaker.processing import PrepareOptions, start_prepare

    opts = PrepareOptions(instance_type=instance_type, volume_gb=volume_gb, max_run=max_run, image_uri=image_uri,
                          role=role, remote=remote, input=input, force=force, budget=budget, dry_run=dry_run)
    job = start_prepare(proj, opts, config_dir=config_dir,
                        echo=lambda line: console.print(line, markup=False, soft_wrap=True))
    if dry_run:
        typer.echo(json.dumps(job.request, indent=2))
        console.print(f"(dry run) nothing uploaded or started; sourcedir {job.sourcedir_bytes / 1024:.0f} KiB")
        return
    typer.echo(job.job_name)
    if wait:
        from multitype.cloud.sagemaker import jobs

        final = jobs.wait(proj.configs.project.aws, job.job_name, follow_logs=True, echo=typer.echo,
                          kind=jobs.PROCESSING)
        code = jobs.exit_code(str(final.get("ProcessingJobStatus", "")))
        if code:
            raise typer.Exit(code)


def _job(command: str, root: Optional[str], config_dir: str, job: Optional[str]) -> tuple[Any, str]:
    from multitype.cloud.sagemaker.records import PROCESSING_JOBS

    proj = project(f"sagemaker prepare {command}", root, config_dir)
    return proj, job or str(PROCESSING_JOBS.newest(proj.storage)["job_name"])


@app.command("status")
def status(job: JobArg = None, as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
           root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Status, instance, times, inputs and outputs; FailureReason and the container's exit message."""
    from multitype.cloud.sagemaker import jobs

    proj, name = _job("status", root, config_dir, job)
    info = jobs.processing_summary(jobs.describe(proj.configs.project.aws, name, jobs.PROCESSING))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    table = Table(title=f"processing job {name}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [("status", info["status"]),
            ("instance", f"{info['instance_count']} x {info['instance_type']}, {info['volume_gb']} GB"),
            ("duration", duration(info["duration_seconds"])),
            ("created", info["created"] or "-"), ("ended", info["ended"] or "-")]
    for what in ("failure_reason", "exit_message"):
        if info[what]:
            rows.append((what.replace("_", " "), info[what]))
    rows += [(f"input {k}", v) for k, v in info["inputs"].items()]
    rows += [(f"output {k}", v) for k, v in info["outputs"].items()]
    for field, value in rows:
        table.add_row(field, Text(str(value)))
    Console().print(table)


@app.command("logs")
def logs(job: JobArg = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job has ended.")] = False,
         poll_seconds: Annotated[float, typer.Option("--poll-seconds", min=0.0, help="Seconds between polls.")] = 10.0,
         timestamps: Annotated[bool, typer.Option("--timestamps", help="Prefix lines with their UTC time.")] = False,
         root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """The job's CloudWatch log lines (/aws/sagemaker/ProcessingJobs)."""
    from multitype.cloud.sagemaker import jobs
    from multitype.cloud.sagemaker.logs import show_logs

    proj, name = _job("logs", root, config_dir, job)
    show_logs(proj.configs.project.aws, name, follow=follow, poll_seconds=poll_seconds, echo=typer.echo,
              note=lambda line: typer.echo(line, err=True), timestamps=timestamps, kind=jobs.PROCESSING)


@app.command("stop")
def stop(job: Annotated[str, typer.Argument(help="Processing job name.", show_default=False)],
         root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Stop a running processing job. Already stopping/stopped: exit 0; already Completed/Failed: exit 2."""
    from multitype.cloud.sagemaker import jobs

    proj = project("sagemaker prepare stop", root, config_dir)
    _, message = jobs.stop(proj.configs.project.aws, job, jobs.PROCESSING)
    typer.echo(message, err=True)


@app.command("wait")
def wait(job: JobArg = None,
         logs_: Annotated[bool, typer.Option("--logs/--no-logs", help="Print the job's log lines meanwhile.")] = True,
         poll_seconds: Annotated[float, typer.Option("--poll-seconds", min=0.0, help="Seconds between polls.")] = 30.0,
         max_seconds: Annotated[Optional[float], typer.Option(
             "--max-seconds", min=0.0, help="Give up after this long (default: the job's MaxRuntime + 1 h).")] = None,
         root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Wait until the job ends; exit 0 Completed, 1 Failed (the reason printed), 143 Stopped."""
    from multitype.cloud.sagemaker import jobs

    proj, name = _job("wait", root, config_dir, job)
    desc = jobs.wait(proj.configs.project.aws, name, follow_logs=logs_, poll_seconds=poll_seconds, echo=typer.echo,
                     max_seconds=max_seconds, kind=jobs.PROCESSING)
    raise typer.Exit(jobs.exit_code(desc["ProcessingJobStatus"]))
