"""``create_app(settings)``: the FastAPI app of ``multitype serve``.

Loads the model first (a model that cannot load stops start-up with its
:class:`~multitype.errors.ModelError`, before any port is bound), then wires the
routes: ``POST /predict``, ``GET /health``, the SageMaker pair ``GET /ping`` and
``POST /invocations`` (:mod:`.sagemaker`), ``GET /metrics`` (:mod:`.metrics`),
and FastAPI's ``/openapi.json`` and ``/docs``. Every prediction goes through
one :class:`~.batching.MicroBatcher`, started and stopped with the app's
lifespan. Bodies are read with a size limit; refusals are ``{"detail": ...}``
with the status :mod:`.schemas` chose.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from multitype import __version__
from multitype.predictor import Predictor, load_predictor
from multitype.serve import sagemaker
from multitype.serve.batching import MicroBatcher, QueueFull, RequestTimeout, ShuttingDown
from multitype.serve.metrics import Metrics
from multitype.serve.schemas import (ApiError, HealthResponse, ModelInfo, PredictRequest, PredictResponse,
                                     check_texts, parse_json, texts_from_json)
from multitype.serve.settings import ServeSettings

log = logging.getLogger("multitype.serve")

ROUTES = ("/predict", "/health", "/ping", "/invocations", "/metrics", "/openapi.json", "/docs")
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON or CSV"},
    413: {"description": "Body, number of texts or a text over its limit (the message names the limit)"},
    415: {"description": "Unsupported content type"},
    422: {"description": "No text, a blank text, or a field of the wrong type"},
    503: {"description": "Queue full, request timed out, or shutting down"},
}


@dataclass
class ServedModel:
    """A loaded predictor and what the API says about it."""

    predictor: Predictor
    info: ModelInfo
    load_seconds: float


def model_version(folder: Path) -> str:
    """The first 12 hex digits of :func:`multitype.manifest.folder_digest` (the registry's model sha256)."""
    from multitype.manifest import folder_digest

    return folder_digest(folder)[:12]


def load_model(model: str, device: str | None = None, backend: str = "torch") -> ServedModel:
    """Load the model at ``model`` (a local folder) with ``backend`` and describe it."""
    start = time.perf_counter()
    predictor = load_predictor(model, device=device, backend=backend)
    seconds = time.perf_counter() - start
    info = ModelInfo(name=predictor.name, version=model_version(predictor.path), kind=predictor.kind,
                     backend=predictor.backend, labels=predictor.labels, score_kind=predictor.score_kind,
                     max_length=predictor.max_length)
    return ServedModel(predictor, info, seconds)


class _ObserveRequests:
    """ASGI middleware: a count and a latency per (route, method, status)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope["path"] if scope["path"] in ROUTES else "other"
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - start)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body has {int(declared):,} bytes; the limit is {limit:,} (max_body_bytes)")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise ApiError(413, f"the request body passes {limit:,} bytes (max_body_bytes)")
    return bytes(body)


def create_app(settings: ServeSettings, model: ServedModel | None = None) -> FastAPI:
    """The serving app for ``settings`` (loads ``settings.model`` unless ``model`` is given).

    Parameters
    ----------
    settings : ServeSettings
        Model folder, micro-batching knobs and request limits.
    model : ServedModel, optional
        An already loaded model (tests, or the CLI that loaded it to check it).

    Raises
    ------
    ModelError
        The model cannot be loaded.
    """
    served = model or load_model(settings.model, backend=settings.backend)
    predictor, info = served.predictor, served.info
    metrics = Metrics()
    metrics.model_load.set(served.load_seconds)
    metrics.model_info.labels(info.name, info.version, info.kind).set(1)

    def infer(texts: list[str]) -> list[tuple[str, Any, bool]]:
        labels, scores = predictor.predict(texts, batch_size=settings.max_batch_size)
        return list(zip(labels, scores.tolist(), predictor.truncated(texts)))

    batcher = MicroBatcher(infer, settings.max_batch_size, settings.max_wait_ms, settings.max_queue,
                           settings.request_timeout_s, on_batch=metrics.observe_batch, on_queue=metrics.queue_depth.set)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="multitype", version=__version__, lifespan=lifespan,
                  description=f"Text classification with {info.name} ({info.kind}, version {info.version}). "
                              "Concurrent requests are combined into one model call (dynamic micro-batching).")
    app.state.settings, app.state.model, app.state.metrics, app.state.batcher = settings, served, metrics, batcher
    app.add_middleware(_ObserveRequests, metrics=metrics)

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    async def classify(texts: list[str]) -> PredictResponse:
        check_texts(texts, settings)
        try:
            results = await batcher.submit(texts)
        except (QueueFull, RequestTimeout, ShuttingDown) as exc:
            raise ApiError(503, str(exc)) from None
        except Exception as exc:  # the model failed on this batch: answer, never crash
            log.exception("prediction failed")
            raise ApiError(500, f"prediction failed: {type(exc).__name__}: {exc}") from None
        return PredictResponse(model=info.name, version=info.version, score_kind=info.score_kind,
                               labels=[label for label, _, _ in results],
                               scores=[dict(zip(info.labels, row)) for _, row, _ in results],
                               truncated=[cut for _, _, cut in results])

    body_schema = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()}}}}

    @app.post("/predict", response_model=PredictResponse, responses=_ERRORS, openapi_extra=body_schema,
              summary="Classify one text or a list of texts")
    async def predict(request: Request) -> PredictResponse:
        kind = sagemaker.media_type(request.headers.get("content-type"))
        if kind not in ("", "application/json"):
            raise ApiError(415, f"content type {kind!r} is not supported; send application/json")
        body = await read_body(request, settings.max_body_bytes)
        return await classify(texts_from_json(parse_json(body)))

    @app.get("/health", response_model=HealthResponse, summary="The model served and the queue")
    async def health() -> HealthResponse:
        return HealthResponse(status="ok", model=info, queue_depth=batcher.waiting)

    @app.get("/ping", summary="SageMaker health check: 200 once the model is loaded")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    invocation_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"anyOf": [PredictRequest.model_json_schema(),
                                                  {"type": "array", "items": {"type": "string"}}]}},
        "text/csv": {"schema": {"type": "string"}, "example": "\"First text, with a comma\"\nSecond text\n"}}}}

    @app.post("/invocations", response_model=PredictResponse, responses=_ERRORS, openapi_extra=invocation_body,
              summary="SageMaker inference: JSON or CSV (one text per row) in; JSON, or CSV when Accept asks")
    async def invocations(request: Request) -> Any:
        kind = sagemaker.check_content_type(request.headers.get("content-type"))  # before reading the body
        body = await read_body(request, settings.max_body_bytes)
        answer = await classify(sagemaker.texts_from_body(body, kind))
        if sagemaker.wants_csv(request.headers.get("accept")):
            return Response(sagemaker.csv_answer(answer, info.labels), media_type="text/csv")
        return answer

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    return app


def app_from_env() -> FastAPI:
    """The app factory that uvicorn's worker processes call (``--workers N``): settings from the environment."""
    return create_app(ServeSettings.from_env())
