"""The SageMaker hosting contract: ``GET /ping`` and ``POST /invocations`` on one port.

SageMaker sends ``/invocations`` bodies with the content type the caller chose.
We take:

* ``application/json``: ``{"text": ...}``, ``{"texts": [...]}`` or a bare list of strings;
* ``text/csv``: one text per row, read with the csv module (quote a text that holds
  commas, quotes or line breaks; blank rows are skipped; a row with more than one
  field is refused, so a comma never silently splits a text);

and answer 415 for anything else. The answer is JSON (as ``/predict``), or CSV
(``predicted_label,<score_kind>_<class>...``, with a header) when the ``Accept``
header asks for ``text/csv``.
"""

from __future__ import annotations

import csv
import io

from multitype.serve.schemas import ApiError, PredictResponse, parse_json, texts_from_json

CONTENT_TYPES = ("application/json", "text/csv")


def media_type(header: str | None) -> str:
    """``"text/csv; charset=utf-8"`` -> ``"text/csv"`` (``""`` when absent)."""
    return (header or "").split(";", 1)[0].strip().lower()


def check_content_type(content_type: str | None) -> str:
    """The media type of an ``/invocations`` request if we read it, else 415 (checked before the body is read)."""
    kind = media_type(content_type)
    if kind not in CONTENT_TYPES:
        raise ApiError(415, f"content type {kind or '(none)'!r} is not supported; send {' or '.join(CONTENT_TYPES)}")
    return kind


def texts_from_body(body: bytes, content_type: str | None) -> list[str]:
    """The texts of an ``/invocations`` body by its content type; 415 for an unsupported one."""
    kind = check_content_type(content_type)
    if kind == "application/json":
        return texts_from_json(parse_json(body), allow_list=True)
    return texts_from_csv(body)


def texts_from_csv(body: bytes) -> list[str]:
    """One text per CSV row (first and only field); blank rows skipped."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(400, "the CSV body is not UTF-8 text") from None
    texts: list[str] = []
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        for row in reader:
            if not row or not "".join(row).strip():
                continue
            if len(row) > 1:
                raise ApiError(400, f"CSV line {reader.line_num} has {len(row)} fields; send one text per row "
                                    "and quote texts that contain commas")
            texts.append(row[0])
    except csv.Error as exc:
        raise ApiError(400, f"malformed CSV: {exc}") from None
    return texts


def wants_csv(accept: str | None) -> bool:
    """True when the ``Accept`` header asks for CSV (and not JSON first)."""
    kinds = [media_type(part) for part in (accept or "").split(",")]
    return "text/csv" in kinds and ("application/json" not in kinds or kinds.index("text/csv") < kinds.index("application/json"))


def csv_answer(response: PredictResponse, classes: list[str]) -> str:
    """``predicted_label,<score_kind>_<class>...`` rows for a CSV ``Accept``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["predicted_label", *(f"{response.score_kind}_{c}" for c in classes), "truncated"])
    for label, scores, cut in zip(response.labels, response.scores, response.truncated):
        writer.writerow([label, *(f"{scores[c]:.6f}" for c in classes), str(cut).lower()])
    return buf.getvalue()
