"""``multitype serve``: the HTTP inference API (and the SageMaker hosting contract) under uvicorn.

Everything that can be wrong is checked before a port is bound: the options,
the backend, ``SAGEMAKER_BIND_TO_PORT``, whether the port is free, and the
model itself (loaded once here; an ``s3://`` model is copied to a temporary
folder that lives as long as the server). ``--workers 1`` serves the app built
here; ``--workers N`` hands uvicorn the app factory
:func:`multitype.serve.app.app_from_env`, with the settings in the environment
and Prometheus' multiprocess directory set so ``/metrics`` adds up the workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from multitype.cli._common import ConfigDirOpt, RootOpt, console
from multitype.errors import UserError

PORT_ENV = "SAGEMAKER_BIND_TO_PORT"


def resolve_port(port: Optional[int]) -> int:
    """``SAGEMAKER_BIND_TO_PORT`` when set (the platform's contract wins), else ``--port``, else 8080."""
    raw = os.environ.get(PORT_ENV, "").strip()
    if not raw:
        return 8080 if port is None else port
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise UserError(f"{PORT_ENV}={raw!r} is not a port number (1-65535); fix or unset it")
    if port is not None and port != int(raw):
        console.print(f"{PORT_ENV}={raw} overrides --port {port}")
    return int(raw)


def check_free(host: str, port: int) -> None:
    """A :class:`UserError` when ``host:port`` cannot be bound (in use, or not an address of this machine)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port") from None


def _endpoint(config_dir: str) -> tuple[Optional[str], Optional[str]]:
    """S3 endpoint and AWS profile from project.yaml in ``config_dir`` (when there is one)."""
    from multitype.config import CONFIG_FILES, parse_config

    path = Path(config_dir) / CONFIG_FILES["project"]
    if not path.is_file():
        return None, None
    cfg = parse_config("project", path.read_text(encoding="utf-8"), str(path))
    return cfg.storage.endpoint_url, cfg.aws.profile  # type: ignore[union-attr]


def serve(
    model: Annotated[str, typer.Option("--model", help="A model folder (models/final/<name>), local or s3://, or registry:NAME (its production version) / registry:NAME:VERSION.")],
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 for every interface (containers).")] = "127.0.0.1",
    port: Annotated[Optional[int], typer.Option("--port", min=1, max=65535, help="Port (default 8080; SAGEMAKER_BIND_TO_PORT wins when set).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes, each with its own copy of the model.")] = 1,
    max_batch_size: Annotated[int, typer.Option("--max-batch-size", min=1, help="Most texts in one model call.")] = 32,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", min=0, help="How long a request waits for others to share its model call.")] = 5.0,
    backend: Annotated[str, typer.Option("--backend", help="torch (PyTorch or scikit-learn, as the model is), onnx or onnx-int8 (a transformer's export from 'multitype export onnx', under ONNX Runtime).")] = "torch",
    max_queue: Annotated[int, typer.Option("--max-queue", min=1, help="Most texts waiting for the model; more are answered 503.")] = 1024,
    timeout_s: Annotated[float, typer.Option("--timeout-s", min=0.001, help="A request not answered within this is answered 503.")] = 30.0,
    max_texts: Annotated[int, typer.Option("--max-texts", min=1, help="Most texts in one request (413 above).")] = 256,
    max_text_chars: Annotated[int, typer.Option("--max-text-chars", min=1, help="Most characters in one text (413 above).")] = 100_000,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1, help="Largest request body (413 above).")] = 1_000_000,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level: critical, error, warning, info, debug.")] = "info",
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="One log line per request.")] = True,
    config_dir: ConfigDirOpt = "configs",
    root: RootOpt = None,
) -> None:
    """Serve a model over HTTP: /predict, /health, /metrics, and SageMaker's /ping and /invocations."""
    # before torch loads (its OpenMP runtime reads this once): OpenMP threads that busy-wait between
    # operators fight the event loop, and anything else on the machine, for the cores. On 2 cores at
    # load 9 a one-text MiniLM call took 570-1000 ms with the default and 50-65 ms with PASSIVE
    # (benchmarks/README.md); a value the user set wins, and a process that already loaded torch is left alone
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from pydantic import ValidationError

    from multitype.serve.settings import ServeSettings, check_backend

    check_backend(backend)
    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise UserError(f"--log-level must be one of critical, error, warning, info, debug; got {log_level!r}")
    bind_port = resolve_port(port)
    check_free(host, bind_port)
    try:
        ServeSettings(model=model, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
                      request_timeout_s=timeout_s, max_texts=max_texts, max_text_chars=max_text_chars,
                      max_body_bytes=max_body_bytes, backend=backend)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None

    with contextlib.ExitStack() as stack:
        local = _local_model(stack, model, config_dir, backend, root)
        settings = ServeSettings(model=str(local), max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                                 max_queue=max_queue, request_timeout_s=timeout_s, max_texts=max_texts,
                                 max_text_chars=max_text_chars, max_body_bytes=max_body_bytes, backend=backend)
        _run(settings, model, host, bind_port, workers, log_level, access_log, stack)


def _local_model(stack: contextlib.ExitStack, model: str, config_dir: str, backend: str = "torch",
                 root: Optional[str] = None) -> Path:
    """A local folder with the model: itself, a temporary copy of an ``s3://`` folder (removed at exit), or the
    version a ``registry:`` reference names in the root's registry."""
    from multitype.errors import ModelError
    from multitype.predictor import check_backend_files
    from multitype.registry import PREFIX
    from multitype.storage import Storage, is_remote

    if model.startswith(PREFIX):
        from multitype.predict import model_place
        from multitype.project import open_project

        place = model_place(open_project(root, config_dir, "serve"), model,
                            echo=lambda line: console.print(line, soft_wrap=True, highlight=False, markup=False))
        check_backend_files(place.storage, model, backend, place.key)
        return stack.enter_context(place.storage.local_dir(place.key))
    if not is_remote(model):
        return Path(model.removeprefix("file://")).expanduser().resolve()
    endpoint, profile = _endpoint(config_dir)
    storage = Storage(model.rstrip("/"), endpoint_url=endpoint, profile=profile)
    if not storage.isdir(""):
        raise ModelError(f"model folder {model} not found; check the URL or train the model first")
    check_backend_files(storage, model, backend)
    return stack.enter_context(storage.local_dir(""))


def _run(settings, model: str, host: str, port: int, workers: int, log_level: str, access_log: bool,
         stack: contextlib.ExitStack) -> None:
    import uvicorn

    from multitype.serve.app import create_app, load_model

    served = load_model(settings.model, backend=settings.backend)  # a broken model stops here, before any port is bound
    info = served.info
    on = "" if info.backend == "torch" else f" on {info.backend}"
    console.print(f"serving {info.name} ({info.kind}{on}, version {info.version}, loaded in {served.load_seconds:.1f} s) "
                  f"from {model} on http://{host}:{port} with {workers} worker{'s' * (workers > 1)}; "
                  f"micro-batches of up to {settings.max_batch_size} texts, {settings.max_wait_ms:g} ms wait")
    common = dict(host=host, port=port, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=30)
    # uvicorn answers SIGTERM by finishing the requests in flight, then raises the signal again once it has
    # put back the handler it found: this one, so that a clean shutdown exits 0 instead of dying of SIGTERM
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        if workers == 1:
            uvicorn.run(create_app(settings, served), **common)
            return
        del served  # each worker loads its own copy
        metrics_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="multitype-metrics-"))
        os.environ.update(settings.to_env())
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run("multitype.serve.app:app_from_env", factory=True, workers=workers, **common)
    finally:
        signal.signal(signal.SIGTERM, previous)


def register(app: typer.Typer) -> None:
    """Add ``multitype serve`` to ``app``."""
    app.command()(serve)
