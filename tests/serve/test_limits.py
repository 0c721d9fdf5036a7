"""Bad requests get a 4xx that names the problem, and the server keeps answering."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from multitype.serve import ServeSettings, create_app


@pytest.fixture(scope="module")
def client(baseline) -> TestClient:
    settings = ServeSettings(model=str(baseline.folder), max_texts=4, max_text_chars=50, max_body_bytes=2_000)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("route", ["/predict", "/invocations"])
@pytest.mark.parametrize("body, status, detail", [
    (b'{"texts": ["a", "b"', 400, "malformed JSON at line 1 column 20: Expecting ',' delimiter"),
    (b"", 400, 'the request body is empty; send JSON such as {"texts": ["..."]}'),
    (b"\xff\xfe{}", 400, "the request body is not UTF-8 text"),
    (b'"just a string"', 422, "expected a JSON object with 'text' or 'texts', got a JSON string"),
    (b"{}", 422, "send exactly one of 'text' (one string) or 'texts' (a list of strings)"),
    (b'{"text": "a", "texts": ["b"]}', 422, "send exactly one of 'text' (one string) or 'texts' (a list of strings)"),
    (b'{"txt": "a"}', 422, "unknown field 'txt'; send 'text' (one string) or 'texts' (a list of strings)"),
    (b'{"texts": ["a", 3]}', 422, "'texts.1': input should be a valid string"),
    (b'{"text": 3}', 422, "'text': input should be a valid string"),
    (b'{"texts": []}', 422, "no texts to classify; send at least one non-empty text"),
    (b'{"text": "   "}', 422, "text 0 is empty; every text needs some non-blank characters"),
    (b'{"texts": ["a", "b", "c", "d", "e"]}', 413, "5 texts in one request; the limit is 4 (max_texts)"),
    (b'{"texts": ["ok", "' + b"x" * 51 + b'"]}', 413, "text 1 has 51 characters; the limit is 50 (max_text_chars)"),
    (b'{"text": "' + b"x" * 3000 + b'"}', 413, "the request body has 3,012 bytes; the limit is 2,000 (max_body_bytes)"),
])
def test_bad_json_requests(client: TestClient, route: str, body: bytes, status: int, detail: str) -> None:
    res = client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert (res.status_code, res.json()) == (status, {"detail": detail})
    assert client.post(route, json={"text": "still serving"}).status_code == 200


def test_chunked_body_over_the_limit(client: TestClient) -> None:
    def parts():  # no Content-Length: the limit is enforced while reading
        for _ in range(30):
            yield b"x" * 100

    res = client.post("/predict", content=parts(), headers={"Content-Type": "application/json"})
    assert res.status_code == 413 and res.json()["detail"] == "the request body passes 2,000 bytes (max_body_bytes)"


@pytest.mark.parametrize("body, status, detail", [
    (b'a,b\n', 400, "CSV line 1 has 2 fields; send one text per row and quote texts that contain commas"),
    (b'"unclosed\n', 400, "malformed CSV: unexpected end of data"),
    (b"\n\n", 422, "no texts to classify; send at least one non-empty text"),
    (b"one\ntwo\nthree\nfour\nfive\n", 413, "5 texts in one request; the limit is 4 (max_texts)"),
])
def test_bad_csv_requests(client: TestClient, body: bytes, status: int, detail: str) -> None:
    res = client.post("/invocations", content=body, headers={"Content-Type": "text/csv"})
    assert (res.status_code, res.json()) == (status, {"detail": detail})
    res = client.post("/invocations", content=b'"a, quoted text"\n\nsecond\n', headers={"Content-Type": "text/csv"})
    assert res.status_code == 200 and len(res.json()["labels"]) == 2


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.get("/nowhere").status_code == 404
    assert client.get("/predict").status_code == 405
