"""The API's Dockerfile, read as Docker reads it (Docker itself is not available here: the image is not built).

The structure is checked (CPU torch, non-root user, port, health check, what
goes into the build context), and the image's own ENTRYPOINT and HEALTHCHECK
commands are run here as they are written, with a real baseline model: the
entry point must start ``multitype serve`` (as a plain start and as SageMaker's
``serve``) on ``SAGEMAKER_BIND_TO_PORT``, the health check must pass against it,
and any other command must run as given.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.serve.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def one(keyword: str) -> str:
    found = [rest for k, rest in instructions() if k == keyword]
    assert len(found) == 1, (keyword, found)
    return found[0]


def test_cpu_torch_non_root_port_and_context() -> None:
    steps = instructions()
    keywords = [k for k, _ in steps]
    assert one("FROM").startswith("python:3.11-slim")
    runs = [rest for k, rest in steps if k == "RUN"]
    torch_step = next(i for i, r in enumerate(runs) if "torch==" in r)
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch_step]
    package_step = next(i for i, r in enumerate(runs) if "pip install ." in r)
    assert torch_step < package_step and 'torch==${TORCH_VERSION}' in runs[package_step]  # CPU torch kept
    import torch

    assert f"TORCH_VERSION={torch.__version__.split('+')[0]}" in one("ARG")  # the torch the tests ran with
    user = one("USER")
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")  # nothing runs as root after
    assert user.split(":")[0] not in ("root", "0")
    assert one("EXPOSE") == "8080"
    assert any("MULTITYPE_MODEL=/opt/ml/model" in rest for k, rest in steps if k == "ENV")
    assert json.loads(one("CMD")) == ["serve"]
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*" and {"!pyproject.toml", "!README.md", "!src/"} <= set(ignore)


def _healthcheck() -> list[str]:
    options, _, command = one("HEALTHCHECK").partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert "/health" in argv[-1]
    return argv


def test_the_entrypoint_serves_and_the_healthcheck_passes(baseline, tmp_path: Path) -> None:
    entrypoint = json.loads(one("ENTRYPOINT"))
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    assert "multitype serve --model \"$MULTITYPE_MODEL\" --host 0.0.0.0 --port 8080" in entrypoint[2]
    port = free_port()
    env = {**os.environ, "MULTITYPE_MODEL": str(baseline.folder), "SAGEMAKER_BIND_TO_PORT": str(port),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    check = _healthcheck()
    check[0] = sys.executable if check[0] == "python" else check[0]
    for args in (["serve"], []):  # docker run IMAGE (CMD serve; SageMaker's `serve` too), and no argument at all
        log = tmp_path / f"serve-{time.monotonic_ns()}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(entrypoint + args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while subprocess.run(check, env=env, capture_output=True, timeout=10).returncode != 0:
                assert proc.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.3)
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
            assert "logreg" in json.dumps(health)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
        assert code == 0, log.read_text(errors="replace")
    # the health check fails when nothing serves
    assert subprocess.run(check, env=env, capture_output=True, timeout=10).returncode != 0
    other = subprocess.run(entrypoint + ["echo", "any other command"], env=env, capture_output=True, text=True,
                           timeout=30)
    assert other.returncode == 0 and other.stdout == "any other command\n"

