"""Micro-batching: concurrent requests share model calls, within max_batch_size; errors, a full queue, timeouts."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import httpx
import pytest

from multitype.serve import ServeSettings, create_app
from multitype.serve.app import load_model
from multitype.serve.batching import MicroBatcher, QueueFull, RequestTimeout
from tests.serve.conftest import TEXTS


def counting_model(folder, fail_on: str | None = None):
    """The real model, its predictor wrapped to record the size of every call (and fail on a text)."""
    served = load_model(str(folder))
    calls: list[int] = []
    predict = served.predictor.predict

    def recording(texts, batch_size=64):
        calls.append(len(texts))
        if fail_on is not None and fail_on in texts:
            raise ValueError(f"cannot classify {fail_on!r}")
        return predict(texts, batch_size)

    served.predictor.predict = recording  # type: ignore[method-assign]
    return served, calls


async def _traffic(app, requests: list[dict[str, Any]]) -> list[httpx.Response]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return list(await asyncio.gather(*(client.post("/predict", json=body) for body in requests)))


async def _get(app, path: str) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return (await client.get(path)).text


def metric(text: str, metric_name: str, /, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (labels in any order)."""
    for line in text.splitlines():
        m = re.fullmatch(rf"{re.escape(metric_name)}(?:\{{(.*)\}})? (\S+)", line)
        if m and dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or "")) == labels:
            return float(m.group(2))
    raise AssertionError(f"no sample {metric_name}{labels} in /metrics")


def test_concurrent_requests_share_model_calls(baseline) -> None:
    served, calls = counting_model(baseline.folder)
    app = create_app(ServeSettings(model=str(baseline.folder), max_batch_size=8, max_wait_ms=50), served)
    texts = [TEXTS[i % len(TEXTS)] for i in range(16)]
    solo = asyncio.run(_traffic(create_app(ServeSettings(model=str(baseline.folder)), served),
                                [{"texts": texts}]))[0].json()
    calls.clear()
    responses = asyncio.run(_traffic(app, [{"text": t} for t in texts]))
    assert [r.status_code for r in responses] == [200] * 16
    assert [r.json()["labels"][0] for r in responses] == solo["labels"]  # each request gets its own answer
    assert sum(calls) == 16 and len(calls) < 16 and max(calls) > 1, calls  # combined ...
    assert max(calls) <= 8, calls  # ... within max_batch_size

    text = asyncio.run(_get(app, "/metrics"))
    assert metric(text, "multitype_batch_size_count") == len(calls)
    assert metric(text, "multitype_batch_size_sum") == 16
    assert metric(text, "multitype_batch_size_bucket", le="1.0") < 16  # not one call per request
    assert metric(text, "multitype_requests_total", route="/predict", method="POST", status="200") == 16
    assert metric(text, "multitype_request_duration_seconds_count", route="/predict", method="POST", status="200") == 16


def test_max_batch_size_splits_a_large_request(baseline) -> None:
    served, calls = counting_model(baseline.folder)
    app = create_app(ServeSettings(model=str(baseline.folder), max_batch_size=4, max_wait_ms=20), served)
    texts = [TEXTS[i % len(TEXTS)] for i in range(10)]
    responses = asyncio.run(_traffic(app, [{"texts": texts}, {"text": TEXTS[0]}, {"texts": texts[:3]}]))
    assert [r.status_code for r in responses] == [200] * 3
    assert [len(r.json()["labels"]) for r in responses] == [10, 1, 3]
    assert sum(calls) == 14 and max(calls) <= 4, calls


def test_a_failing_batch_fails_each_of_its_requests_only(baseline) -> None:
    served, calls = counting_model(baseline.folder, fail_on="boom")
    app = create_app(ServeSettings(model=str(baseline.folder), max_wait_ms=50), served)
    responses = asyncio.run(_traffic(app, [{"text": "boom"}, {"text": TEXTS[0]}]))
    assert len(calls) == 1  # one batch for both ...
    for res in responses:  # ... so both get the error
        assert res.status_code == 500
        assert res.json() == {"detail": "prediction failed: ValueError: cannot classify 'boom'"}
    later = asyncio.run(_traffic(app, [{"text": TEXTS[0]}]))  # and the server goes on
    assert later[0].status_code == 200


