"""Processed BBC News (4 classes) and a root with trained baselines, built once per session.

The splits are written the way ``multitype prepare`` lays them out
(``data/processed/{split}_4class.csv`` + ``labels.json``): exact duplicates
removed, then a stratified 80/10/10 split with a fixed seed. Both helpers cache
their folder, so every test module that needs them shares one copy.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from tests.conftest import BBC_4CLASS, bbc_data_dir, write_configs

_CACHE: dict[str, Path] = {}


def write_processed(root: Path, texts: list[str], labels: list[str], names=BBC_4CLASS, seed: int = 42) -> Path:
    """Stratified 80/10/10 split of ``texts`` into ``root/data/processed``."""
    rest_t, test_t, rest_y, test_y = train_test_split(texts, labels, test_size=0.1, stratify=labels, random_state=seed)
    train_t, val_t, train_y, val_y = train_test_split(rest_t, rest_y, test_size=1 / 9, stratify=rest_y,
                                                      random_state=seed)
    folder = root / "data" / "processed"
    folder.mkdir(parents=True, exist_ok=True)
    for split, (t, y) in {"train": (train_t, train_y), "val": (val_t, val_y), "test": (test_t, test_y)}.items():
        buf = io.StringIO()
        pd.DataFrame({"text": t, "label": y}).to_csv(buf, index=False)
        (folder / f"{split}_{len(names)}class.csv").write_text(buf.getvalue(), encoding="utf-8")
    (folder / "labels.json").write_text(json.dumps({n: i for i, n in enumerate(names)}), encoding="utf-8")
    return root


def bbc_texts(classes=BBC_4CLASS) -> tuple[list[str], list[str]]:
    """Every BBC article of ``classes``, exact duplicates dropped (one file is Latin-1)."""
    seen, texts, labels = set(), [], []
    for label in classes:
        for path in sorted((bbc_data_dir() / label).glob("*.txt")):
            text = path.read_bytes().decode("utf-8", errors="replace").strip()
            if text and text not in seen:
                seen.add(text)
                texts.append(text)
                labels.append(label)
    return texts, labels


def processed_root(factory: pytest.TempPathFactory) -> Path:
    """A root holding only the processed full 4-class BBC splits (shared: copy before writing)."""
    if "processed" not in _CACHE:
        texts, labels = bbc_texts()
        _CACHE["processed"] = write_processed(factory.mktemp("bbc-processed"), texts, labels)
    return _CACHE["processed"]


def trained_root(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(root, config_dir) after ``multitype train baseline`` on the processed BBC data (shared: read only)."""
    if "trained" not in _CACHE:
        from multitype.cli import main

        base = factory.mktemp("bbc-trained")
        root = base / "root"
        shutil.copytree(processed_root(factory), root)
        configs = write_configs(base / "configs")
        code = main(["train", "baseline", "--root", str(root), "--config-dir", str(configs)])
        assert code == 0
        _CACHE["trained"] = root
        _CACHE["trained-configs"] = configs
    return _CACHE["trained"], _CACHE["trained-configs"]


def copy_root(src: Path, dest: Path) -> Path:
    """A private copy of a shared root (for tests that write into it)."""
    shutil.copytree(src, dest)
    return dest
