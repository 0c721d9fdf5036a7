"""The code bundle: what a cloud run installs, shared by ``sync push --only code``, SageMaker and EC2.

A bundle is the project's ``src/`` tree, its ``pyproject.toml`` (and README),
``requirements.txt`` pinning every distribution of the environment that pushed
it, and ``bundle.json`` saying which commit it is::

    code/src/multitype/...           the package (no __pycache__, *.pyc, *.egg-info)
    code/pyproject.toml  code/README.md
    code/requirements.txt            name==version, local labels (+cpu) dropped
    code/bundle.json                 {"commit": <git HEAD or null>, "dirty": <bool or null>, "version": ...}

``bundle.json`` sits two folders above the package (``code/src/multitype`` ->
``code/bundle.json``), where :func:`multitype.manifest.code_version` looks for it
to record which code ran. :func:`code_files` gives the files as ``key -> local
path`` (what :func:`multitype.sync.sync` pushes); :func:`write_tarball` packs
them into one ``.tar.gz`` (a SageMaker ``sourcedir``).
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any, Mapping

from multitype import layout
from multitype.errors import UserError
from multitype.manifest import git
from multitype.storage import Storage

BUNDLE_FILE = "bundle.json"
REQUIREMENTS_FILE = "requirements.txt"
STAGING = ".multitype/code"  # where the generated files live under the project folder
_NOT_CODE = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
_PROJECT_FILES = ("pyproject.toml", "README.md", "setup.cfg", "setup.py")
_TRANSIENT = re.compile(r"^\..+\.(tmp|old-\d+)$")  # Storage's temp files and folders


def pinned_requirements() -> str:
    """``name==version`` for every distribution of the running environment but multitype.

    Like ``pip freeze`` (pip, setuptools and wheel left out); local version
    labels such as ``+cpu`` are dropped so a GPU machine installs its own build.
    """
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        canonical = re.sub(r"[-_.]+", "-", name).lower()
        if canonical in ("multitype", "pip", "setuptools", "wheel", "distribute"):
            continue
        pins[canonical] = f"{name}=={dist.version.split('+')[0]}"
    lines = [pins[k] for k in sorted(pins)]
    return "# written by multitype's code bundle: the environment that pushed it\n" + "\n".join(lines) + "\n"


def source_commit(project_dir: Path | None) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the source tree that is bundled; both ``None`` outside a git checkout.

    ``commit`` is ``git rev-parse HEAD`` of the checkout that tracks
    ``src/``; ``dirty`` is True when a bundled path (``src/``, the project
    files) differs from that commit, untracked files included, since they are
    pushed too.
    """
    if project_dir is None or git(project_dir, "ls-files", "--error-unmatch", "--", "src") is None:
        return {"commit": None, "dirty": None}
    head = git(project_dir, "rev-parse", "HEAD")
    if not head:
        return {"commit": None, "dirty": None}
    paths = ["src", *(name for name in _PROJECT_FILES if (project_dir / name).exists())]
    status = git(project_dir, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    return {"commit": head, "dirty": None if status is None else bool(status.strip())}


def _walk(folder: Path, key_prefix: str) -> dict[str, Path]:
    """Source files under ``folder`` as ``key_prefix/<relative path>`` (caches and build leftovers skipped)."""
    found: dict[str, Path] = {}
    stack = [(folder, key_prefix)]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            name = entry.name
            if _TRANSIENT.match(name):
                continue
            if entry.is_dir(follow_symlinks=False):
                if name not in _NOT_CODE and not name.endswith(".egg-info"):
                    stack.append((Path(entry.path), f"{prefix}/{name}"))
            elif not name.endswith((".pyc", ".pyo")):
                found[f"{prefix}/{name}"] = Path(entry.path)
    return found


def _write_if_changed(storage: Storage, key: str, text: str) -> Path:
    """Write ``text`` under ``key`` unless it is there already (an unchanged file keeps its mtime, so sync skips it)."""
    if not storage.exists(key) or storage.read_text(key) != text:
        storage.write_text(key, text)
    return storage.local_path(key)


def code_files(local: str | os.PathLike[str] = ".") -> dict[str, Path]:
    """The bundle's files, ``code/...`` key -> local file, writing the generated ones.

    Parameters
    ----------
    local : path, default="."
        The project folder. With a ``src/`` folder in it, that tree is bundled;
        otherwise the running ``multitype`` package itself (and the project
        files beside its ``src/``, if it is an editable install).
        ``requirements.txt`` and ``bundle.json`` are written under
        ``<local>/.multitype/code/``.

    Returns
    -------
    dict
        Keys such as ``code/src/multitype/__init__.py``, ``code/requirements.txt``
        and ``code/bundle.json``.
    """
    local = Path(local).expanduser()
    if local.exists() and not local.is_dir():
        raise UserError(f"'{local}' is a file; the code bundle is made from a project folder")
    src = local / "src"
    if src.is_dir():
        files = _walk(src, f"{layout.CODE}/src")
        project_dir: Path | None = local
    else:  # not run from the project folder: the installed package itself
        import multitype

        package = Path(multitype.__file__).resolve().parent
        files = _walk(package, f"{layout.CODE}/src/multitype")
        project_dir = package.parent.parent if package.parent.name == "src" else None
    if project_dir is not None:
        for name in _PROJECT_FILES:
            path = project_dir / name
            if path.is_file():
                files[f"{layout.CODE}/{name}"] = path
    staging = Storage(str(local))
    files[f"{layout.CODE}/{REQUIREMENTS_FILE}"] = _write_if_changed(
        staging, f"{STAGING}/{REQUIREMENTS_FILE}", pinned_requirements())
    version = _package_version()
    info = {**source_commit(project_dir), "version": version}
    files[f"{layout.CODE}/{BUNDLE_FILE}"] = _write_if_changed(
        staging, f"{STAGING}/{BUNDLE_FILE}", json.dumps(info, indent=2, sort_keys=True) + "\n")
    return files


def _package_version() -> str | None:
    try:
        return importlib.metadata.version("multitype")
    except importlib.metadata.PackageNotFoundError:
        return None


def write_tarball(files: Mapping[str, Path], path: str | os.PathLike[str], strip: str = f"{layout.CODE}/") -> Path:
    """Pack ``files`` (key -> local file, as from :func:`code_files`) into a reproducible ``.tar.gz``.

    Members are named by key without ``strip`` (so ``code/src/...`` becomes
    ``src/...``), sorted, with zeroed owners and times: the same files give
    the same bytes. Written to a temp name and renamed.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for key in sorted(files):
                name = key[len(strip):] if key.startswith(strip) else key
                info = tar.gettarinfo(str(files[key]), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                info.mode = 0o644
                with open(files[key], "rb") as fh:
                    tar.addfile(info, fh)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
