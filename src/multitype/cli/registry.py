"""``multitype registry add|list|show|promote|archive``: versioned models with stages.

A thin layer over :mod:`multitype.registry`: each command checks its flags, opens the project, calls one
library function and prints.
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from multitype.cli._common import ConfigDirOpt, RootOpt, console, project

app = typer.Typer(help="Model registry: numbered versions with stages, optionally mirrored to SageMaker.",
                  no_args_is_help=True)


def _echo(line: str) -> None:
    console.print(line, soft_wrap=True, highlight=False, markup=False)


@app.command("add")
def add(
    model_dir: Annotated[str, typer.Argument(help="A model folder: models/final/<name> under the root, a local folder or s3://.")],
    name: Annotated[str, typer.Option("--name", help="Registry name (letters, digits, hyphens).")],
    stage: Annotated[str, typer.Option("--stage", help="none, staging or production (production moves the current one to staging).")] = "none",
    sagemaker: Annotated[bool, typer.Option("--sagemaker", help="Also create a model package in the SageMaker Model Registry.")] = False,
    remote: Annotated[Optional[str], typer.Option("--remote", help="S3 root for model.tar.gz when --root is local (default: storage.remote).")] = None,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Register a model folder as the next version of NAME."""
    from multitype.registry import ops
    from multitype.registry.index import check_name

    check_name(name)
    ops.check_stage(stage, ops.ADD_STAGES)  # before the project is opened
    proj = project("registry add", root, config_dir)
    ops.add(proj, model_dir, name, stage=stage, sagemaker=sagemaker, remote=remote, echo=_echo)


def _interval(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "-"
    bounds = (metrics.get("intervals") or {}).get(key)
    return f"{value:.4f} [{bounds[0]:.4f}, {bounds[1]:.4f}]" if isinstance(bounds, list) and len(bounds) == 2 \
        else f"{value:.4f}"


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A table on stdout at a terminal; tab-separated lines with a header line otherwise (for scripts)."""
    from rich.console import Console
    from rich.table import Table

    out = Console(soft_wrap=True)
    if not out.is_terminal:
        for row in [headers, *rows]:
            typer.echo("\t".join(row))
        return
    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    out.print(table)


@app.command("list")
def list_(
    name: Annotated[Optional[str], typer.Argument(help="One name: its versions.")] = None,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """The registered names (production version, latest), or the versions of NAME."""
    from multitype import layout
    from multitype.registry import ops

    proj = project("registry list", root, config_dir)
    if name is None:
        index = ops.load(proj.storage)
        if not index.models:
            _echo(f"the registry {proj.storage.url(layout.REGISTRY_INDEX)} is empty")
            return
        rows = []
        for key, entry in sorted(index.models.items()):
            prod = next((str(v.version) for v in entry.versions if v.stage == "production"), "-")
            latest = entry.versions[-1]
            rows.append([key, str(len(entry.versions)), prod, str(latest.version), latest.stage])
        _print_table(["name", "versions", "production", "latest", "latest_stage"], rows)
        return
    entry = ops.show(proj, name)
    _print_table(["version", "stage", "created", "kind", "test_macro_f1 [95% CI]", "sha256", "run_id", "sagemaker"],
                 [[str(v.version), v.stage, v.created, v.kind, _interval(v.metrics or {}, "macro_f1"), v.sha256[:12],
                   v.run_id or "-", "yes" if v.sagemaker else "-"] for v in entry.versions])  # type: ignore[union-attr]


@app.command("show")
def show(
    reference: Annotated[str, typer.Argument(metavar="NAME[:VERSION]",
                                             help="A name (all its versions) or NAME:VERSION.")],
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Everything the registry records about NAME or one version, as JSON on stdout."""
    from multitype.registry import ops

    proj = project("registry show", root, config_dir)
    record = ops.show(proj, reference)
    typer.echo(json.dumps(record.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False))


@app.command("promote")
def promote(
    reference: Annotated[str, typer.Argument(metavar="NAME:VERSION")],
    stage: Annotated[str, typer.Option("--stage", help="production (the current one moves to staging) or staging.")],
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Move a version to production or staging."""
    from multitype.registry import ops

    ops.check_stage(stage, ops.PROMOTE_STAGES)
    ops.parse_ref(reference, need_version=True)
    proj = project("registry promote", root, config_dir)
    ops.promote(proj, reference, stage, echo=_echo)


@app.command("archive")
def archive(
    reference: Annotated[str, typer.Argument(metavar="NAME:VERSION")],
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Archive a version (a production version leaves registry:NAME without one until another is promoted)."""
    from multitype.registry import ops

    ops.parse_ref(reference, need_version=True)
    proj = project("registry archive", root, config_dir)
    ops.archive(proj, reference, echo=_echo)
