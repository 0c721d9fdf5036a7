"""Publishing finished folders (checkpoints) to a root without stalling training.

A :class:`FolderPublisher` takes a local folder that is complete and will not
change again, and publishes it under a key with :meth:`Storage.put_dir`, which
writes a ``_COMPLETE`` marker last. A folder counts as saved only once its
marker is written.

Route through the file:

- ``background=False`` (the default for local roots): ``put_dir`` runs inline,
  in the calling process.
- ``worker="process"`` (the default for S3 roots): one uploader process per
  publisher, started at the first ``publish``, at a low CPU priority
  (``nice``). It is a separate interpreter, so the upload's Python work (HTTP,
  signing, checksums) never holds the training loop's GIL, and being niced it
  yields the cores to torch's threads. It dies with its parent
  (``PR_SET_PDEATHSIG`` on Linux; end of its job pipe elsewhere): a killed
  trainer means the machine is going away, and a half-uploaded folder has no
  marker, so nothing is lost by stopping it.
- ``worker="thread"``: a worker thread of the calling process (the earlier
  design, kept as the measured alternative; see ``benchmarks/sync.py``).

In both background modes ``on_done(key)`` runs in the calling process, on a
thread of the publisher, once the folder is complete; errors come back as the
exception ``put_dir`` raised (a :class:`~multitype.errors.StorageError` keeps
its type and one-line message).
"""

from __future__ import annotations

import atexit
import ctypes
import json
import logging
import os
import pickle
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Callable, Literal

from multitype.storage import Storage

log = logging.getLogger(__name__)

#: CPU priority of the uploader process. 19 (the lowest) measured best: the
#: training loop keeps both cores, the upload takes the idle cycles between
#: and around torch's kernels (benchmarks/README.md, "Checkpoint streaming").
UPLOAD_NICE = 19
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class FolderPublisher:
    """Publish local folders under keys of ``storage``, in order, one at a time.

    Parameters
    ----------
    storage : Storage
        The root to publish into.
    background : bool, optional
        Upload in the background (default: only for remote roots). ``False``
        publishes inline, in the calling process.
    remove_local : bool, default=True
        Delete the local folder once it is published.
    worker : {"process", "thread"}, default="process"
        Where background uploads run: a niced child process that rebuilds
        ``storage`` from its root, endpoint and profile, or a thread of this
        process.
    nice : int, default=UPLOAD_NICE
        Niceness added to the uploader process (``worker="process"`` only).
    idle : bool, default=False
        Also put the uploader process under ``SCHED_IDLE`` (Linux). Measured no
        better than nice 19 here, and a process that only gets idle cycles can
        starve on a CPU-bound trainer until its S3 requests time out.

    Attributes
    ----------
    seconds_uploading : float
        Time spent in ``put_dir`` over all published folders.
    published : list of str
        Keys published so far, in order.
    """

    def __init__(self, storage: Storage, background: bool | None = None, remove_local: bool = True, *,
                 worker: Literal["process", "thread"] = "process", nice: int = UPLOAD_NICE,
                 idle: bool = False) -> None:
        if worker not in ("process", "thread"):
            raise ValueError(f"worker must be 'process' or 'thread', got {worker!r}")
        self.storage = storage
        self.background = storage.remote if background is None else background
        self.remove_local = remove_local
        self.worker = worker
        self.nice = nice
        self.idle = idle
        self._pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish")
                      if self.background and worker == "thread" else None)
        self._child: _UploadProcess | None = None
        self._pending: list[Future[None]] = []
        self._lock = threading.Lock()
        self.seconds_uploading = 0.0
        self.published: list[str] = []

    # -- accounting, shared by every mode ------------------------------------------
    def _record(self, key: str, seconds: float) -> None:
        with self._lock:
            self.seconds_uploading += seconds
            self.published.append(key)

    def _publish(self, local_dir: Path, key: str, on_done: Callable[[str], None] | None) -> None:
        start = time.perf_counter()
        self.storage.put_dir(local_dir, key)
        self._record(key, time.perf_counter() - start)
        if self.remove_local:
            shutil.rmtree(local_dir, ignore_errors=True)
        if on_done is not None:
            on_done(key)

    # -- public API ----------------------------------------------------------------
    def publish(self, local_dir: str | os.PathLike[str], key: str,
                on_done: Callable[[str], None] | None = None) -> None:
        """Publish ``local_dir`` as ``key``; raises an earlier upload's error, if any.

        Parameters
        ----------
        local_dir : path
            A finished folder; it must not change until it is published.
        key : str
            The folder's key under the root.
        on_done : callable, optional
            Called with ``key`` in this process once the folder is complete.
        """
        self.raise_errors()
        local_dir = Path(local_dir)
        if not self.background:
            self._publish(local_dir, key, on_done)
            return
        if self._pool is not None:
            self._pending.append(self._pool.submit(self._publish, local_dir, key, on_done))
            return
        if self._child is None:
            self._child = _UploadProcess(self.storage, self.nice, self.idle, self.remove_local, self._record)
        self._pending.append(self._child.submit(local_dir, key, on_done))

    @property
    def in_flight(self) -> int:
        """Folders handed to :meth:`publish` and not yet published (or failed)."""
        return sum(not fut.done() for fut in self._pending)

    @property
    def worker_pid(self) -> int | None:
        """The uploader process's id, once started (``worker="process"``); else None."""
        return self._child.proc.pid if self._child is not None and self._child.proc is not None else None

    def raise_errors(self) -> None:
        """Re-raise the first failed background upload (and forget finished ones)."""
        still = []
        for fut in self._pending:
            if fut.done():
                fut.result()
            else:
                still.append(fut)
        self._pending = still

    def wait(self) -> None:
        """Block until every submitted folder is published (re-raising failures)."""
        for fut in list(self._pending):
            fut.result()
        self._pending = []

    def close(self, wait: bool = True) -> None:
        """Stop the background worker.

        With ``wait`` (the default), first wait for every folder (re-raising a
        failure). Without it, folders not yet started are cancelled and the
        one uploading finishes in the background.
        """
        if wait:
            self.wait()
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
        if self._child is not None:
            self._child.close(wait=wait)


