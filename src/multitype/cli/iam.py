"""``multitype iam policy ...``: least-privilege policies scoped to the project's bucket and prefix."""

from __future__ import annotations

import typer

app = typer.Typer(help="Least-privilege IAM policies for the SageMaker role, the EC2 profile and the launcher.",
                  no_args_is_help=True)
