"""What training tells people and machines: progress lines on stderr, ``METRIC name=value`` lines on stdout.

The ``METRIC`` lines are for machines (SageMaker's metric definitions, ``ec2 status``
reading CloudWatch Logs): they are printed when stdout is not a terminal, inside a
SageMaker job, or when asked for (``--metric-lines``, which sets
``MULTITYPE_METRIC_LINES=1`` so torchrun's and ``train parallel``'s children follow).
A person at a terminal sees the progress bar and the per-epoch lines instead.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

from multitype.progress import is_terminal

METRIC_LINES_ENV = "MULTITYPE_METRIC_LINES"
# set inside every SageMaker training job
_SAGEMAKER_ENV = ("SM_TRAINING_ENV", "TRAINING_JOB_NAME")


def log(message: str) -> None:
    """A progress line on stderr that does not break the progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def warn(message: str) -> None:
    """``warning: <message>`` on stderr."""
    log(f"warning: {message}")


def quiet(_: str) -> None:
    """What a non-main rank does with a message."""


def metric_lines_wanted(environ: Mapping[str, str] | None = None, stdout: object = None) -> bool:
    """True when ``METRIC`` lines go to stdout: not a terminal, inside SageMaker, or ``MULTITYPE_METRIC_LINES=1``."""
    env = os.environ if environ is None else environ
    if env.get(METRIC_LINES_ENV, "") not in ("", "0") or any(env.get(name) for name in _SAGEMAKER_ENV):
        return True
    return not is_terminal(sys.stdout if stdout is None else stdout)


def metric(name: str, value: float | int) -> None:
    """A ``METRIC name=value`` line on stdout (SageMaker metric definitions match these), unless a person watches."""
    if not metric_lines_wanted():
        return
    shown = f"{value:.6g}" if isinstance(value, float) else str(value)
    print(f"METRIC {name}={shown}", flush=True)
