"""``multitype sync push|pull|archive``: a local root <-> an S3 root."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from multitype.cli._common import ConfigDirOpt, console
from multitype.config import CONFIG_FILES, ProjectConfig, parse_config

app = typer.Typer(help="Incremental transfer between a local root and S3.", no_args_is_help=True)

LocalOpt = Annotated[str, typer.Option("--local", help="The local root (a folder).")]
RemoteOpt = Annotated[Optional[str], typer.Option(
    "--remote", help="s3://bucket/prefix [default: storage.remote in project.yaml]")]
OnlyOpt = Annotated[Optional[str], typer.Option(
    "--only", help="Comma-separated groups: data,configs,code,results,models,figures,runs [default: all but code].")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="List what would move; move nothing.")]
DeleteOpt = Annotated[bool, typer.Option("--delete", help="Delete files that the source no longer has.")]
JobsOpt = Annotated[int, typer.Option("--jobs", min=1, help="Files transferred in parallel.")]


def _project_config(config_dir: str) -> ProjectConfig:
    """project.yaml from ``config_dir`` if there is one, else the defaults."""
    path = Path(config_dir) / CONFIG_FILES["project"]
    if not path.is_file():
        return ProjectConfig()
    return parse_config("project", path.read_text(encoding="utf-8"), str(path))  # type: ignore[return-value]


def _sync(direction: str, local: str, remote: Optional[str], only: Optional[str], dry_run: bool,
          delete: bool, jobs: int, config_dir: str) -> None:
    from multitype.sync import parse_only, sync

    project = _project_config(config_dir)
    code = None
    if direction == "push" and "code" in parse_only(only) and Path(local).is_dir():
        from multitype.cloud.bundle import code_files

        code = code_files(local)
    result = sync(direction, local=local, remote=remote or project.storage.remote, only=only,  # type: ignore[arg-type]
                  dry_run=dry_run, delete=delete, endpoint_url=project.storage.endpoint_url, jobs=jobs,
                  profile=project.aws.profile, progress=True, log=typer.echo, code_files=code)
    moved = result.transferred
    verb = "uploaded" if direction == "push" else "downloaded"
    prefix = "(dry run) would have " if dry_run else ""
    console.print(f"{prefix}{verb} {len(moved)} file(s), {result.bytes / 2**20:.1f} MiB; "
                  f"deleted {len(result.deleted)}; unchanged {len(result.skipped)}; {result.seconds:.1f} s")


@app.command("push")
def push(local: LocalOpt = ".", remote: RemoteOpt = None, only: OnlyOpt = None, dry_run: DryRunOpt = False,
         delete: DeleteOpt = False, jobs: JobsOpt = 10, config_dir: ConfigDirOpt = "configs") -> None:
    """Upload what changed under --local to --remote (like 'aws s3 sync LOCAL REMOTE')."""
    _sync("push", local, remote, only, dry_run, delete, jobs, config_dir)


@app.command("pull")
def pull(local: LocalOpt = ".", remote: RemoteOpt = None, only: OnlyOpt = None, dry_run: DryRunOpt = False,
         delete: DeleteOpt = False, jobs: JobsOpt = 10, config_dir: ConfigDirOpt = "configs") -> None:
    """Download what changed under --remote into --local (like 'aws s3 sync REMOTE LOCAL')."""
    _sync("pull", local, remote, only, dry_run, delete, jobs, config_dir)


@app.command("archive")
def archive(
    remote: RemoteOpt = None,
    older_than: Annotated[str, typer.Option("--older-than", help="Age before archiving, in days (e.g. 30d).")] = "30d",
    storage_class: Annotated[str, typer.Option(
        "--storage-class", help="GLACIER_IR, GLACIER, DEEP_ARCHIVE or STANDARD_IA.")] = "GLACIER_IR",
    yes: Annotated[bool, typer.Option("--yes", help="Apply without asking.")] = False,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Add an S3 lifecycle rule moving old checkpoints and raw data to a cheaper storage class."""
    from multitype.cloud.lifecycle import archive as plan_archive

    project = _project_config(config_dir)
    kwargs = dict(remote=remote or project.storage.remote, older_than=older_than, storage_class=storage_class,
                  endpoint_url=project.storage.endpoint_url, profile=project.aws.profile)
    plan = plan_archive(**kwargs)  # type: ignore[arg-type]
    typer.echo(json.dumps({"Rules": plan.rules}, indent=2))
    if not yes:
        if not sys.stdin.isatty():
            console.print(f"not applied: pass --yes to add these rules to bucket '{plan.bucket}' "
                          f"(its other {len(plan.merged) - len(plan.rules)} rule(s) are kept)")
            return
        if not typer.confirm(f"Add these rules to the lifecycle configuration of bucket '{plan.bucket}'?"):
            console.print("not applied")
            return
    plan_archive(**kwargs, apply=True)  # type: ignore[arg-type]
    console.print(f"applied: bucket '{plan.bucket}' now has {len(plan.merged)} lifecycle rule(s)")
