"""A tiny processed BBC project (real articles) and the settings that keep training short."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from multitype.config import default_yaml
from tests.conftest import BBC_4CLASS, bbc_data_dir, write_configs

# 4 classes x (6 train, 3 val, 3 test); max_length 64, batch 8: 3 batches an epoch
TINY = {"train": 6, "val": 3, "test": 3}


def write_processed(root: Path, sizes: dict[str, int] = TINY, classes: tuple[str, ...] = BBC_4CLASS,
                    seed: int = 0) -> Path:
    """``data/processed/{split}_<N>class.csv`` + ``labels.json`` from real BBC articles."""
    rng = random.Random(seed)
    folder = root / "data" / "processed"
    folder.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[tuple[str, str]]] = {split: [] for split in sizes}
    for label in classes:
        files = sorted((bbc_data_dir() / label).glob("*.txt"))
        picked = rng.sample(files, sum(sizes.values()))
        for split, count in sizes.items():
            for f in picked[:count]:
                rows[split].append((f.read_bytes().decode("utf-8", errors="replace"), label))
            picked = picked[count:]
    for split, items in rows.items():
        rng.shuffle(items)
        with open(folder / f"{split}_{len(classes)}class.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(items)
    (folder / "labels.json").write_text(json.dumps({name: i for i, name in enumerate(classes)}), encoding="utf-8")
    return root


def transformer_yaml(**defaults: object) -> str:
    """models_transformer.yaml with tiny, fast, deterministic defaults (plus ``defaults``)."""
    import yaml

    data = yaml.safe_load(default_yaml("transformer"))
    data["defaults"].update({"max_length": 64, "batch_size": 8, "num_epochs": 2, "learning_rate": 1e-4,
                             "precision": "fp32", "warmup_ratio": 0.0, "early_stopping_patience": None,
                             "checkpoint": {"every_steps": 2, "every_minutes": None, "keep_last_epochs": 2,
                                            # the resume tests read a finished run's every checkpoint
                                            "keep": "all"}})
    for key, value in defaults.items():
        data["defaults"][key] = value
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def tiny_project(tmp_path: Path) -> tuple[Path, Path]:
    """(root, config_dir) of a processed 4-class project of 48 real BBC articles."""
    root = write_processed(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml())
    return root, configs


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the 2 shared cores are faster that way, and runs compare within float rounding."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# subprocesses get the same single thread as in-process runs
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train_args(root: Path, configs: Path, *extra: str) -> list[str]:
    return ["train", "transformer", "--model-name", "minilm", "--root", str(root), "--config-dir", str(configs), *extra]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished 2-epoch run (6 steps, checkpoints every 2), shared by the tests that only read it."""
    import torch

    from multitype.cli import main

    base = tmp_path_factory.mktemp("trained")
    root = write_processed(base / "root")
    configs = write_configs(base / "configs", transformer=transformer_yaml())
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(train_args(root, configs)) == 0
    finally:
        torch.set_num_threads(before)
    return root, configs
