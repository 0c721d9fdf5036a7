"""A tiny processed BBC project with ``tune:`` blocks in both model configs (trials of a few seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from multitype.config import default_yaml
from tests.conftest import write_configs
from tests.transformer.conftest import SUBPROCESS_ENV, one_thread, transformer_yaml, write_processed  # noqa: F401

BASELINE_TUNE = {"metric": "macro_f1", "trials": 3,
                 "space": {"C": {"loguniform": [0.01, 100.0]}, "ngram_range": {"choice": [[1, 1], [1, 2]]}}}
# 24 train texts, batch 8: 3 steps an epoch; 2 epochs (a step checkpoint every 2 steps)
TRANSFORMER_TUNE = {"metric": "macro_f1", "trials": 3, "pruner": "median",
                    "space": {"learning_rate": {"loguniform": [1.0e-5, 3.0e-4]}, "warmup_ratio": {"uniform": [0.0, 0.2]}}}


def tune_configs(folder: Path, baseline: dict[str, Any] | None = BASELINE_TUNE,
                 transformer: dict[str, Any] | None = TRANSFORMER_TUNE) -> Path:
    """Config folder: the tiny transformer defaults (checkpoint.keep: last) plus the given tune: blocks."""
    b = yaml.safe_load(default_yaml("baseline"))
    b["tfidf"]["n_jobs"] = 1
    if baseline is not None:
        b["tune"] = baseline
    t = yaml.safe_load(transformer_yaml())
    t["defaults"]["checkpoint"]["keep"] = "last"
    if transformer is not None:
        t["tune"] = transformer
    return write_configs(folder, baseline=yaml.safe_dump(b, sort_keys=False),
                         transformer=yaml.safe_dump(t, sort_keys=False))


@pytest.fixture
def tune_project(tmp_path: Path) -> tuple[Path, Path]:
    """(root, config_dir): 48 real BBC articles, processed; both tune: blocks set."""
    return write_processed(tmp_path / "root"), tune_configs(tmp_path / "configs")
