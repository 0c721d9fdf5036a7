"""The routes of the serving app, in process, with a real baseline and a real transformer (MiniLM fine-tuned for a few steps)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from multitype import load_predictor
from multitype.serve import ServeSettings, create_app
from tests.serve.conftest import LABELS, TEXTS


@pytest.fixture(scope="module", params=["baseline", "transformer"])
def served(request: pytest.FixtureRequest) -> tuple[TestClient, Path]:
    folder = request.getfixturevalue("baseline").folder if request.param == "baseline" \
        else request.getfixturevalue("tiny_transformer")
    with TestClient(create_app(ServeSettings(model=str(folder), max_wait_ms=1))) as client:
        yield client, folder


def test_predict_one_and_many_match_multitype_predict(served, tmp_path: Path, config_dir: Path, cli) -> None:
    client, folder = served
    one = client.post("/predict", json={"text": TEXTS[2]})
    assert one.status_code == 200, one.text
    body = one.json()
    assert set(body) == {"model", "version", "score_kind", "labels", "scores", "truncated"}
    assert len(body["labels"]) == len(body["scores"]) == len(body["truncated"]) == 1
    assert list(body["scores"][0]) == LABELS and body["score_kind"] == "prob"
    assert sum(body["scores"][0].values()) == pytest.approx(1, abs=1e-5)

    many = client.post("/predict", json={"texts": TEXTS}).json()
    assert many["labels"][2] == body["labels"][0]
    assert many["scores"][2] == pytest.approx(body["scores"][0], abs=1e-5)

    # the same texts through the CLI: the same labels and probabilities
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    res = cli("predict", "--model", folder, "--input", src, "--output", tmp_path / "p.csv",
              "--root", tmp_path / "root", "--config-dir", config_dir)
    assert res.exit_code == 0, res.stderr
    frame = pd.read_csv(tmp_path / "p.csv")
    assert frame["predicted_label"].tolist() == many["labels"]
    probs = np.array([[row[c] for c in LABELS] for row in many["scores"]])
    assert np.allclose(frame[[f"prob_{c}" for c in LABELS]].to_numpy(), probs, atol=1e-5)


def test_baseline_predicts_the_topic(baseline) -> None:
    with TestClient(create_app(ServeSettings(model=str(baseline.folder)))) as client:
        body = client.post("/predict", json={"texts": TEXTS}).json()
    assert body["labels"] == ["business", "politics", "sports", "tech", "business", "tech"]
    assert body["model"] == "logreg" and body["truncated"] == [False] * len(TEXTS)


def test_python_api_matches_the_server(served) -> None:
    client, folder = served
    labels, scores = load_predictor(folder).predict(TEXTS, batch_size=4)
    body = client.post("/predict", json={"texts": TEXTS}).json()
    assert body["labels"] == labels
    assert np.allclose([[row[c] for c in LABELS] for row in body["scores"]], scores, atol=1e-5)


def test_health_and_ping(served) -> None:
    client, folder = served
    health = client.get("/health")
    assert health.status_code == 200
    info = health.json()
    assert info["status"] == "ok" and info["queue_depth"] == 0
    model = info["model"]
    assert model["labels"] == LABELS and len(model["version"]) == 12
    if model["kind"] == "transformer":
        assert model["name"] == "minilm" and model["max_length"] == 64 and model["backend"] == "torch"
    else:
        assert model["name"] == "logreg" and model["kind"] == "sklearn" and model["max_length"] is None
    assert client.post("/predict", json={"text": "x y z"}).json()["version"] == model["version"]
    assert client.get("/ping").status_code == 200


def test_invocations_json_csv_and_415(served) -> None:
    client, _ = served
    three = [TEXTS[3], TEXTS[1], TEXTS[2]]  # the first holds commas
    direct = client.post("/predict", json={"texts": three}).json()
    for payload in ({"texts": three}, three):  # an object or a bare list of strings
        res = client.post("/invocations", content=json.dumps(payload), headers={"Content-Type": "application/json"})
        assert res.status_code == 200, res.text
        assert res.json()["labels"] == direct["labels"]

    buf = io.StringIO()
    csv.writer(buf).writerows([[t] for t in three])  # the first is quoted by the writer
    assert '"' in buf.getvalue()
    res = client.post("/invocations", content=buf.getvalue().encode(), headers={"Content-Type": "text/csv; charset=utf-8"})
    assert res.status_code == 200, res.text
    assert res.json()["labels"] == direct["labels"]

    res = client.post("/invocations", content=buf.getvalue().encode(),
                      headers={"Content-Type": "text/csv", "Accept": "text/csv"})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(res.text)))
    assert rows[0] == ["predicted_label", *(f"prob_{c}" for c in LABELS), "truncated"]
    assert [r[0] for r in rows[1:]] == direct["labels"]

    for kind in ("text/plain", "application/x-www-form-urlencoded", None):
        res = client.post("/invocations", content=b"hello", headers={"Content-Type": kind} if kind else {})
        assert res.status_code == 415, (kind, res.text)
        assert "application/json or text/csv" in res.json()["detail"]
    res = client.post("/predict", content=b"text=hello", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert res.status_code == 415 and res.json()["detail"] == (
        "content type 'application/x-www-form-urlencoded' is not supported; send application/json")


def test_truncation_is_reported(tiny_transformer: Path) -> None:
    long = " ".join(["market"] * 200)  # ~200 tokens, the model reads 64
    with TestClient(create_app(ServeSettings(model=str(tiny_transformer)))) as client:
        body = client.post("/predict", json={"texts": ["short text", long, "é" * 40]}).json()
    assert body["truncated"] == [False, True, False]


def test_openapi_lists_the_routes(served) -> None:
    client, _ = served
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/ping", "/invocations", "/metrics"} <= set(schema["paths"])
    predict = schema["paths"]["/predict"]["post"]
    assert set(predict["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {"text", "texts"}
    assert {"200", "413", "415", "422", "503"} <= set(predict["responses"])
    assert set(schema["paths"]["/invocations"]["post"]["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert "PredictResponse" in schema["components"]["schemas"]
