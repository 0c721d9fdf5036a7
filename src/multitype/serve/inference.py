"""The handler of a SageMaker endpoint: ``code/inference.py`` in the ``model.tar.gz`` that ``sagemaker deploy`` packs.

The stock AWS PyTorch inference image (its SageMaker inference toolkit) unpacks
``model.tar.gz`` into ``/opt/ml/model``, runs ``pip install -r
code/requirements.txt``, imports this file (``SAGEMAKER_PROGRAM=inference.py``)
and calls, per request::

    model = model_fn("/opt/ml/model")                  # once, at start-up
    data = input_fn(body, content_type)                # -> list of texts
    prediction = predict_fn(data, model)               # -> PredictResponse
    body, content_type = output_fn(prediction, accept)

The requirements install what multitype needs (torch only as a pin to the image's own);
the package itself travels beside this file in ``code/src/`` (as in the
training sourcedir), which is put first on ``sys.path`` below. Parsing and the
limits are those of ``multitype serve``'s ``/invocations``
(:mod:`multitype.serve.sagemaker`, :mod:`multitype.serve.schemas`). A request
the server would refuse with a 4xx raises the toolkit's own error with that
status when the toolkit is there (so the caller sees 400/413/415/422, not 500),
else :class:`~multitype.serve.schemas.ApiError`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if os.path.isdir(os.path.join(_SRC, "multitype")) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from multitype.serve import sagemaker as contract  # noqa: E402
from multitype.serve.schemas import ApiError, PredictResponse, check_texts  # noqa: E402
from multitype.serve.settings import ServeSettings  # noqa: E402

JSON = "application/json"


@dataclass
class Loaded:
    """What :func:`model_fn` hands to :func:`predict_fn`: the served model and the limits in force."""

    served: Any  # multitype.serve.app.ServedModel
    settings: ServeSettings


def _refuse(exc: ApiError) -> Exception:
    """The inference toolkit's error with our status (its handler answers with it), else ``exc`` itself."""
    try:
        from sagemaker_inference.errors import GenericInferenceToolkitError
    except ImportError:
        return exc
    return GenericInferenceToolkitError(exc.status, exc.message, exc.message)


def model_fn(model_dir: str) -> Loaded:
    """Load the model folder (baseline or transformer) with :func:`multitype.load_predictor`."""
    from multitype.serve.app import load_model

    return Loaded(load_model(model_dir), ServeSettings(model=str(model_dir)))


def input_fn(input_data: Any, content_type: str | None) -> list[str]:
    """The texts of a request: JSON (``{"text"}``, ``{"texts"}`` or a list of strings) or CSV (one per row)."""
    body = input_data.encode("utf-8") if isinstance(input_data, str) else bytes(input_data)
    try:
        return contract.texts_from_body(body, content_type or JSON)
    except ApiError as exc:
        raise _refuse(exc) from None


def predict_fn(data: list[str], model: Loaded) -> PredictResponse:
    """Labels and per-class scores for ``data`` (the same limits as ``multitype serve``)."""
    try:
        texts = check_texts(list(data), model.settings)
    except ApiError as exc:
        raise _refuse(exc) from None
    predictor, info = model.served.predictor, model.served.info
    labels, scores = predictor.predict(texts, batch_size=model.settings.max_batch_size)
    return PredictResponse(model=info.name, version=info.version, score_kind=info.score_kind, labels=labels,
                           scores=[dict(zip(info.labels, row)) for row in scores.tolist()],
                           truncated=predictor.truncated(texts))


def output_fn(prediction: PredictResponse, accept: str | None) -> tuple[str, str]:
    """``(body, content type)``: JSON as ``/predict`` answers, or CSV when ``accept`` asks for ``text/csv``."""
    if contract.wants_csv(accept):
        return contract.csv_answer(prediction, list(prediction.scores[0]) if prediction.scores else []), "text/csv"
    return prediction.model_dump_json(), JSON