class _UploadProcess:
    """The parent's side of one uploader process: a job pipe, a result pipe, a reader thread.

    Jobs and results are pickled tuples. Each job has a future; the reader
    thread (which also starts the child, so ``PR_SET_PDEATHSIG`` -- tied to
    the thread that forked -- lasts as long as the reader) settles it and runs
    ``on_done`` in this process.
    """

    def __init__(self, storage: Storage, nice: int, idle: bool, remove_local: bool,
                 record: Callable[[str, float], None]) -> None:
        self._spec = {"root": storage.root, "endpoint_url": storage.endpoint_url, "profile": storage.profile,
                      "niceness": _niceness_after(nice), "idle": idle, "remove_local": remove_local,
                      "parent": os.getpid()}
        self._record = record
        self._jobs: dict[int, tuple[Future[None], str, Callable[[str], None] | None]] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._closed = False
        self._failure: BaseException | None = None
        job_read, job_write = os.pipe()
        self._result_read, self._result_write = os.pipe()
        self._child_fds = (job_read, self._result_write)
        self._job_pipe: BinaryIO = os.fdopen(job_write, "wb")
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._run, name="publish-reader", daemon=True)
        self._reader.start()
        self._started.wait()
        # an unclosed publisher still finishes its queue at exit, as a thread pool would
        self_ref = weakref.ref(self)
        atexit.register(lambda: (child := self_ref()) is not None and child.close(wait=True, from_atexit=True))

    # -- in the reader thread ------------------------------------------------------
    def _run(self) -> None:
        try:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])])}
            code = "import sys; from multitype.uploader import _child_main; _child_main(sys.argv[1])"
            spec = {**self._spec, "jobs_fd": self._child_fds[0], "results_fd": self._child_fds[1]}
            # its own process group, so that a Ctrl-C at the terminal is the trainer's to answer (save, then
            # wait for the upload); not its own session: with sched_autogroup (most Linux desktops and VMs)
            # a new session gets its own CPU share next to the trainer's, and its niceness counts for nothing
            group = {"process_group": 0} if sys.version_info >= (3, 11) else {}
            self.proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], env=env,
                                         stdin=subprocess.DEVNULL, pass_fds=self._child_fds, **group)
            _renice(self.proc.pid, self._spec["niceness"])  # at once: its imports are upload work too
            if self._spec["idle"]:
                _idle_policy(self.proc.pid)  # it has one thread yet; those it starts inherit the policy
        except BaseException as exc:
            self._failure = exc
            self._started.set()
            return
        finally:
            for fd in self._child_fds:
                os.close(fd)
        self._started.set()
        with os.fdopen(self._result_read, "rb") as results:
            while True:
                try:
                    message = pickle.load(results)
                except (EOFError, pickle.UnpicklingError, OSError):
                    break
                self._settle(message)
        code = self.proc.wait()
        failure = RuntimeError(f"the checkpoint uploader process (pid {self.proc.pid}) exited with code {code} "
                               "before finishing its uploads")
        with self._lock:
            self._failure = self._failure or failure
            left = list(self._jobs.values())
            self._jobs.clear()
        for fut, _, _ in left:
            if not fut.done():
                fut.set_exception(failure)

    def _settle(self, message: tuple[Any, ...]) -> None:
        kind, job_id = message[0], message[1]
        with self._lock:
            fut, key, on_done = self._jobs.pop(job_id)
        if kind == "done":
            self._record(key, message[2])
            try:
                if on_done is not None:
                    on_done(key)
            except BaseException as exc:
                fut.set_exception(exc)
                return
            fut.set_result(None)
        elif kind == "failed":
            fut.set_exception(_rebuild_error(*message[2:]))
        elif kind == "skipped":
            fut.cancel()

    # -- in the calling thread -----------------------------------------------------
    def submit(self, local_dir: Path, key: str, on_done: Callable[[str], None] | None) -> Future[None]:
        fut: Future[None] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("publish() after close()")
            if self._failure is not None:
                raise self._failure
            job_id = self._next_id
            self._next_id += 1
            self._jobs[job_id] = (fut, key, on_done)
        try:
            self._send(("put", job_id, str(local_dir), key))
        except OSError as exc:  # the child is gone; the reader fails every job with the reason
            log.debug("the uploader process did not take the job: %s", exc)
        return fut

    def _send(self, message: tuple[Any, ...]) -> None:
        pickle.dump(message, self._job_pipe, protocol=pickle.HIGHEST_PROTOCOL)
        self._job_pipe.flush()

    def close(self, wait: bool = True, from_atexit: bool = False) -> None:
        with self._lock:
            if self._closed:
                if wait and from_atexit:
                    self._reader.join()
                return
            self._closed = True
            unstarted = [job_id for job_id, (fut, _, _) in self._jobs.items() if not fut.done()]
        try:
            if not wait and unstarted:
                self._send(("cancel", unstarted))  # the folder being uploaded finishes; the rest are skipped
            self._send(("stop",))
            self._job_pipe.close()
        except OSError:
            pass
        if wait:
            self._reader.join()


