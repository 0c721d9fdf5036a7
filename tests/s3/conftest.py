"""A moto S3 server for what SeaweedFS does not implement (lifecycle transitions)."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture(scope="module")
def moto_s3():
    """``ThreadedMotoServer`` on 127.0.0.1 and a free port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_env(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """AWS_* pointing at the moto server (fake credentials); returns the endpoint."""
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_s3}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_s3
