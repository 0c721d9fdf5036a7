"""`multitype prepare` end to end on every input format (real BBC articles, small)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.data.conftest import PER_CLASS, WRITERS, write_csv, write_jsonl

CLASSES = ["business", "politics", "sports", "tech"]


def read_split(root: Path, split: str, n: int) -> pd.DataFrame:
    return pd.read_csv(root / f"data/processed/{split}_{n}class.csv", dtype=str, keep_default_na=False)


def check_outputs(root: Path, records: list[dict[str, str]], labels: list[str]) -> dict:
    """Schemas, sizes, labels.json, audit.json, figures and manifest of one successful run."""
    n = len(labels)
    frames = {s: read_split(root, s, n) for s in ("train", "val", "test")}
    for frame in frames.values():
        assert list(frame.columns) == ["text", "label"]
        assert set(frame["label"]) <= set(labels)
    wanted = [r for r in records if r["label"] in labels]
    assert sum(len(f) for f in frames.values()) == len(wanted)
    assert sorted(t for f in frames.values() for t in f["text"]) == sorted(r["text"].strip() for r in wanted)
    for split in ("val", "test"):  # stratified: every class in every split
        assert set(frames[split]["label"]) == set(labels)
    assert json.loads((root / "data/processed/labels.json").read_text()) == {name: i for i, name in enumerate(labels)}
    raw = json.loads((root / "data/raw/raw_data.json").read_text())
    assert [set(r) for r in raw] == [{"text", "label"}] * len(records)
    audit = json.loads((root / "data/processed/audit.json").read_text())
    assert audit["exact_duplicates"]["groups"] == 0 and audit["near_duplicates"]["pairs"] == 0
    assert audit["cross_split"]["exact_duplicates"] == audit["cross_split"]["near_duplicates"] == 0
    assert {s: audit["splits"][s]["size"] for s in frames} == {s: len(f) for s, f in frames.items()}
    for name in ("class_balance", "text_length"):
        assert (root / f"figures/data/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifests = list((root / "runs").glob("*/manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert "data/raw/raw_data.json" in manifest["inputs"]
    assert f"data/processed/train_{n}class.csv" in manifest["outputs"]
    return audit


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_each_format_end_to_end(fmt, records, cli, config_dir, tmp_path):
    suffix, write = WRITERS[fmt]
    source = write(tmp_path / f"input{suffix}", records)
    root = tmp_path / "root"
    result = cli("prepare", "--input", source, "--root", root, "--config-dir", config_dir)
    assert result.exit_code == 0, result.stderr
    audit = check_outputs(root, records, CLASSES)
    assert audit["format"] == fmt and audit["records_read"] == len(records)
    assert "Leakage audit" in result.stderr and str(root / "data/processed/audit.json") in result.stderr


def test_field_names_labels_order_and_explicit_format(records, cli, set_data_config, tmp_path):
    """Custom column names, a `labels:` subset in config order, format given for an odd extension."""
    renamed = [{"body": r["text"], "category": r["label"], "extra": 1} for r in records]
    source = write_jsonl(tmp_path / "input.txt", renamed)
    config_dir = set_data_config(text_field="body", label_field="category", format="jsonl",
                                 labels=["tech", "business"])
    root = tmp_path / "root"
    result = cli("prepare", "--input", source, "--root", root, "--config-dir", config_dir)
    assert result.exit_code == 0, result.stderr
    check_outputs(root, records, ["tech", "business"])
    audit = json.loads((root / "data/processed/audit.json").read_text())
    assert audit["excluded_labels"] == {"politics": PER_CLASS, "sports": PER_CLASS}


def test_input_from_config_and_raw_data_immutability(records, cli, set_data_config, tmp_path):
    root = tmp_path / "root"
    first = write_csv(tmp_path / "first.csv", records)
    config_dir = set_data_config(input=str(first))
    assert cli("prepare", "--root", root, "--config-dir", config_dir).exit_code == 0
    raw = (root / "data/raw/raw_data.json").read_bytes()

    again = cli("prepare", "--root", root, "--config-dir", config_dir)  # same input: fine, raw untouched
    assert again.exit_code == 0, again.stderr
    assert (root / "data/raw/raw_data.json").read_bytes() == raw and "unchanged" in again.stderr

    other = write_csv(tmp_path / "other.csv", records[1:])
    refused = cli("prepare", "--input", other, "--root", root, "--config-dir", config_dir)
    assert refused.exit_code == 2
    assert "raw_data.json exists and differs from this input" in refused.stderr and "--force" in refused.stderr
    assert (root / "data/raw/raw_data.json").read_bytes() == raw

    forced = cli("prepare", "--input", other, "--root", root, "--config-dir", config_dir, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert len(json.loads((root / "data/raw/raw_data.json").read_text())) == len(records) - 1


def test_empty_texts_are_dropped_and_counted(records, cli, config_dir, tmp_path):
    rows = [*records, {"text": "   ", "label": "tech"}, {"text": "", "label": "sports"}]
    source = write_csv(tmp_path / "input.csv", rows)
    root = tmp_path / "root"
    result = cli("prepare", "--input", source, "--root", root, "--config-dir", config_dir)
    assert result.exit_code == 0, result.stderr
    audit = json.loads((root / "data/processed/audit.json").read_text())
    assert audit["empty_texts"]["count"] == 2
    assert [e["row"] for e in audit["empty_texts"]["examples"]] == [len(records) + 1, len(records) + 2]
    assert sum(s["size"] for s in audit["splits"].values()) == len(records)
    assert "empty texts" in result.stderr


def test_s3_input_and_s3_root(records, cli, config_dir, s3_server, tmp_path):
    bucket = s3_server.make_bucket("prepare")
    client = s3_server.client()
    buf = io.StringIO()
    for r in records:
        buf.write(json.dumps(r) + "\n")
    client.put_object(Bucket=bucket, Key="incoming/data.jsonl", Body=buf.getvalue().encode())
    for i, r in enumerate(records):
        client.put_object(Bucket=bucket, Key=f"folder/{r['label']}/{i}.txt", Body=r["text"].encode())

    result = cli("prepare", "--input", f"s3://{bucket}/incoming/data.jsonl", "--root", f"s3://{bucket}/proj",
                 "--config-dir", config_dir)
    assert result.exit_code == 0, result.stderr
    keys = set(s3_server.list_keys(bucket, "proj/"))
    for key in ("data/raw/raw_data.json", "data/processed/train_4class.csv", "data/processed/labels.json",
                "data/processed/audit.json", "figures/data/class_balance.png", "figures/data/text_length.png"):
        assert f"proj/{key}" in keys
    assert any(k.startswith("proj/runs/") and k.endswith("manifest.json") for k in keys)

    local = tmp_path / "local"  # a folder input on S3, written to a local root
    result = cli("prepare", "--input", f"s3://{bucket}/folder/", "--root", local, "--config-dir", config_dir)
    assert result.exit_code == 0, result.stderr
    check_outputs(local, records, CLASSES)
    audit = json.loads((local / "data/processed/audit.json").read_text())
    assert audit["format"] == "folder" and audit["records_read"] == len(records)


def test_no_validation_split(records, cli, set_data_config, tmp_path):
    """val: 0 is allowed: the val file is written with its header only."""
    config_dir = set_data_config(split={"train": 0.9, "val": 0.0, "test": 0.1})
    root = tmp_path / "root"
    result = cli("prepare", "--input", write_csv(tmp_path / "in.csv", records), "--root", root,
                 "--config-dir", config_dir)
    assert result.exit_code == 0, result.stderr
    sizes = {s: len(read_split(root, s, 4)) for s in ("train", "val", "test")}
    assert sizes == {"train": 43, "val": 0, "test": 5}
    assert (root / "data/processed/val_4class.csv").read_text() == "text,label\n"


def test_library_call_returns_a_summary(records, config_dir, tmp_path):
    from multitype.data.prepare import prepare
    from multitype.project import open_project

    project = open_project(str(tmp_path / "root"), str(config_dir), "prepare")
    summary = prepare(project, input=str(write_csv(tmp_path / "in.csv", records)))
    assert summary["labels"] == CLASSES and summary["num_classes"] == 4
    assert sum(c["total"] for c in summary["counts"].values()) == len(records)
    for counts in summary["counts"].values():
        assert set(counts["classes"]) == set(CLASSES) and sum(counts["classes"].values()) == counts["total"]
    assert summary["audit"]["exact_duplicate_rows"] == 0 and summary["audit"]["cross_split_near"] == 0
    assert "data/processed/audit.json" in summary["outputs"] and summary["manifest"].startswith("runs/")
    assert summary["raw_data"] == "written"
