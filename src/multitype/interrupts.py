"""Stop requests (SIGTERM, SIGINT, a spot-interruption notice) as a flag that long loops check.

A handler only records the request; the training loop checks :func:`stop_requested`
between steps, saves a checkpoint and raises :class:`multitype.errors.Interrupted`
(exit 143). A second SIGINT stops at once (``KeyboardInterrupt``) for a user who
does not want to wait for the checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator

_lock = threading.Lock()
_reason: str | None = None


def request_stop(reason: str) -> None:
    """Ask running loops to save their state and stop (first reason wins)."""
    global _reason
    with _lock:
        if _reason is None:
            _reason = reason


def stop_requested() -> str | None:
    """Why a stop was requested (e.g. ``"SIGTERM"``), or None."""
    return _reason


def clear() -> None:
    """Forget a stop request (for a new run in the same process)."""
    global _reason
    with _lock:
        _reason = None


def _handler(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    if signum == signal.SIGINT and _reason is not None:
        raise KeyboardInterrupt
    request_stop(name)


@contextlib.contextmanager
def stop_on_signals(on_signal: Callable[[int], None] | None = None) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT set the stop flag instead of killing the process.

    ``on_signal(signum)`` is called too (e.g. to forward the signal to child
    processes). Outside the main thread signals cannot be caught, so the block
    changes nothing there; the previous handlers come back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        _handler(signum, frame)
        if on_signal is not None:
            on_signal(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
