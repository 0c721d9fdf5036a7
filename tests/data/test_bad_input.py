"""Every bad input: exit 2, one `error: ...` line naming the file/row/field and the fix,
no traceback, and the root (data/, results/, figures/) left byte-identical."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from tests.data.conftest import snapshot, write_csv, write_json, write_jsonl


def check_refused(result, root: Path, before: dict[str, str], *fragments: str) -> None:
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert snapshot(root) == before  # nothing written, nothing removed (no runs/ either)


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_FILES: dict[str, tuple[Callable[[Path, list[dict[str, Any]]], Path], list[str]]] = {
    "empty json": (lambda d, r: _bytes(d / "in.json", b""), ["in.json is empty"]),
    "empty csv": (lambda d, r: _bytes(d / "in.csv", b"\n\n"), ["in.csv is empty"]),
    "header-only csv": (lambda d, r: _bytes(d / "in.csv", b"text,label\n"), ["in.csv holds no records"]),
    "empty jsonl": (lambda d, r: _bytes(d / "in.jsonl", b"  \n"), ["in.jsonl is empty"]),
    "empty json array": (lambda d, r: _bytes(d / "in.json", b"[]"), ["in.json holds no records"]),
    "empty parquet": (lambda d, r: _bytes(d / "in.parquet", b""), ["in.parquet is empty"]),
    "malformed json": (lambda d, r: _bytes(d / "in.json", b'[\n{"text": "a", "label": "b"},\n{"text": "c" "label"}\n]'),
                       ["in.json line 3 column", "not valid JSON"]),
    "malformed jsonl": (lambda d, r: _bytes(d / "in.jsonl", (json.dumps(r[0]) + "\n" + json.dumps(r[1]) + "\n"
                                                             + '{"text": "x", label: 1}\n').encode()),
                        ["in.jsonl line 3 column", "not valid JSON"]),
    "malformed csv": (lambda d, r: _bytes(d / "in.csv", b"text,label\nfine,business\nbad,tech,extra\n"),
                      ["in.csv: not valid CSV", "line 3"]),
    "not parquet": (lambda d, r: _bytes(d / "in.parquet", b"PAR1 this is not parquet"),
                    ["in.parquet: not a valid Parquet file"]),
    "json object, not array": (lambda d, r: _bytes(d / "in.json", b'{\n  "data": []\n}'),
                               ["in.json: expected a JSON array of records", "got a JSON dict with keys data"]),
    "json lines named .json": (lambda d, r: _bytes(d / "in.json", b'{"text": "a", "label": "b"}\n{"text": "c"}\n'),
                               ["in.json line 2: no 'label' field"]),
    "empty csv label with line": (lambda d, r: _bytes(d / "in.csv", b"text,label\none,a\ntwo,\n"),
                                  ["in.csv row 2 (line 3): empty label in 'label'"]),
    "json array of strings": (lambda d, r: _bytes(d / "in.json", b'["just text"]'),
                              ["in.json record 1: expected an object with 'text' and 'label'"]),
    "latin-1 json": (lambda d, r: _bytes(d / "in.json", '[{"text": "caf\u00e9", "label": "x"}]'.encode("latin-1")),
                     ["in.json: byte 0xe9 at offset 14 (line 1) is not UTF-8", "re-encode the file as UTF-8"]),
    "latin-1 csv": (lambda d, r: _bytes(d / "in.csv", "text,label\nok,a\nna\u00efve,b\n".encode("latin-1")),
                    ["in.csv: byte 0xef at offset 18 (line 3) is not UTF-8", "re-encode"]),
    "missing text column": (lambda d, r: write_csv(d / "in.csv", [{"body": x["text"], "label": x["label"]} for x in r]),
                            ["in.csv: no 'text' column (columns: body, label)", "set text_field"]),
    "missing label column": (lambda d, r: write_jsonl(d / "in.jsonl", [{"text": x["text"], "topic": x["label"]}
                                                                       for x in r]),
                             ["in.jsonl: no 'label' column (columns: text, topic)", "set label_field"]),
    "record without label": (lambda d, r: write_jsonl(d / "in.jsonl", [*r[:5], {"text": "orphan"}, *r[5:]]),
                             ["in.jsonl line 6: no 'label' field (it has: text)"]),
    "empty label": (lambda d, r: write_csv(d / "in.csv", [*r[:3], {"text": "no label", "label": " "}, *r[3:]]),
                    ["in.csv row 4: empty label in 'label'"]),
    "one class": (lambda d, r: write_json(d / "in.json", [x for x in r if x["label"] == "tech"]),
                  ["only one class ('tech')", "at least two"]),
    "class too small": (lambda d, r: write_json(d / "in.json", [x for x in r if x["label"] != "tech"]
                                                 + [x for x in r if x["label"] == "tech"][:4]),
                        ["class 'tech' has 4 example(s)", "min_per_class=10", "labels: [...]"]),
    "unknown extension": (lambda d, r: _bytes(d / "in.xml", b"<x/>"),
                          ["cannot tell the format of", "in.xml", "set format:"]),
    "missing file": (lambda d, r: d / "nope.json", ["input", "nope.json' not found"]),
    "empty folder": (lambda d, r: (d / "corpus").mkdir() or d / "corpus", ["no <label>/*.txt files found"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_input_file(case, records, cli, config_dir, root, tmp_path):
    make, fragments = BAD_FILES[case]
    source = make(tmp_path, records)
    before = snapshot(root)
    result = cli("prepare", "--input", source, "--root", root, "--config-dir", config_dir)
    check_refused(result, root, before, *fragments)


BAD_SETTINGS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "unknown label in labels:": ({"labels": ["tech", "weather"]},
                                 ["data_config.yaml: label 'weather' is not in", "business, politics, sports, tech"]),
    "label listed twice": ({"labels": ["tech", "business", "tech"]}, ["labels lists 'tech' twice"]),
    "empty text with empty_texts: error": ({"empty_texts": "error", "min_chars": 40},
                                           ["row 49: text is empty or shorter than min_chars=40"]),
    "format does not match a folder": ({"format": "csv"}, ["is a folder but format is 'csv'"]),
    "split impossible": ({"min_per_class": 1, "split": {"train": 0.9, "val": 0.05, "test": 0.05}},
                         ["cannot split 49 examples of 4 classes", "train/val/test = 0.9/0.05/0.05"]),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_bad_settings(case, records, cli, set_data_config, root, tmp_path):
    values, fragments = BAD_SETTINGS[case]
    rows = [*records, {"text": "too short", "label": "tech"}]
    if case == "format does not match a folder":
        from tests.data.conftest import write_folder
        source = write_folder(tmp_path / "corpus", records)
    else:
        source = write_json(tmp_path / "in.json", rows)
    config_dir = set_data_config(**values)
    before = snapshot(root)
    result = cli("prepare", "--input", source, "--root", root, "--config-dir", config_dir)
    check_refused(result, root, before, *fragments)


def test_differing_raw_data_needs_force(records, cli, config_dir, root, tmp_path):
    (root / "data/raw").mkdir(parents=True)
    (root / "data/raw/raw_data.json").write_text(json.dumps(records[:10]), encoding="utf-8")
    before = snapshot(root)
    result = cli("prepare", "--input", write_json(tmp_path / "in.json", records), "--root", root,
                 "--config-dir", config_dir)
    check_refused(result, root, before, "data/raw/raw_data.json exists and differs from this input",
                  "pass --force to replace it")


def test_label_missing_from_train_is_refused(records, cli, config_dir, root, tmp_path, monkeypatch):
    """Stratification makes this impossible, so a broken split is simulated to reach the check."""
    from multitype.data import prepare as module

    def broken(labels, cfg):
        split = np.zeros(len(labels), np.int64)
        split[[i for i, label in enumerate(labels) if label == "politics"]] = 2  # politics only in test
        return split

    monkeypatch.setattr(module, "stratified_split", broken)
    before = snapshot(root)
    result = cli("prepare", "--input", write_json(tmp_path / "in.json", records), "--root", root,
                 "--config-dir", config_dir)
    check_refused(result, root, before, "label(s) ['politics'] are in the test split but not in train")


@pytest.mark.parametrize("where", ["missing-bucket", "missing-key"])
def test_bad_s3_input(where, cli, config_dir, root, s3_server):
    bucket = s3_server.make_bucket("prepare-bad")
    url = "s3://no-such-bucket-prepare/in.jsonl" if where == "missing-bucket" else f"s3://{bucket}/nothing/in.jsonl"
    before = snapshot(root)
    result = cli("prepare", "--input", url, "--root", root, "--config-dir", config_dir)
    fragment = "bucket 'no-such-bucket-prepare' does not exist" if where == "missing-bucket" else "not found"
    check_refused(result, root, before, fragment)
