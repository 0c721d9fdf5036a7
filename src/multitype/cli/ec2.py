"""``multitype ec2 launch|status|list|logs|terminate``: self-terminating (spot) training instances."""

from __future__ import annotations

import typer

app = typer.Typer(help="EC2 (spot) training instances that bootstrap, checkpoint to S3 and shut down.",
                  no_args_is_help=True)
