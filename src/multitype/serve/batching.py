"""Dynamic micro-batching: requests that arrive together become one model call.

A request's texts are cut into chunks of at most ``max_batch_size`` and queued.
One worker task takes the oldest chunk, then keeps adding queued chunks while
the batch stays within ``max_batch_size`` texts, waiting at most ``max_wait_ms``
after the first chunk for more to arrive. It runs ONE call of the model
function in a single worker thread (the event loop stays free to accept and
queue requests meanwhile, so a busy server batches more), then hands each
chunk its slice of the results. An exception in the model call is set on every
chunk of that batch. The queue is bounded: a request whose texts do not fit is
refused at once (:class:`QueueFull`), and one not answered within
``timeout_s`` is dropped from the queue (:class:`RequestTimeout`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


class QueueFull(Exception):
    """The queue has no room for the request's texts (answered 503)."""


class RequestTimeout(Exception):
    """The request was not answered within the timeout (answered 503)."""


class ShuttingDown(Exception):
    """The batcher stopped before the request was answered (answered 503)."""


@dataclass
class _Chunk:
    texts: list[str]
    future: asyncio.Future = field(repr=False)


# the model function: texts -> one result per text, in order
BatchFn = Callable[[list[str]], Sequence[Any]]


class MicroBatcher:
    """Combines concurrent :meth:`submit` calls into model calls of at most ``max_batch_size`` texts.

    Parameters
    ----------
    fn : callable
        ``fn(texts) -> results`` (one per text), run in a worker thread, one call at a time.
    max_batch_size : int
        Most texts in one call of ``fn``.
    max_wait_ms : float
        How long the first chunk of a batch waits for others.
    max_queue : int
        Most texts waiting (not yet in a running batch).
    timeout_s : float
        Longest a :meth:`submit` waits for its results.
    on_batch : callable, optional
        ``on_batch(n_texts, seconds)`` after each model call (metrics).
    on_queue : callable, optional
        ``on_queue(n_texts_waiting)`` whenever the queue changes (metrics).
    """

    def __init__(self, fn: BatchFn, max_batch_size: int, max_wait_ms: float, max_queue: int, timeout_s: float,
                 on_batch: Callable[[int, float], None] | None = None,
                 on_queue: Callable[[int], None] | None = None) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.on_batch = on_batch or (lambda n, s: None)
        self.on_queue = on_queue or (lambda n: None)
        self._queue: collections.deque[_Chunk] = collections.deque()
        self._waiting = 0  # texts in the queue
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def waiting(self) -> int:
        """Texts queued and not yet in a running batch."""
        return self._waiting

    async def start(self) -> None:
        """Start the worker task (on the running event loop)."""
        if self._task is not None:
            return
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="multitype-model")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="multitype-batcher")

    async def stop(self) -> None:
        """Stop the worker; queued requests get :class:`ShuttingDown`."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        while self._queue:
            chunk = self._queue.popleft()
            if not chunk.future.done():
                chunk.future.set_exception(ShuttingDown("the server is shutting down"))
        self._set_waiting(0)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, texts: Sequence[str]) -> list[Any]:
        """The results of ``fn`` for ``texts``, in order, computed with whatever else is queued.

        Raises
        ------
        QueueFull
            Not enough room in the queue for ``texts`` (nothing was queued).
        RequestTimeout
            No answer within ``timeout_s`` (the request's chunks leave the queue).
        ShuttingDown
            The batcher is stopped or stopping.
        """
        if self._task is None or self._arrived is None:
            raise ShuttingDown("the model worker is not running")
        texts = list(texts)
        if self._waiting + len(texts) > self.max_queue:
            raise QueueFull(f"{self._waiting} texts are waiting and the queue holds {self.max_queue} "
                            f"(max_queue); retry later")
        loop = asyncio.get_running_loop()
        chunks = [_Chunk(texts[i:i + self.max_batch_size], loop.create_future())
                  for i in range(0, len(texts), self.max_batch_size)]
        self._queue.extend(chunks)
        self._set_waiting(self._waiting + len(texts))
        self._arrived.set()
        try:
            parts = await asyncio.wait_for(asyncio.gather(*(c.future for c in chunks)), self.timeout_s)
        except asyncio.TimeoutError:
            self._drop(chunks)
            raise RequestTimeout(f"no answer within {self.timeout_s:g} s (request_timeout_s); "
                                 "the server is overloaded, retry later") from None
        except BaseException:
            self._drop(chunks)
            raise
        return [item for part in parts for item in part]

    def _drop(self, chunks: list[_Chunk]) -> None:
        """Remove a request's chunks that are still queued (a timed-out or cancelled request)."""
        for chunk in chunks:
            if not chunk.future.done():
                chunk.future.cancel()
            with contextlib.suppress(ValueError):
                self._queue.remove(chunk)
                self._set_waiting(self._waiting - len(chunk.texts))

    def _set_waiting(self, n: int) -> None:
        self._waiting = n
        self.on_queue(n)

    async def _next_batch(self) -> list[_Chunk]:
        """Wait for a chunk, then gather more until ``max_batch_size`` texts or ``max_wait`` passes."""
        assert self._arrived is not None
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        batch = [self._queue.popleft()]
        size = len(batch[0].texts)
        deadline = loop.time() + self.max_wait
        while size < self.max_batch_size:
            if self._queue:
                if size + len(self._queue[0].texts) > self.max_batch_size:
                    break
                batch.append(self._queue.popleft())
                size += len(batch[-1].texts)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        self._set_waiting(self._waiting - size)
        return [chunk for chunk in batch if not chunk.future.done()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            texts = [text for chunk in batch for text in chunk.texts]
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.fn, texts)
                if len(results) != len(texts):
                    raise RuntimeError(f"the model returned {len(results)} results for {len(texts)} texts")
            except asyncio.CancelledError:
                for chunk in batch:
                    if not chunk.future.done():
                        chunk.future.set_exception(ShuttingDown("the server is shutting down"))
                raise
            except Exception as exc:  # every request of the batch gets the error
                for chunk in batch:
                    if not chunk.future.done():
                        chunk.future.set_exception(exc)
                continue
            finally:
                self.on_batch(len(texts), time.perf_counter() - start)
            offset = 0
            for chunk in batch:
                if not chunk.future.done():
                    chunk.future.set_result(list(results[offset:offset + len(chunk.texts)]))
                offset += len(chunk.texts)
