"""A private copy of the serving tests' trained baseline root (logreg on 40 BBC articles a class) per test."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serve.conftest import Baseline, baseline, tiny_transformer  # noqa: F401 - session fixtures, built once


@dataclass
class Project:
    root: Path
    configs: Path

    @property
    def index(self) -> Path:
        return self.root / "models" / "registry" / "index.json"

    def where(self, root: str | Path | None = None) -> list[str]:
        return ["--root", str(root or self.root), "--config-dir", str(self.configs)]


@pytest.fixture
def project(baseline: Baseline, tmp_path: Path) -> Project:  # noqa: F811
    root = tmp_path / "root"
    shutil.copytree(baseline.root, root)
    return Project(root, baseline.configs)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_manifest(root: Path, run_id: str) -> dict:
    return json.loads((root / "runs" / run_id / "manifest.json").read_text())


def one_line_error(res) -> str:
    """The single ``error: ...`` line of a refused command (exit 2, nothing else on stderr)."""
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0][len("error: "):]
