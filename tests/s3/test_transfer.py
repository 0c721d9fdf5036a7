"""Transfers through a recording proxy in front of SeaweedFS: parallel folder and ranged downloads,
and a multipart upload that fails is aborted (no part left behind)."""

from __future__ import annotations

import http.client
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import pytest

from multitype.errors import StorageError
from multitype.storage import Storage

REJECTED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRequest</Code>'
            b"<Message>rejected by the test proxy</Message></Error>")


class RecordingProxy:
    """Forwards to the S3 server; records each request and how many were in flight at once.

    ``delay`` seconds are added to each GET; ``reject(method, path)`` True answers 400.
    """

    def __init__(self, upstream: str, delay: float = 0.0,
                 reject: Callable[[str, str], bool] = lambda method, path: False) -> None:
        target = urlsplit(upstream)
        self.requests: list[tuple[str, str, str | None]] = []
        self.in_flight = self.most_in_flight = 0
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    proxy.requests.append((self.command, self.path, self.headers.get("Range")))
                    proxy.in_flight += 1
                    proxy.most_in_flight = max(proxy.most_in_flight, proxy.in_flight)
                try:
                    if reject(self.command, self.path):
                        self.send_response(400)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(REJECTED)))
                        self.end_headers()
                        self.wfile.write(REJECTED)
                        return
                    if self.command == "GET" and delay:
                        time.sleep(delay)
                    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for key, value in resp.getheaders():
                        if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                            self.send_header(key, value)
                    length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", length or str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    conn.close()
                finally:
                    with lock:
                        proxy.in_flight -= 1

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def through(s3_server, monkeypatch: pytest.MonkeyPatch):
    """Start a proxy with the given options and point AWS_ENDPOINT_URL at it."""
    proxies: list[RecordingProxy] = []

    def start(**options) -> RecordingProxy:
        proxy = RecordingProxy(s3_server.endpoint_url, **options)
        proxies.append(proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()


def test_folder_download_fetches_files_in_parallel(s3_server, through, tmp_path: Path) -> None:
    bucket = s3_server.make_bucket("par")
    client = s3_server.client()
    for i in range(8):
        client.put_object(Bucket=bucket, Key=f"proj/models/final/m/f{i}.bin", Body=os.urandom(1000 + i))
    proxy = through(delay=0.4)
    start = time.monotonic()
    dest = Storage(f"s3://{bucket}/proj").get_dir("models/final/m", tmp_path / "m")
    elapsed = time.monotonic() - start
    assert sorted(os.listdir(dest)) == [f"f{i}.bin" for i in range(8)]
    gets = [r for r in proxy.requests if r[0] == "GET" and "/models/final/m/f" in r[1]]
    assert len(gets) == 8  # one GET per file: sizes and ETags come from the listing, no HEAD
    assert proxy.most_in_flight >= 4 and elapsed < 8 * 0.4, (proxy.most_in_flight, elapsed)


def test_large_download_is_ranged_and_parallel(s3_server, through, tmp_path: Path) -> None:
    bucket = s3_server.make_bucket("rng")
    body = os.urandom(33 * 2**20)  # 5 ranges of 8 MiB
    s3_server.client().put_object(Bucket=bucket, Key="proj/models/final/m/model.safetensors", Body=body)
    proxy = through(delay=0.3)
    path = Storage(f"s3://{bucket}/proj").get_file("models/final/m/model.safetensors", tmp_path / "w.bin")
    assert path.read_bytes() == body
    ranges = sorted(r[2] for r in proxy.requests if r[0] == "GET" and r[2])
    assert len(ranges) == 5 and ranges[0] == "bytes=0-8388607"
    assert proxy.most_in_flight >= 2
    assert sorted(os.listdir(tmp_path)) == ["w.bin"]  # no temp file left


def test_failed_multipart_upload_is_aborted(s3_server, through, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = s3_server.make_bucket("abort")
    big = tmp_path / "model.safetensors"
    big.write_bytes(os.urandom(20 * 2**20))
    through(reject=lambda method, path: method == "PUT" and "partNumber=2" in path)
    with pytest.raises(StorageError) as exc:
        Storage(f"s3://{bucket}/proj").put_file(big, "models/final/m/model.safetensors")
    assert "\n" not in str(exc.value) and "InvalidRequest" in str(exc.value)
    client = s3_server.client()
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert s3_server.list_keys(bucket) == []
