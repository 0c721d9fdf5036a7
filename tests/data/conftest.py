"""Fixtures for the prepare tests: small real inputs in every format, a root with
files a failed run must not touch, and a way to set data_config.yaml keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from multitype.config import DataConfig
from tests.conftest import BBC_4CLASS, bbc_data_dir

PER_CLASS = 12


def bbc_records(per_class: int = PER_CLASS, classes: tuple[str, ...] = BBC_4CLASS) -> list[dict[str, str]]:
    """The first ``per_class`` BBC articles of each class (known free of duplicates)."""
    out = []
    for label in classes:
        for f in sorted((bbc_data_dir() / label).glob("*.txt"), key=lambda p: int(p.stem))[:per_class]:
            out.append({"text": f.read_bytes().decode("utf-8", errors="replace").strip(), "label": label})
    return out


@pytest.fixture(scope="session")
def records() -> list[dict[str, str]]:
    return bbc_records()


def write_json(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pandas as pd

    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def write_folder(path: Path, rows: list[dict[str, Any]]) -> Path:
    for i, r in enumerate(rows):
        (path / r["label"]).mkdir(parents=True, exist_ok=True)
        (path / r["label"] / f"{i}.txt").write_text(r["text"], encoding="utf-8")
    return path


WRITERS: dict[str, tuple[str, Callable[[Path, list[dict[str, Any]]], Path]]] = {
    "json": (".json", write_json),
    "jsonl": (".jsonl", write_jsonl),
    "csv": (".csv", write_csv),
    "parquet": (".parquet", write_parquet),
    "folder": ("", write_folder),
}


@pytest.fixture
def set_data_config(config_dir: Path) -> Callable[..., Path]:
    """``set_data_config(labels=[...], leakage={"policy": "warn"})`` rewrites data_config.yaml."""
    def _set(**values: Any) -> Path:
        merged = DataConfig().model_dump(mode="json")
        for key, value in values.items():
            merged[key] = {**merged[key], **value} if isinstance(value, dict) else value
        DataConfig.model_validate(merged)
        (config_dir / "data_config.yaml").write_text(yaml.safe_dump(merged), encoding="utf-8")
        return config_dir

    return _set


SENTINELS = {
    "data/processed/train_4class.csv": b"text,label\nkeep me,business\n",
    "data/processed/labels.json": b'{"business": 0}\n',
    "data/processed/audit.json": b"{}\n",
    "results/baseline/logreg_metrics.json": b'{"accuracy": 0.5}\n',
    "figures/data/class_balance.png": b"not really a png",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root that already holds data/ and results/ files from an earlier run."""
    base = tmp_path / "root"
    for key, data in SENTINELS.items():
        (base / key).parent.mkdir(parents=True, exist_ok=True)
        (base / key).write_bytes(data)
    return base


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