def _rebuild_error(pickled: bytes | None, type_name: str, message: str, trace: str) -> BaseException:
    """The child's exception as it was raised there, or a RuntimeError that names it."""
    if pickled is not None:
        try:
            exc = pickle.loads(pickled)
            if isinstance(exc, BaseException):
                return exc
        except Exception:
            pass
    return RuntimeError(f"checkpoint upload failed: {type_name}: {message}\n{trace}")


def _niceness_after(increment: int) -> int:
    """This process's niceness plus ``increment``, within 0..19."""
    current = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else 0
    return max(0, min(19, current + increment))


def _renice(pid: int, niceness: int) -> None:
    """Lower ``pid``'s priority to ``niceness`` (never raise it: that needs privileges)."""
    if not hasattr(os, "setpriority"):
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, pid) < niceness:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except OSError as exc:  # the process is gone, or a platform rule: the upload still works
        log.debug("could not renice the uploader process %d: %s", pid, exc)


def _idle_policy(pid: int = 0) -> None:
    """Run process ``pid`` (0: this one) under SCHED_IDLE (Linux), where it has one.

    A SCHED_IDLE task is preempted at once by a waking normal task; a process may
    move itself, or a child of the same user, into it without privileges.
    """
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:
            log.debug("SCHED_IDLE refused: %s", exc)


# -- the uploader process ------------------------------------------------------------
def _die_with_parent(parent: int) -> None:
    """Get SIGKILL when the parent dies (Linux); exit now if it is already gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(1)


def _child_main(spec_json: str) -> None:
    """Entry point of the uploader process: publish jobs until told to stop."""
    spec = json.loads(spec_json)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the trainer answers interrupts (Python 3.10: same group)
    _die_with_parent(spec["parent"])
    _renice(0, spec["niceness"])  # in case the parent's renice came too late or failed
    if spec["idle"]:
        _idle_policy()  # before any thread starts: threads inherit it
    jobs = os.fdopen(spec["jobs_fd"], "rb")
    results = os.fdopen(spec["results_fd"], "wb")
    todo: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
    cancelled: set[int] = set()

    def read_jobs() -> None:
        # reads ahead so that a cancel or stop is seen while an upload runs
        while True:
            try:
                message = pickle.load(jobs)
            except (EOFError, OSError, pickle.UnpicklingError):
                os._exit(3)  # the job pipe closed without a stop: the parent is gone
            if message[0] == "put":
                todo.put(message)
            elif message[0] == "cancel":
                cancelled.update(message[1])
            elif message[0] == "stop":
                todo.put(None)
                return

    def reply(message: tuple[Any, ...]) -> None:
        pickle.dump(message, results, protocol=pickle.HIGHEST_PROTOCOL)
        results.flush()

    threading.Thread(target=read_jobs, name="jobs", daemon=True).start()
    storage: Storage | None = None
    while (job := todo.get()) is not None:
        _, job_id, local_dir, key = job
        if job_id in cancelled:
            reply(("skipped", job_id))
            continue
        start = time.perf_counter()
        try:
            if storage is None:  # built here, so that its errors reach the parent like put_dir's
                storage = Storage(spec["root"], spec["endpoint_url"], spec["profile"])
            storage.put_dir(local_dir, key)
        except Exception as exc:
            try:
                pickled: bytes | None = pickle.dumps(exc)
                pickle.loads(pickled)
            except Exception:
                pickled = None
            reply(("failed", job_id, pickled, type(exc).__name__, str(exc), traceback.format_exc()))
            continue
        seconds = time.perf_counter() - start
        if spec["remove_local"]:
            shutil.rmtree(local_dir, ignore_errors=True)
        reply(("done", job_id, seconds))
    results.close()
