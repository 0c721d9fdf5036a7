"""``multitype registry`` on an S3 root (SeaweedFS): the same commands, and writers that race.

SeaweedFS 4.x honours ``If-Match`` and ``If-None-Match: *`` on PutObject (412 PreconditionFailed otherwise),
which is what :meth:`multitype.storage.Storage.write_if` sends; the race tests below fail if it did not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from multitype.manifest import folder_digest
from multitype.registry import index as ix
from multitype.storage import Storage
from tests.registry.conftest import Project, one_line_error
from tests.registry.test_registry_local import race

INDEX = "proj/models/registry/index.json"


def _push(cli, project: Project, s3_server) -> tuple[str, str]:
    bucket = s3_server.make_bucket("registry")
    remote = f"s3://{bucket}/proj"
    res = cli("sync", "push", "--local", project.root, "--remote", remote, "--config-dir", project.configs)
    assert res.exit_code == 0, res.stderr
    return bucket, remote


def test_add_promote_show_and_predict_on_an_s3_root(cli, project: Project, s3_server, tmp_path: Path) -> None:
    bucket, remote = _push(cli, project, s3_server)
    digest = folder_digest(project.root / "models" / "final" / "logreg")
    for stage in ("staging", "production"):
        res = cli("registry", "add", "models/final/logreg", "--name", "news", "--stage", stage,
                  *project.where(remote))
        assert res.exit_code == 0, res.stderr
    copy = f"proj/models/registry/news/{digest[:16]}"
    assert {k for k in s3_server.list_keys(bucket, "proj/models/registry/")} == {
        INDEX, f"{copy}/_COMPLETE", f"{copy}/model.json", f"{copy}/model.skops"}
    v2 = json.loads(cli("registry", "show", "news:2", *project.where(remote)).stdout)
    local = json.loads((project.root / "results" / "baseline" / "logreg_metrics.json").read_text())
    assert v2["stage"] == "production" and v2["sha256"] == digest and v2["source"] == f"{remote}/models/final/logreg"
    assert v2["run_id"] == local["run_id"] and v2["metrics"]["macro_f1"] == local["macro_f1"]
    assert v2["metrics"]["intervals"] == local["intervals"] and len(v2["data_files"]) == 3

    res = cli("registry", "promote", "news:1", "--stage", "production", *project.where(remote))
    assert res.exit_code == 0, res.stderr
    stored = ix.parse(s3_server.client().get_object(Bucket=bucket, Key=INDEX)["Body"].read(), INDEX)
    assert [v.stage for v in stored.models["news"].versions] == ["production", "staging"]

    texts = tmp_path / "t.txt"
    texts.write_text("The striker scored twice in the cup final.\n")
    res = cli("predict", "--model", "registry:news:2", "--input", texts, *project.where(remote))
    assert res.exit_code == 0, res.stderr
    assert f"model registry:news:2 is news version 2 (staging, sha256 {digest[:12]}) -> {remote}/" \
           f"models/registry/news/{digest[:16]}" in res.stderr
    assert (tmp_path / "t.predictions.csv").read_text().splitlines()[1].split(",")[2] == "sports"


def test_two_writers_that_read_the_same_s3_index_cannot_both_win(s3_server) -> None:
    race(Storage(f"s3://{s3_server.make_bucket('cas')}/proj"))


@pytest.mark.slow
def test_two_registry_add_processes_at_once_get_versions_1_and_2(cli, project: Project, s3_server) -> None:
    bucket, remote = _push(cli, project, s3_server)
    args = [sys.executable, "-m", "multitype", "registry", "add", "models/final/logreg", "--name", "news",
            *project.where(remote)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    said = sorted(line.split(" (")[0] for _, err in outs for line in err.splitlines() if line.startswith("registered"))
    assert said == ["registered news version 1", "registered news version 2"]
    stored = ix.parse(s3_server.client().get_object(Bucket=bucket, Key=INDEX)["Body"].read(), INDEX)
    assert [v.version for v in stored.models["news"].versions] == [1, 2]


def test_an_invalid_index_in_s3_is_refused_and_left_as_it_is(cli, project: Project, s3_server) -> None:
    bucket, remote = _push(cli, project, s3_server)
    s3 = s3_server.client()
    bad = b'{"schema_version": 1, "models": {"news": {"versions": [{"version": 1}]}}}\n'
    etag = s3.put_object(Bucket=bucket, Key=INDEX, Body=bad)["ETag"]
    res = cli("registry", "add", "models/final/logreg", "--name", "news", *project.where(remote))
    assert one_line_error(res) == (
        f"{remote}/models/registry/index.json: 'models.news.versions.0.stage' Field required (and 6 more); "
        "the registry index is not valid and is left as it is: fix it by hand or restore it from a backup "
        "(no registry command rewrites it meanwhile)")
    head = s3.head_object(Bucket=bucket, Key=INDEX)
    assert head["ETag"] == etag and s3.get_object(Bucket=bucket, Key=INDEX)["Body"].read() == bad
    assert s3_server.list_keys(bucket, "proj/models/registry/") == [INDEX]  # no model copied either


def test_write_if_refuses_a_stale_version_in_s3_and_locally(s3_server, tmp_path: Path) -> None:
    """The storage primitive under the index: a write conditioned on an old version changes nothing."""
    for storage in (Storage(f"s3://{s3_server.make_bucket('cas')}/proj"), Storage(str(tmp_path))):
        assert storage.write_if("i.json", b"one", None)
        assert not storage.write_if("i.json", b"two", None)  # it exists now
        data, token = storage.read_versioned("i.json")
        assert data == b"one" and storage.write_if("i.json", b"three", token)
        assert not storage.write_if("i.json", b"four", token)  # token is stale
        assert storage.read_versioned("i.json")[0] == b"three"
        assert storage.read_versioned("missing.json") == (None, None)
