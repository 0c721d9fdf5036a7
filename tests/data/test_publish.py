"""A `prepare` that dies while writing leaves readers the old data set or the new one, never a mix.

Each test prepares set A, then prepares set B (the same classes, other texts, so every
split differs and keeps its name) and stops it at a chosen write: a raised exception at every write in
turn (in-process, through a patched public ``Storage`` method), and a real SIGKILL
in a subprocess. What ``load_labels``/``load_split`` return afterwards must be all A
or all B, and B exactly when the commit record was written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import pytest

from multitype.data.dataset import load_labels, load_split
from multitype.data.prepare import prepare
from multitype.data.publish import COMMIT, PENDING
from multitype.errors import DataError
from multitype.project import open_project
from multitype.storage import Storage
from tests.data.conftest import write_json

SPLITS = ("train", "val", "test")


class Crash(BaseException):
    """Stands for the process dying: nothing in prepare catches it."""


def read_set(storage: Storage) -> dict[str, Any]:
    """What a trainer reads: the labels and every split."""
    labels = load_labels(storage)
    return {"labels": labels, **{split: load_split(storage, split, labels) for split in SPLITS}}


@pytest.fixture
def inputs(records, tmp_path: Path) -> tuple[Path, Path]:
    """Input A and input B: the same 4 classes (so the split files have the same names), other texts."""
    a = write_json(tmp_path / "a.json", records)
    b = write_json(tmp_path / "b.json", [{"text": r["text"] + " (second edition)", "label": r["label"]}
                                         for r in records])
    return a, b


def _project(root: str, config_dir: Path):
    return open_project(root, str(config_dir), "prepare")


def _count_ops(monkeypatch: pytest.MonkeyPatch, root_url: str, on_op: Callable[[str, str], None]) -> None:
    """Call ``on_op(method, key)`` before each write or delete on the root (not on the input)."""
    for name in ("write_bytes", "rm", "rm_files"):
        original = getattr(Storage, name)

        def patched(self: Storage, *args: Any, _original=original, _name=name, **kwargs: Any) -> Any:
            if self.url("") == root_url:
                on_op(_name, str(args[0]) if args else "")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Storage, name, patched)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def roots(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """``roots(name)``: a fresh, empty root of the parametrized kind (a folder, or a prefix on SeaweedFS)."""
    if request.param == "local":
        return lambda name: str(tmp_path / name)
    server = request.getfixturevalue("s3_server")
    for var, value in server.env.items():  # what the autouse _s3_env does for tests that name s3_server
        monkeypatch.setenv(var, value)
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE",
                "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    bucket = server.make_bucket("publish")
    return lambda name: f"s3://{bucket}/{name}"


def clone(src: Storage, dest: Storage) -> None:
    """Copy every file of one root to another (public Storage methods only)."""
    for key in src.walk_files(""):
        dest.write_bytes(key, src.read_bytes(key))


def test_prepare_stopped_at_every_write_leaves_old_or_new(inputs, config_dir: Path, roots,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = inputs
    # the two complete sets, and the writes a full run of B makes
    prepare(_project(roots("ref-a"), config_dir), input=str(a))
    project_b = _project(roots("ref-b"), config_dir)
    prepare(project_b, input=str(b))
    old, new = read_set(_project(roots("ref-a"), config_dir).storage), read_set(project_b.storage)
    assert all(old[s] != new[s] for s in SPLITS)

    ops: list[tuple[str, str]] = []
    root = roots("trace")
    clone(_project(roots("ref-a"), config_dir).storage, _project(root, config_dir).storage)
    with monkeypatch.context() as patch:
        _count_ops(patch, _project(root, config_dir).storage.url(""), lambda *op: ops.append(op))
        prepare(_project(root, config_dir), input=str(b), force=True)
    commit_at = ops.index(("write_bytes", COMMIT))
    # clean up, 6 staged files, the record, 6 copies, remove the record, remove the staging, figures, manifest
    assert ops[0] == ("rm", PENDING) and commit_at == 7 and ops[commit_at + 7] == ("rm", COMMIT)
    assert ops[commit_at + 8] == ("rm", PENDING)

    # every stage: cleanup, first and middle staged file, the record, first and middle copy, removals, after
    stops = [0, 1, 4, commit_at, commit_at + 1, commit_at + 4, commit_at + 7, commit_at + 8, len(ops) - 1]
    for n in stops:
        root = roots(f"stop-{n}")
        clone(_project(roots("ref-a"), config_dir).storage, _project(root, config_dir).storage)
        project = _project(root, config_dir)
        calls = []

        def stop(method: str, key: str, calls=calls, n=n) -> None:
            calls.append(key)
            if len(calls) == n + 1:
                raise Crash(f"stopped before {method} {key}")

        with monkeypatch.context() as patch:
            _count_ops(patch, project.storage.url(""), stop)
            with pytest.raises(Crash):
                prepare(project, input=str(b), force=True)
        plt.close("all")  # the figures the stopped run made
        seen = read_set(_project(root, config_dir).storage)
        assert seen == (new if n > commit_at else old), f"stopped before write {n} ({ops[n]})"

    # the next run finishes or cleans what the stopped one left, and leaves no staging behind
    for n in (4, commit_at + 4):  # mid-staging (not committed) and mid-copy (committed)
        root = roots(f"stop-{n}")
        storage = _project(root, config_dir).storage
        assert storage.walk_files(PENDING)
        prepare(_project(root, config_dir), input=str(b), force=True)
        assert read_set(storage) == new
        assert not storage.walk_files(PENDING)  # files: SeaweedFS may keep an empty folder, S3 has none


RUNNER = """
import os, signal, sys
from multitype.storage import Storage