def test_metrics_after_traffic(baseline) -> None:
    app = create_app(ServeSettings(model=str(baseline.folder)))

    async def run() -> str:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                await client.get("/health")
                await client.post("/predict", json={"texts": []})
                await client.post("/invocations", content=b"x", headers={"Content-Type": "text/plain"})
                await client.get("/nowhere")
                await client.post("/predict", json={"text": TEXTS[0]})
                return (await client.get("/metrics")).text

    text = asyncio.run(run())
    assert metric(text, "multitype_requests_total", route="/health", method="GET", status="200") == 1
    assert metric(text, "multitype_requests_total", route="/predict", method="POST", status="422") == 1
    assert metric(text, "multitype_requests_total", route="/invocations", method="POST", status="415") == 1
    assert metric(text, "multitype_requests_total", route="other", method="GET", status="404") == 1
    assert metric(text, "multitype_request_duration_seconds_bucket", route="/predict", method="POST",
                  status="200", le="+Inf") == 1
    assert metric(text, "multitype_queue_depth") == 0
    assert metric(text, "multitype_batch_size_count") == 1
    assert metric(text, "multitype_batch_duration_seconds_count") == 1
    assert 0 < metric(text, "multitype_model_load_seconds") < 60
    info = app.state.model.info
    assert metric(text, "multitype_model_info", name="logreg", version=info.version, kind="sklearn") == 1


# --- the batcher alone: a full queue and a timeout, with a model call that waits for the test -------------
def test_full_queue_and_timeout_answer_at_once() -> None:
    release = threading.Event()

    def slow(texts: list[str]) -> list[str]:
        release.wait(10)
        return [t.upper() for t in texts]

    async def run() -> None:
        batcher = MicroBatcher(slow, max_batch_size=2, max_wait_ms=0, max_queue=3, timeout_s=5)
        await batcher.start()
        try:
            running = asyncio.ensure_future(batcher.submit(["a"]))  # taken by the worker, blocks in slow()
            await asyncio.sleep(0.05)
            queued = asyncio.ensure_future(batcher.submit(["b", "c"]))
            await asyncio.sleep(0.01)
            assert batcher.waiting == 2
            with pytest.raises(QueueFull, match=r"^2 texts are waiting and the queue holds 3 \(max_queue\); retry later$"):
                await batcher.submit(["d", "e"])
            batcher.timeout_s = 0.1
            with pytest.raises(RequestTimeout, match=r"^no answer within 0.1 s \(request_timeout_s\)"):
                await batcher.submit(["f"])
            assert batcher.waiting == 2  # the timed-out text left the queue
            release.set()
            assert await running == ["A"] and await queued == ["B", "C"]
        finally:
            release.set()
            await batcher.stop()

    asyncio.run(run())


def test_server_answers_503_when_the_queue_is_full(baseline) -> None:
    served, _ = counting_model(baseline.folder)
    release = threading.Event()
    predict = served.predictor.predict

    def blocked(texts, batch_size=64):
        release.wait(10)
        return predict(texts, batch_size)

    served.predictor.predict = blocked  # type: ignore[method-assign]
    app = create_app(ServeSettings(model=str(baseline.folder), max_queue=2, max_wait_ms=0, max_batch_size=1), served)

    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                first = asyncio.ensure_future(client.post("/predict", json={"text": "a"}))
                await asyncio.sleep(0.1)
                queued = asyncio.ensure_future(client.post("/predict", json={"texts": ["b", "c"]}))
                await asyncio.sleep(0.1)
                refused = await client.post("/predict", json={"text": "d"})
                release.set()
                return [await first, await queued, refused]

    first, queued, refused = asyncio.run(run())
    assert first.status_code == queued.status_code == 200
    assert refused.status_code == 503
    assert refused.json() == {"detail": "2 texts are waiting and the queue holds 2 (max_queue); retry later"}
