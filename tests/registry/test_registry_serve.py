"""``multitype serve --model registry:NAME`` as users start it: a real server process loading the production version."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.registry.conftest import Project
from tests.serve.conftest import TEXTS, free_port
from tests.serve.test_cli import server_factory  # noqa: F401 - the fixture that starts and stops servers


@pytest.mark.slow
def test_serve_loads_the_production_version(cli, project: Project, server_factory) -> None:  # noqa: F811
    where = project.where()
    assert cli("registry", "add", "models/final/logreg", "--name", "news", *where).exit_code == 0
    assert cli("train", "baseline", "--models", "logreg", "--root", project.root, "--config-dir",
               project.configs).exit_code == 0  # a different model.json: version 2 is another model
    assert cli("registry", "add", "models/final/logreg", "--name", "news", "--stage", "production",
               *where).exit_code == 0
    v2 = json.loads(cli("registry", "show", "news:2", *where).stdout)
    v1 = json.loads(cli("registry", "show", "news:1", *where).stdout)
    assert v1["sha256"] != v2["sha256"]

    port = free_port()
    server = server_factory("--model", "registry:news", "--port", str(port), "--no-access-log", *where)
    url = server.wait_ready(port)
    assert (f"model registry:news is news version 2 (production, sha256 {v2['sha256'][:12]}) -> "
            f"{project.root}/{v2['model']}\n") in server.output
    health = httpx.get(f"{url}/health", timeout=30).json()
    assert health["model"]["name"] == "logreg" and health["model"]["version"] == v2["sha256"][:12]
    answer = httpx.post(f"{url}/predict", json={"text": TEXTS[2]}, timeout=30)
    assert answer.status_code == 200 and answer.json()["labels"] == ["sports"]
    assert server.stop() == 0 and "Traceback" not in server.output
