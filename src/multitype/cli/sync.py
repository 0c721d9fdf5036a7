"""``multitype sync push|pull|archive`` (S3 issue)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Incremental transfer between a local root and S3.", no_args_is_help=True)
