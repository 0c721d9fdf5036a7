"""`multitype prepare` with no input: the embedded BBC News, 4 classes, end to end."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multitype.cli import main
from multitype.data import audit as leakage
from multitype.data.dataset import load_labels, load_split
from multitype.storage import Storage
from tests.conftest import write_configs

CLASSES = ["business", "politics", "sports", "tech"]
BBC_FILES = 510 + 417 + 511 + 401
BBC_EXACT_DUPLICATES = 84  # extra copies among the 4 classes (counted by hand: 84 pairs of identical articles)


@pytest.fixture(scope="module")
def bbc(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("bbc-default")
    config_dir = write_configs(base / "configs")
    root = base / "root"
    err = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(err):
        code = main(["prepare", "--root", str(root), "--config-dir", str(config_dir)])
    return {"code": code, "stderr": err.getvalue(), "root": root, "seconds": time.perf_counter() - started,
            "audit": json.loads((root / "data/processed/audit.json").read_text()) if code == 0 else None}


def frames(root: Path) -> dict[str, pd.DataFrame]:
    return {s: pd.read_csv(root / f"data/processed/{s}_4class.csv", dtype=str, keep_default_na=False)
            for s in ("train", "val", "test")}


def test_runs_and_reports(bbc):
    assert bbc["code"] == 0, bbc["stderr"]
    assert bbc["seconds"] < 60
    assert "Leakage audit (policy: drop)" in bbc["stderr"]
    assert f"{BBC_EXACT_DUPLICATES} / {BBC_EXACT_DUPLICATES}" in bbc["stderr"]
    assert "data/processed/train_4class.csv" in bbc["stderr"]


def test_audit_finds_the_known_duplicates(bbc):
    audit = bbc["audit"]
    assert audit["records_read"] == BBC_FILES
    assert audit["exact_duplicates"]["extra_rows"] == BBC_EXACT_DUPLICATES
    assert audit["exact_duplicates"]["groups"] == BBC_EXACT_DUPLICATES
    assert audit["label_conflicts"]["groups"] == 0
    assert 40 <= audit["near_duplicates"]["pairs"] <= 70
    assert audit["decoding"]["rows"] and audit["dropped"]["exact_duplicates"] == BBC_EXACT_DUPLICATES
    assert audit["cross_split"]["exact_duplicates"] == 0 and audit["cross_split"]["near_duplicates"] == 0
    for example in audit["exact_duplicates"]["examples"]:
        assert len(example["rows"]) == 2 and example["text"]


def test_splits_are_stratified_and_leak_free(bbc):
    split = frames(bbc["root"])
    for frame in split.values():
        assert list(frame.columns) == ["text", "label"] and set(frame["label"]) == set(CLASSES)
    sizes = {name: len(f) for name, f in split.items()}
    total = sum(sizes.values())
    assert total == BBC_FILES - BBC_EXACT_DUPLICATES
    for name, share in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        assert abs(sizes[name] / total - share) < 0.01
    overall = pd.concat(split.values())["label"].value_counts(normalize=True)
    for frame in split.values():
        assert (frame["label"].value_counts(normalize=True) - overall).abs().max() < 0.02

    # leak-free, checked independently of the audit: no shared text, no cross-split pair >= 0.9
    texts = [leakage.normalize(t) for f in split.values() for t in f["text"]]
    assert len(set(texts)) == len(texts)
    which = np.repeat(np.arange(3), [len(f) for f in split.values()])
    matrix = leakage.tfidf_matrix(texts)
    sims = (matrix @ matrix.T).toarray()
    sims[which[:, None] == which[None, :]] = 0
    assert sims.max() < 0.9


def test_files_for_the_next_stages(bbc):
    root = bbc["root"]
    storage = Storage(str(root))
    assert load_labels(storage) == CLASSES
    assert json.loads((root / "data/processed/labels.json").read_text()) == {c: i for i, c in enumerate(CLASSES)}
    texts, ids = load_split(storage, "train", CLASSES)
    assert len(texts) == bbc["audit"]["splits"]["train"]["size"] and set(ids) == {0, 1, 2, 3}
    raw = json.loads((root / "data/raw/raw_data.json").read_text())
    assert len(raw) == BBC_FILES and set(raw[0]) == {"text", "label"}
    assert "\ufffd" in raw[bbc["audit"]["decoding"]["rows"][0] - 1]["text"]  # the one Latin-1 article
    for name in ("class_balance", "text_length"):
        assert (root / f"figures/data/{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_manifest_records_inputs_and_outputs(bbc):
    root = bbc["root"]
    (manifest_path,) = root.glob("runs/*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["command"] == "prepare"
    external = [k for k in manifest["inputs"] if k.endswith("bbcnews/data")]
    assert len(external) == 1 and len(manifest["inputs"][external[0]]) == 64
    for key in ("data/raw/raw_data.json",):
        assert manifest["inputs"][key] == hashlib.sha256((root / key).read_bytes()).hexdigest()
    for key in ("data/processed/train_4class.csv", "data/processed/audit.json", "figures/data/text_length.png"):
        assert manifest["outputs"][key] == hashlib.sha256((root / key).read_bytes()).hexdigest()
    assert manifest["prepare"]["audit"]["exact_duplicate_rows"] == BBC_EXACT_DUPLICATES
