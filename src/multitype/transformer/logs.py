"""What training tells people and machines: progress lines on stderr, ``METRIC name=value`` lines on stdout."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    """A progress line on stderr that does not break the progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def warn(message: str) -> None:
    """``warning: <message>`` on stderr."""
    log(f"warning: {message}")


def quiet(_: str) -> None:
    """What a non-main rank does with a message."""


def metric(name: str, value: float | int) -> None:
    """A ``METRIC name=value`` line on stdout (SageMaker metric definitions match these)."""
    shown = f"{value:.6g}" if isinstance(value, float) else str(value)
    print(f"METRIC {name}={shown}", flush=True)
