"""Request and response bodies, and the checks that turn bad input into a clear 4xx.

A prediction request is ``{"text": "..."}`` or ``{"texts": ["...", ...]}``
(``/invocations`` also takes a bare JSON list of strings, or CSV: see
:mod:`.sagemaker`). :func:`check_texts` applies the limits; every refusal is an
:class:`ApiError` whose message names the field or the limit and the bad value.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from multitype.serve.settings import ServeSettings


class ApiError(Exception):
    """A request the server refuses: an HTTP status and a one-line message (``{"detail": message}``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PredictRequest(BaseModel):
    """One text or a list of texts (exactly one of the two)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "The striker scored twice in the final."},
                     {"texts": ["Shares fell after the results.", "The bill passed its second reading."]}]})

    text: Optional[str] = Field(None, description="One text to classify.")
    texts: Optional[list[str]] = Field(None, description="Several texts to classify (at most max_texts).")


class ModelInfo(BaseModel):
    """What the server serves."""

    name: str = Field(description="model_name (transformers) or model (baselines) from model.json, else the folder name.")
    version: str = Field(description="The first 12 hex digits of a sha256 over the model folder's files.")
    kind: str = Field(description="'transformer' or 'sklearn'.")
    backend: str = Field("torch", description="What runs it: 'torch' (PyTorch or scikit-learn), 'onnx' or 'onnx-int8' "
                                              "(ONNX Runtime).")
    labels: list[str] = Field(description="Class names, in score order.")
    score_kind: str = Field(description="'prob': probabilities; 'score': a softmax of a linear SVM's margins.")
    max_length: Optional[int] = Field(description="Tokens a text is cut to (transformers); null for baselines.")


class PredictResponse(BaseModel):
    """One entry per input text, in input order."""

    model: str = Field(description="The model's name.")
    version: str = Field(description="The model's version (content hash).")
    score_kind: str = Field(description="'prob' (probabilities) or 'score' (softmaxed SVM margins).")
    labels: list[str] = Field(description="The predicted class of each text.")
    scores: list[dict[str, float]] = Field(description="Per text: class name -> probability (rows sum to 1).")
    truncated: list[bool] = Field(description="Per text: longer than the model's max_length tokens, so cut to it.")


class HealthResponse(BaseModel):
    status: str
    model: ModelInfo
    queue_depth: int = Field(description="Texts waiting for the model.")


def parse_json(body: bytes) -> Any:
    """The JSON value of a request body, or a 400 naming the position of the error."""
    if not body.strip():
        raise ApiError(400, "the request body is empty; send JSON such as {\"texts\": [\"...\"]}")
    try:
        return json.loads(body.decode("utf-8-sig"))  # JSON is UTF-8 (RFC 8259); a byte-order mark is let through
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def texts_from_json(data: Any, allow_list: bool = False) -> list[str]:
    """The texts of a parsed request: ``{"text": ...}``, ``{"texts": [...]}`` (or, with ``allow_list``, a list)."""
    if allow_list and isinstance(data, list):
        data = {"texts": data}
    if not isinstance(data, dict):
        raise ApiError(422, f"expected a JSON object with 'text' or 'texts', got a JSON {_json_type(data)}")
    try:
        request = PredictRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "extra_forbidden":
            raise ApiError(422, f"unknown field '{where}'; send 'text' (one string) or 'texts' (a list of strings)") from None
        raise ApiError(422, f"'{where}': {first['msg'][0].lower()}{first['msg'][1:]}") from None
    if (request.text is None) == (request.texts is None):
        raise ApiError(422, "send exactly one of 'text' (one string) or 'texts' (a list of strings)")
    return [request.text] if request.text is not None else list(request.texts or [])


def check_texts(texts: list[str], settings: ServeSettings) -> list[str]:
    """``texts`` if within the limits: 422 for none or a blank one, 413 for too many or too long."""
    if not texts:
        raise ApiError(422, "no texts to classify; send at least one non-empty text")
    if len(texts) > settings.max_texts:
        raise ApiError(413, f"{len(texts)} texts in one request; the limit is {settings.max_texts} (max_texts)")
    for i, text in enumerate(texts):
        if not text.strip():
            raise ApiError(422, f"text {i} is empty; every text needs some non-blank characters")
        if len(text) > settings.max_text_chars:
            raise ApiError(413, f"text {i} has {len(text):,} characters; the limit is {settings.max_text_chars:,} "
                                "(max_text_chars)")
    return texts


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
