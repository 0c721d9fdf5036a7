"""``multitype doctor``: the migration checklist as checks that pass, fail or are skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from multitype.cli._common import ConfigDirOpt, RootOpt
from multitype.errors import UserError

_STYLE = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow"}


def register(app: typer.Typer) -> None:
    """Add ``multitype doctor`` to ``app``."""

    @app.command("doctor")
    def doctor(
        as_json: Annotated[bool, typer.Option("--json", help="Print the checks as a JSON list.")] = False,
        local: Annotated[str, typer.Option("--local", help="The project folder (git checkout, code to push).")] = ".",
        root: RootOpt = None,
        config_dir: ConfigDirOpt = "configs",
    ) -> None:
        """Check the migration checklist: PASS / FAIL / SKIP with the reason and the fix; exit 1 on any FAIL."""
        from multitype.cloud.doctor import FAIL, run_checks

        if not Path(local).is_dir():  # bad input (exit 2), not a checklist failure
            raise UserError(f"--local {local!r} is not a folder; pass the project folder (its git checkout)")

        checks = run_checks(root=root, config_dir=config_dir, local=local)
        if as_json:
            typer.echo(json.dumps([c.to_dict() for c in checks], indent=2))
        else:
            table = Table("check", "status", "reason", "fix")
            for c in checks:
                table.add_row(c.name, f"[{_STYLE[c.status]}]{c.status}[/]", c.reason, c.fix)
            Console().print(table)
        failed = sum(c.status == FAIL for c in checks)
        if failed:
            raise typer.Exit(1)
