"""``multitype cost estimate|recommend|refresh|budget``: time and price from measured speed."""

from __future__ import annotations

import typer

app = typer.Typer(help="Time and price per model and instance type; budget alerts.", no_args_is_help=True)