kill_at, root = int(os.environ["KILL_AT"]), os.environ["KILL_ROOT"]
original, seen = Storage.write_bytes, []

def write_bytes(self, key, data):
    if self.url("") == root:
        seen.append(key)
        if len(seen) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return original(self, key, data)

Storage.write_bytes = write_bytes
from multitype.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("roots", "kill_at", "expect"), [
    ("local", 3, "old"),
    pytest.param("s3", 3, "old", marks=pytest.mark.slow),
    pytest.param("s3", 8, "new", marks=pytest.mark.slow),
], indirect=["roots"])
def test_prepare_sigkilled_leaves_old_or_new(inputs, config_dir: Path, roots, tmp_path: Path, kill_at: int,
                                             expect: str) -> None:
    """A real SIGKILL: at the 3rd write (staging) readers keep A; at the 8th (after the record) they get B.

    Before the commit record, a kill after the new train split was written left it beside the old val
    and test splits.
    """
    a, b = inputs
    root = roots("killed")
    prepare(_project(root, config_dir), input=str(a))
    old = read_set(_project(root, config_dir).storage)
    storage_url = _project(root, config_dir).storage.url("")
    proc = subprocess.run([sys.executable, "-c", RUNNER, "prepare", "--input", str(b), "--root", root,
                           "--config-dir", str(config_dir), "--force"],
                          env={**os.environ, "KILL_AT": str(kill_at), "KILL_ROOT": storage_url},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    seen = read_set(_project(root, config_dir).storage)
    reference = roots("reference-b")
    prepare(_project(reference, config_dir), input=str(b))
    new = read_set(_project(reference, config_dir).storage)
    assert seen == (old if expect == "old" else new)
    if not root.startswith("s3://"):
        shutil.rmtree(tmp_path / "reference-b")


def test_damaged_commit_record_is_one_line(inputs, config_dir: Path, tmp_path: Path, cli) -> None:
    a, _ = inputs
    root = tmp_path / "root"
    prepare(_project(str(root), config_dir), input=str(a))
    (root / COMMIT).parent.mkdir(parents=True, exist_ok=True)
    (root / COMMIT).write_text(json.dumps({"format": "something else"}))
    res = cli("train", "baseline", "--root", root, "--config-dir", config_dir)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "commit.json is not a commit record of multitype prepare; rerun 'multitype prepare'" in res.stderr


def test_record_pointing_outside_staging_is_refused(inputs, config_dir: Path, tmp_path: Path) -> None:
    a, _ = inputs
    root = tmp_path / "root"
    prepare(_project(str(root), config_dir), input=str(a))
    record = {"format": "multitype-fileset-1", "run_id": "x",
              "files": {"data/processed/labels.json": {"staged": "results/report.md", "sha256": "0" * 64}}}
    (root / COMMIT).parent.mkdir(parents=True, exist_ok=True)
    (root / COMMIT).write_text(json.dumps(record))
    with pytest.raises(DataError, match="is not a commit record of multitype prepare"):
        load_labels(Storage(str(root)))
