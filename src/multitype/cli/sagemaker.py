"""``multitype sagemaker launch|status|logs|stop|list|collect``: training jobs on Amazon SageMaker."""

from __future__ import annotations

import typer

app = typer.Typer(help="Training jobs on Amazon SageMaker (managed spot, checkpoints, metrics).",
                  no_args_is_help=True)


# --- launch -------------------------------------------------------------------------------------


# --- status, logs, stop, list, collect ----------------------------------------------------------
