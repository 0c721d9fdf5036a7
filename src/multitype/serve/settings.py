"""Settings of one server: the model, the micro-batching knobs and the request limits.

``multitype serve`` builds one :class:`ServeSettings`, validated before the model
loads. With ``--workers N > 1`` uvicorn starts each worker from an import string,
so the settings travel to the workers as JSON in :data:`SETTINGS_ENV`
(:meth:`ServeSettings.to_env` / :meth:`ServeSettings.from_env`).
"""

from __future__ import annotations

import json
import os

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from multitype.errors import UserError
from multitype.predictor import BACKENDS

SETTINGS_ENV = "MULTITYPE_SERVE_SETTINGS"


class ServeSettings(BaseModel):
    """What one server process needs to build its app.

    Parameters
    ----------
    model : str
        A local model folder (``s3://`` models are copied to a local folder by the CLI first).
    max_batch_size : int, default=32
        Most texts in one model call; concurrent requests are combined up to this.
    max_wait_ms : float, default=5
        How long the first queued request waits for others to join its batch.
    max_queue : int, default=1024
        Most texts waiting for the model; a request that does not fit is answered 503.
    request_timeout_s : float, default=30
        A request not answered within this (queue wait + model call) is answered 503.
    max_texts : int, default=256
        Most texts in one request (413 above).
    max_text_chars : int, default=100000
        Most characters in one text (413 above); longer token sequences are truncated, not refused.
    max_body_bytes : int, default=1000000
        Largest request body (413 above).
    backend : {"torch", "onnx", "onnx-int8"}, default="torch"
        ``torch``: PyTorch or scikit-learn, as the model is; ``onnx`` / ``onnx-int8``: a transformer's
        ``onnx/model.onnx`` / ``onnx/model.int8.onnx`` under ONNX Runtime (``multitype export onnx``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    max_batch_size: int = Field(32, ge=1, le=4096)
    max_wait_ms: float = Field(5.0, ge=0, le=10_000)
    max_queue: int = Field(1024, ge=1)
    request_timeout_s: float = Field(30.0, gt=0)
    max_texts: int = Field(256, ge=1)
    max_text_chars: int = Field(100_000, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1)
    backend: str = "torch"

    def to_env(self) -> dict[str, str]:
        """``{SETTINGS_ENV: json}`` for the worker processes' environment."""
        return {SETTINGS_ENV: self.model_dump_json()}

    @classmethod
    def from_env(cls) -> "ServeSettings":
        """The settings a parent ``multitype serve`` put in :data:`SETTINGS_ENV`."""
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise UserError(f"{SETTINGS_ENV} is not set; start workers with 'multitype serve --workers N'")
        try:
            return cls.model_validate(json.loads(raw))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise UserError(f"{SETTINGS_ENV} is not valid settings JSON: {' '.join(str(exc).split())[:200]}") from None


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`~multitype.predictor.BACKENDS`, else a :class:`UserError` listing them."""
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of: {', '.join(BACKENDS)}; got {backend!r}")
    return backend
