"""Moving bytes between local files and S3 with boto3's ``s3transfer`` ``TransferManager``.

Uploads of :data:`MULTIPART_THRESHOLD` bytes and more are multipart uploads
with parts of :data:`MULTIPART_CHUNKSIZE` (8 MiB, as ``aws s3 sync``, so both
tools give a file the same ETag); s3transfer aborts the upload on any failure,
and the object exists only once the upload is completed. Downloads of that size
and more are split into ranged GETs run in parallel (pinned to the listed ETag
with ``If-Match``, so a replaced object fails instead of mixing two versions).
Up to :data:`MULTIPART_CONCURRENCY` requests are in flight per manager; one
manager is shared per S3 client.

:func:`wait_all` waits for a batch of transfers and, on the first failure,
cancels the rest, so a folder download or upload stops early and says why.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from typing import Any, BinaryIO, Callable, Iterable

MULTIPART_THRESHOLD = 8 * 2**20
MULTIPART_CHUNKSIZE = 8 * 2**20
MULTIPART_CONCURRENCY = 10

_MANAGERS: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


def transfer_config() -> Any:
    """The ``TransferConfig`` in force (read from this module's constants at each call)."""
    from s3transfer.manager import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNKSIZE,
                          max_request_concurrency=MULTIPART_CONCURRENCY)


def manager_for(client: Any) -> Any:
    """The ``TransferManager`` shared by everything that uses ``client`` (in this process)."""
    from s3transfer.manager import TransferManager

    key = (os.getpid(), id(client), MULTIPART_THRESHOLD, MULTIPART_CHUNKSIZE, MULTIPART_CONCURRENCY)
    with _LOCK:
        if key not in _MANAGERS:
            _MANAGERS[key] = TransferManager(client, transfer_config())
        return _MANAGERS[key]


class _Known:
    """s3transfer subscriber: hands over the size and ETag from a listing (no HeadObject per file)."""

    def __init__(self, size: int | None, etag: str | None) -> None:
        self.size, self.etag = size, etag

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        if self.size is not None:
            future.meta.provide_transfer_size(self.size)
        if self.etag:
            future.meta.provide_object_etag(self.etag)


class _Done:
    """s3transfer subscriber: puts the finished future on a queue (see :func:`wait_all`)."""

    def __init__(self, finished: "queue.Queue[Any]") -> None:
        self.finished = finished

    def on_done(self, future: Any, **kwargs: Any) -> None:
        self.finished.put(future)


def _subscribers(size: int | None = None, etag: str | None = None,
                 finished: "queue.Queue[Any] | None" = None) -> list[Any]:
    # s3transfer calls on_<event> on whatever subscribers it is given (duck typing)
    subs: list[Any] = []
    if size is not None or etag:
        subs.append(_Known(size, etag))
    if finished is not None:
        subs.append(_Done(finished))
    return subs


def upload(client: Any, source: str | BinaryIO, bucket: str, key: str, extra: dict[str, Any] | None = None,
           finished: "queue.Queue[Any] | None" = None) -> Any:
    """Start uploading a local file (path) or a readable binary file object; returns its future."""
    return manager_for(client).upload(source, bucket, key, extra_args=extra or {},
                                      subscribers=_subscribers(finished=finished))


def download(client: Any, bucket: str, key: str, target: BinaryIO, size: int | None = None,
             etag: str | None = None, finished: "queue.Queue[Any] | None" = None) -> Any:
    """Start downloading ``key`` into the seekable file object ``target``; returns its future.

    With ``size`` and ``etag`` from a listing, no HeadObject is needed and
    ranged GETs are pinned to that ETag.
    """
    return manager_for(client).download(bucket, key, target, subscribers=_subscribers(size, etag, finished))


def wait_one(future: Any) -> Any:
    """The result of one transfer; cancels it if the wait is interrupted (Ctrl-C)."""
    try:
        return future.result()
    except BaseException:
        if not future.done():
            future.cancel()
            with contextlib.suppress(BaseException):
                future.result()
        raise


def wait_all(start: Callable[["queue.Queue[Any]"], Iterable[Any]],
             on_success: Callable[[Any], None] | None = None,
             on_failure: Callable[[Any, BaseException], BaseException | None] | None = None) -> None:
    """Run a batch of transfers and wait for all of them; on the first failure cancel the rest and raise it.

    Parameters
    ----------
    start : callable
        Given a queue, starts the transfers (passing the queue as ``finished``)
        and returns their futures.
    on_success : callable, optional
        Called with each future that succeeded, as it finishes (in this thread).
    on_failure : callable, optional
        Called with the first future that failed and its error; may return
        another exception to raise instead (one that names the object).
    """
    finished: "queue.Queue[Any]" = queue.Queue()
    futures: list[Any] = []
    error: BaseException | None = None
    try:
        futures = list(start(finished))
        for _ in range(len(futures)):
            future = finished.get()
            try:
                future.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the rest is cancelled
                error = (on_failure(future, exc) if on_failure is not None else None) or exc
                break
            if on_success is not None:
                on_success(future)
    except BaseException as exc:  # noqa: BLE001 - an interrupt while waiting, or a failing on_success
        error = exc
    if error is None:
        return
    for future in futures:
        if not future.done():
            future.cancel()
    for future in futures:  # let cancelled transfers finish their cleanup (multipart aborts, closed files)
        with contextlib.suppress(BaseException):
            future.result()
    raise error
