"""The spot watcher: a daemon thread that turns an interruption notice into a stop request.

On a spot instance EC2 announces an interruption about two minutes ahead in
the instance metadata (see :mod:`multitype.cloud.imds`). The watcher asks
``check()`` every ``interval`` seconds (5 s, env ``MULTITYPE_SPOT_WATCH_INTERVAL``);
when it returns a notice, it logs it once and calls
:func:`multitype.interrupts.request_stop`, the same flag SIGTERM sets: the
training loop saves a ``-step<N>`` checkpoint (streamed to S3 on an S3 root)
at the next step boundary and exits 143.

It asks again on every poll while the notice stands, so a request that a new
run cleared (:func:`multitype.interrupts.clear` at the start of training) is
made again. A failing ``check`` (the metadata service does not answer) is
logged once and polled again; it never stops training.

This module sits beside :mod:`multitype.interrupts` and imports nothing from
``cloud/``: the command that starts it passes the metadata client's
``notice`` method in.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable

from multitype import interrupts

ENABLE_ENV = "MULTITYPE_SPOT_WATCH"
INTERVAL_ENV = "MULTITYPE_SPOT_WATCH_INTERVAL"
DEFAULT_INTERVAL = 5.0
INTERRUPTION_REASON = "spot interruption notice"
REBALANCE_REASON = "spot rebalance recommendation"


def enabled(flag: bool = False) -> bool:
    """Whether to watch: ``flag`` (``--spot-watch``) or env ``MULTITYPE_SPOT_WATCH=1``."""
    return flag or os.environ.get(ENABLE_ENV, "").strip().lower() in ("1", "true", "yes")


def interval_from_env() -> float:
    """Seconds between polls: env ``MULTITYPE_SPOT_WATCH_INTERVAL`` (a positive number), else 5."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        from multitype.errors import UserError

        raise UserError(f"{INTERVAL_ENV}={raw!r} is not a positive number of seconds; unset it for the default 5")
    return value


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class SpotWatcher:
    """A daemon thread polling ``check`` every ``interval`` seconds (see the module docstring).

    Parameters
    ----------
    check : callable
        Returns a notice (an object with ``kind`` and ``describe()``, e.g.
        :class:`multitype.cloud.imds.Notice`) or None; may raise.
    interval : float, default=5.0
        Seconds between polls.
    say : callable, optional
        Where the log lines go (default: stderr).

    Attributes
    ----------
    notice : object or None
        The first notice seen.
    noticed_at : float or None
        ``time.monotonic()`` when it was seen.
    """

    def __init__(self, check: Callable[[], Any], interval: float = DEFAULT_INTERVAL,
                 say: Callable[[str], None] = _say) -> None:
        self.check = check
        self.interval = interval
        self.say = say
        self.notice: Any = None
        self.noticed_at: float | None = None
        self.polls = 0
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="multitype-spot-watcher", daemon=True)

    def start(self) -> "SpotWatcher":
        """Start polling (the first poll is at once)."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling and wait (bounded) for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def poll(self) -> Any:
        """One poll: the notice, if any (and the stop request made)."""
        import time

        self.polls += 1
        try:
            notice = self.check()
        except Exception as exc:  # the service's trouble must never end training
            if not self._failing:
                self.say(f"warning: spot watcher: cannot read the instance metadata ({exc}); still trying "
                         f"every {self.interval:g} s")
                self._failing = True
            return None
        if self._failing:
            self.say("spot watcher: the instance metadata answers again")
            self._failing = False
        if notice is None:
            return None
        if self.notice is None:
            self.notice, self.noticed_at = notice, time.monotonic()
            self.say(f"{notice.describe()}: saving a checkpoint and stopping")
        reason = INTERRUPTION_REASON if getattr(notice, "kind", "") == "spot-interruption" else REBALANCE_REASON
        interrupts.request_stop(reason)
        return notice

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)


def start(check: Callable[[], Any], interval: float | None = None) -> SpotWatcher:
    """Start a :class:`SpotWatcher` (interval from the env when not given) and say so."""
    seconds = interval if interval is not None else interval_from_env()
    watcher = SpotWatcher(check, seconds)
    _say(f"spot watcher: polling the instance metadata every {seconds:g} s")
    return watcher.start()
