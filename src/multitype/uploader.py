"""Publishing finished folders (checkpoints) to a root without stalling training.

A :class:`FolderPublisher` takes a local folder that is complete and will not
change again, and publishes it under a key with :meth:`Storage.put_dir`, which
writes a ``_COMPLETE`` marker last. For S3 roots this happens on a background
thread so the training loop goes on; for local roots it is a fast rename-based
copy done inline. A folder counts as saved only once its marker is written.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from multitype.storage import Storage

log = logging.getLogger(__name__)


class FolderPublisher:
    """Publish local folders under keys of ``storage``, in order, one at a time.

    Parameters
    ----------
    storage : Storage
        The root to publish into.
    background : bool, optional
        Upload on a worker thread (default: only for remote roots).
    remove_local : bool, default=True
        Delete the local folder once it is published.
    """

    def __init__(self, storage: Storage, background: bool | None = None, remove_local: bool = True) -> None:
        self.storage = storage
        self.background = storage.remote if background is None else background
        self.remove_local = remove_local
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish") if self.background else None
        self._pending: list[Future[None]] = []
        self._lock = threading.Lock()
        self.seconds_uploading = 0.0
        self.published: list[str] = []

    def _publish(self, local_dir: Path, key: str, on_done: Callable[[str], None] | None) -> None:
        start = time.perf_counter()
        self.storage.put_dir(local_dir, key)
        with self._lock:
            self.seconds_uploading += time.perf_counter() - start
            self.published.append(key)
        if self.remove_local:
            shutil.rmtree(local_dir, ignore_errors=True)
        if on_done is not None:
            on_done(key)

    def publish(self, local_dir: str | Path, key: str, on_done: Callable[[str], None] | None = None) -> None:
        """Publish ``local_dir`` as ``key``; raises an earlier upload's error, if any."""
        self.raise_errors()
        if self._pool is None:
            self._publish(Path(local_dir), key, on_done)
            return
        self._pending.append(self._pool.submit(self._publish, Path(local_dir), key, on_done))

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
        if wait:
            self.wait()
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
