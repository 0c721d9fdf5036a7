"""Prepared BBC News (4 classes) and a root with trained baselines, built once per session.

``processed_root`` runs the real ``multitype prepare`` on the embedded BBC
News data (audit, de-duplication, stratified split); ``trained_root`` then runs
``multitype train baseline`` on a copy. Both cache their folder, so every test
module that needs them shares one copy: tests that write must copy it first
(:func:`copy_root`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import write_configs

_CACHE: dict[str, Path] = {}


def _main(*args: str) -> int:
    from multitype.cli import main

    return main([str(a) for a in args])


def processed_root(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(root, config_dir) after ``multitype prepare`` on the embedded BBC News data (read only)."""
    if "processed" not in _CACHE:
        base = factory.mktemp("bbc-prepared")
        configs = write_configs(base / "configs")
        assert _main("prepare", "--root", base / "root", "--config-dir", configs) == 0
        _CACHE["processed"], _CACHE["configs"] = base / "root", configs
    return _CACHE["processed"], _CACHE["configs"]


def trained_root(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(root, config_dir) after ``multitype train baseline`` on the prepared data (read only)."""
    if "trained" not in _CACHE:
        processed, configs = processed_root(factory)
        root = factory.mktemp("bbc-trained") / "root"
        shutil.copytree(processed, root)
        assert _main("train", "baseline", "--root", root, "--config-dir", configs) == 0
        _CACHE["trained"] = root
    return _CACHE["trained"], _CACHE["configs"]


def copy_root(src: Path, dest: Path) -> Path:
    """A private copy of a shared root, for tests that write into it."""
    shutil.copytree(src, dest)
    return dest
