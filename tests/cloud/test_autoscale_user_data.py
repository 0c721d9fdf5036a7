"""The serving instances' user data: rendered text (bash -n, the serve command, refusals) and a local rehearsal.

The rehearsal runs the REAL rendered script with bash against SeaweedFS (the S3
root holding ``code/`` and a trained baseline model): it fetches the code, writes
the systemd unit (into a temp folder; ``systemctl`` is replaced by ``echo``), and
then the unit's own ``ExecStart`` line with its ``Environment`` is started as the
service would be: it must answer ``/health`` and ``/predict`` on the rendered port
and stop with exit 0 on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from multitype.cloud.autoscale.userdata import render_serve_user_data
from multitype.errors import UserError
from tests.serve.conftest import LABELS, TEXTS, baseline, free_port  # noqa: F401 - baseline is a fixture

MODEL = "s3://bucket/project/models/final/logreg"


def bash_n(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "user-data.sh"
    script.write_text(text, encoding="utf-8")
    return subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)


def test_valid_bash_with_the_serve_command_and_no_credentials(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret-value")
    text = render_serve_user_data(root="s3://bucket/project", region="eu-west-1", model=MODEL, port=8080)
    assert bash_n(text, tmp_path).returncode == 0
    assert text.startswith("#!/bin/bash\n")
    assert f"MODEL={MODEL}\n" in text and "PORT=8080\n" in text and "ROOT=s3://bucket/project\n" in text
    assert "ExecStart=$PY -m multitype serve --model $MODEL --host 0.0.0.0 --port $PORT" in text
    assert "Restart=always" in text and '$SYSTEMCTL enable --now "$SERVICE.service"' in text
    assert "wJalrXUtnFEMI" not in text and "AWS_SECRET" not in text
    assert "@@" not in text  # every placeholder filled


@pytest.mark.parametrize("overrides, message", [
    ({"model": "/local/models/final/logreg"}, "must be s3://bucket/"),
    ({"root": "file:///tmp/root"}, "must be s3://bucket/"),
    ({"model": "s3://bucket/my models/x"}, "holds a character the service unit cannot carry"),
    ({"model": "s3://bucket/models/$(reboot)"}, "holds a character the service unit cannot carry"),
    ({"model": "s3://bucket/models/100%"}, "holds a character the service unit cannot carry"),
    ({"region": "us-east-1'"}, "holds a character the service unit cannot carry"),
    ({"endpoint_url": "ftp://host"}, "must be http(s)://host[:port]"),
    ({"port": 70000}, "is not a port number"),
])
def test_values_that_the_unit_cannot_carry_are_refused(overrides: dict, message: str) -> None:
    values: dict = {"root": "s3://bucket/project", "region": "us-east-1", "model": MODEL, **overrides}
    with pytest.raises(UserError) as caught:
        render_serve_user_data(**values)
    assert message in str(caught.value)


def _unit(path: Path) -> tuple[dict[str, str], list[str]]:
    """The unit's Environment (as a dict) and its ExecStart (as argv)."""
    env: dict[str, str] = {}
    argv: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line[len("Environment="):].partition("=")
            env[key] = value
        elif line.startswith("ExecStart="):
            argv = line[len("ExecStart="):].split()
    return env, argv


def test_rehearsal_installs_the_code_writes_the_unit_and_its_command_serves(s3_server, baseline,  # noqa: F811
                                                                          tmp_path: Path) -> None:
    from multitype.cloud.bundle import code_files
    from multitype.sync import sync

    bucket = s3_server.make_bucket("serve")
    root = f"s3://{bucket}/proj"
    project = tmp_path / "project"
    project.mkdir()
    sync("push", local=project, remote=root, only="code", endpoint_url=s3_server.endpoint_url,
         code_files=code_files(project))
    client = s3_server.client()
    for path in sorted(baseline.folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"proj/models/final/logreg/{path.relative_to(baseline.folder)}")
    port = free_port()
    model = f"{root}/models/final/logreg"
    script = tmp_path / "user-data.sh"
    script.write_text(render_serve_user_data(root=root, region="us-east-1", model=model, port=port,
                                             endpoint_url=s3_server.endpoint_url), encoding="utf-8")
    work, units = tmp_path / "instance", tmp_path / "systemd"
    env = {**os.environ, "MULTITYPE_WORK_DIR": str(work), "MULTITYPE_USE_PYTHON": sys.executable,
           "MULTITYPE_SYSTEMD_DIR": str(units), "MULTITYPE_SYSTEMCTL": "echo systemctl"}
    env.pop("AWS_ENDPOINT_URL", None)  # the script sets the S3 endpoint itself (endpoint_url)
    env.pop("PYTHONPATH", None)  # multitype must come from the fetched code/
    done = subprocess.run(["bash", str(script)], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)
    log = (work / "user-data.log").read_text()
    assert done.returncode == 0, log[-3000:]
    assert f"multitype from {work / 'code' / 'src' / 'multitype'}" in log
    assert "systemctl daemon-reload" in log and "systemctl enable --now multitype-serve.service" in log
    unit = units / "multitype-serve.service"
    assert not list(units.glob("*.part"))
    unit_env, argv = _unit(unit)
    assert argv == [sys.executable, "-m", "multitype", "serve", "--model", model, "--host", "0.0.0.0",
                    "--port", str(port)]
    assert unit_env["PYTHONPATH"] == str(work / "code" / "src")
    assert unit_env["AWS_ENDPOINT_URL"] == s3_server.endpoint_url and unit_env["AWS_REGION"] == "us-east-1"
    if shutil.which("systemd-analyze"):  # the unit's syntax, as systemd reads it
        checked = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                                 text=True, timeout=60)
        assert "Unknown key" not in checked.stderr and "Invalid" not in checked.stderr, checked.stderr

    # the service's command, with the service's environment (credentials: the instance profile's stand-in)
    service_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AWS_ENDPOINT_URL")}
    service = subprocess.Popen(argv, env={**service_env, **unit_env, "OMP_NUM_THREADS": "1"}, cwd=work,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert service.poll() is None, service.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not answer /health"
            time.sleep(0.2)
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"text": TEXTS[2]}, timeout=30)
        assert answer.status_code == 200 and answer.json()["labels"][0] in LABELS
    finally:
        service.send_signal(signal.SIGTERM)
        code = service.wait(timeout=30)
    assert code == 0
