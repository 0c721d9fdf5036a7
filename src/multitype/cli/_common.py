"""Options and helpers shared by every command module."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from multitype.project import Project, open_project

console = Console(stderr=True)

RootOpt = Annotated[
    Optional[str],
    typer.Option("--root", help="Artifact root: a folder or s3://bucket/prefix [env: MULTITYPE_ROOT; "
                 "default: storage.root in project.yaml, else '.']"),
]
ConfigDirOpt = Annotated[
    str,
    typer.Option("--config-dir", envvar="MULTITYPE_CONFIG_DIR", help="Folder with the four config YAML files."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace artifacts a user made (e.g. differing raw data).")]
MetricLinesOpt = Annotated[bool, typer.Option(
    "--metric-lines", help="Print the machine-read 'METRIC name=value' lines on stdout even at a terminal "
    "(they are printed anyway when stdout is a file or pipe, and inside SageMaker).")]


def want_metric_lines(flag: bool) -> None:
    """``--metric-lines``: through the environment, so torchrun's and ``train parallel``'s children follow it."""
    if flag:
        import os

        from multitype.transformer.logs import METRIC_LINES_ENV

        os.environ[METRIC_LINES_ENV] = "1"


def project(command: str, root: str | None, config_dir: str) -> Project:
    """Open the project for ``command`` (configs validated before any work)."""
    return open_project(root, config_dir, command)


def split_names(value: str | None) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]``; ``None`` stays ``None``."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def duration(seconds: Any) -> str:
    """``12m05s`` or ``1h02m05s`` for a table cell; ``-`` for None."""
    if seconds is None:
        return "-"
    value = int(round(float(seconds)))
    hours, rest = divmod(value, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"
