"""Progress of long work: a live bar at a terminal, a plain line every ~10 s anywhere else.

A log file, a pipe or a CloudWatch stream cannot show a bar, and a job that
prints nothing for minutes looks dead; there each stage prints lines such as::

    near-duplicates: MinHash 412,000/1,000,000 (41%), 12 s elapsed, about 17 s left

``MULTITYPE_PROGRESS_INTERVAL`` sets the seconds between lines (default 10).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TextIO

INTERVAL_ENV = "MULTITYPE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0

Callback = Callable[[int, int], None]


def is_terminal(stream: Any) -> bool:
    """True when ``stream`` is a terminal (a person watches it)."""
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def interval() -> float:
    """Seconds between plain progress lines: ``MULTITYPE_PROGRESS_INTERVAL``, else 10."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, ""))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value >= 0 else DEFAULT_INTERVAL


def _seconds(s: float) -> str:
    s = int(round(s))
    return f"{s} s" if s < 120 else f"{s // 60} min {s % 60:02d} s"


class Lines:
    """A ``(done, total)`` callback that prints ``stage done/total (p%), elapsed, estimate`` every ``every`` s.

    It also prints the stage's last line when the stage took longer than ``every``,
    so a log shows where each long stage ended.
    """

    def __init__(self, stage: str, stream: TextIO | None = None, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stage, self.stream, self.clock = stage, stream, clock
        self.every = interval() if every is None else every
        self.started = self.last = clock()
        self.finished = False

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        complete = total > 0 and done >= total
        if self.finished or not (now - self.last >= self.every or (complete and now - self.started >= self.every)):
            return
        self.last = now
        self.finished = complete
        elapsed = now - self.started
        if total <= 0 and done <= 0:  # work that cannot count (see ticking): time only
            print(f"{self.stage}, {_seconds(elapsed)} elapsed", file=self.stream or sys.stderr, flush=True)
            return
        line = f"{self.stage} {done:,}/{total:,}" if total else f"{self.stage} {done:,}"
        if total:
            line += f" ({100 * done / total:.0f}%)"
        line += f", {_seconds(elapsed)} elapsed"
        if total and 0 < done < total:
            line += f", about {_seconds(elapsed * (total - done) / done)} left"
        print(line, file=self.stream or sys.stderr, flush=True)


@contextmanager
def stages(console: Any) -> Iterator[Callable[[str], Callback]]:
    """``task(description)`` gives a ``(done, total)`` callback: a rich bar at a terminal, else :class:`Lines`.

    ``console`` is a ``rich.console.Console``; lines go to its file.
    """
    if not console.is_terminal:
        yield lambda description: Lines(description, stream=console.file)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bars:
        def task(description: str) -> Callback:
            tid = bars.add_task(description, total=None)
            return lambda done, total: bars.update(tid, completed=done, total=total or None)

        yield task


@contextmanager
def ticking(callback: Callback | None, every: float = 1.0) -> Iterator[None]:
    """Call ``callback(0, 0)`` every ``every`` s from a thread while the block runs.

    For one long call that cannot report progress (a worker pool's map): the
    bar keeps its clock running and :class:`Lines` prints ``stage, N s elapsed``.
    """
    if callback is None:
        yield
        return
    import threading

    done = threading.Event()

    def beat() -> None:
        callback(0, 0)  # the stage has started (a line only where the interval is 0)
        while not done.wait(every):
            callback(0, 0)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
