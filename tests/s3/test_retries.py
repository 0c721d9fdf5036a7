"""Retries: S3 answering 503 SlowDown or dropping connections now and then does not fail a sync."""

from __future__ import annotations

import http.client
import itertools
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from multitype.sync import sync

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class FlakyProxy:
    """A loopback HTTP proxy in front of the S3 server: every ``every``-th request gets a
    503 SlowDown, every ``drop``-th has its connection closed without an answer."""

    def __init__(self, upstream: str, every: int = 4, drop: int = 7) -> None:
        target = urlsplit(upstream)
        counter = itertools.count(1)
        self.injected = {"503": 0, "dropped": 0}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                n = next(counter)
                if n % drop == 0:
                    proxy.injected["dropped"] += 1
                    self.close_connection = True
                    self.connection.close()
                    return
                if n % every == 0:
                    proxy.injected["503"] += 1
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)  # Host kept: signatures hold
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky(s3_server, monkeypatch: pytest.MonkeyPatch):
    proxy = FlakyProxy(s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")  # adaptive would also slow the client down
    yield proxy
    proxy.close()


def test_push_and_pull_through_503s_and_dropped_connections(flaky: FlakyProxy, s3_server, tmp_path: Path) -> None:
    bucket = s3_server.make_bucket("flaky")
    remote = f"s3://{bucket}/proj"
    local = tmp_path / "local"
    (local / "data").mkdir(parents=True)
    files = {f"data/f{i:02d}.bin": os.urandom(5_000 + i) for i in range(16)}
    for key, body in files.items():
        (local / key).write_bytes(body)

    assert sorted(sync("push", local, remote, jobs=8).uploaded) == sorted(files)
    pulled = tmp_path / "pulled"
    assert sorted(sync("pull", pulled, remote, jobs=8).downloaded) == sorted(files)
    assert {key: (pulled / key).read_bytes() for key in files} == files
    assert flaky.injected["503"] >= 4 and flaky.injected["dropped"] >= 2, flaky.injected
