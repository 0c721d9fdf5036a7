"""The public Python API: ``from multitype import load_predictor``, local folders and s3:// URLs."""

from __future__ import annotations

import numpy as np
import pytest

import multitype
from multitype import load_predictor
from multitype.errors import ModelError
from tests.serve.conftest import LABELS, TEXTS, free_port


@pytest.mark.parametrize("kind", ["baseline", "transformer"])
def test_predict_returns_labels_and_probabilities(kind: str, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue("baseline").folder if kind == "baseline" \
        else request.getfixturevalue("tiny_transformer")
    p = load_predictor(folder)
    assert "load_predictor" in multitype.__all__ and p.labels == LABELS and p.score_kind == "prob"
    assert p.name == ("logreg" if kind == "baseline" else "minilm")
    labels, scores = p.predict(TEXTS, batch_size=4)  # batches of 4 inside, one answer per text
    assert len(labels) == len(TEXTS) and scores.shape == (len(TEXTS), len(LABELS))
    assert np.allclose(scores.sum(axis=1), 1, atol=1e-5)
    assert labels == [LABELS[i] for i in scores.argmax(axis=1)]
    singles = np.concatenate([p.predict([t])[1] for t in TEXTS])
    assert np.allclose(scores, singles, atol=1e-5)


def test_load_predictor_refuses_a_missing_folder(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_predictor(tmp_path / "nope")


@pytest.mark.slow
def test_s3_model_in_python_and_in_serve(baseline, s3_server, tmp_path) -> None:
    from multitype.storage import Storage
    from tests.serve.test_cli import Server

    import httpx

    bucket = s3_server.make_bucket("serve")
    Storage(f"s3://{bucket}/proj").put_dir(baseline.folder, "models/final/logreg")
    url = f"s3://{bucket}/proj/models/final/logreg"
    remote, local = load_predictor(url), load_predictor(baseline.folder)
    assert remote.source == url and remote.name == "logreg"
    assert remote.predict(TEXTS)[0] == local.predict(TEXTS)[0]
    with pytest.raises(ModelError, match=f"model folder s3://{bucket}/proj/models/final/nope not found"):
        load_predictor(f"s3://{bucket}/proj/models/final/nope")

    port = free_port()
    server = Server(tmp_path, "--model", url, "--port", str(port), "--no-access-log", env=s3_server.env)
    try:
        base = server.wait_ready(port)
        body = httpx.post(f"{base}/predict", json={"texts": TEXTS}, timeout=30).json()
        assert body["labels"] == local.predict(TEXTS)[0] and body["model"] == "logreg"
    finally:
        assert server.stop() == 0
