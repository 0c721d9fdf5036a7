"""Run manifests (DESIGN.md section 4): what produced what, with which settings."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from multitype import layout
from multitype.project import Project
from multitype.storage import Storage

_PACKAGES = ("multitype", "torch", "transformers", "scikit-learn", "skops", "numpy",
             "pandas", "pydantic", "fsspec", "s3fs", "botocore", "s3transfer")
_SECRET_KEY = re.compile(r"(secret|token|password|passwd|credential|access_key|api_key|session)", re.I)
_SECRET_ARG = re.compile(r"(--[\w-]*(secret|token|password|key)[\w-]*)(=\S+)?", re.I)


def scrub(value: Any) -> Any:
    """Replace anything that looks like a secret with ``***`` (keys and values)."""
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_KEY.search(str(k)) and v else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"(?<=://)[^/@\s:]+:[^/@\s]+@", "***@", value)  # user:pass@ in URLs
    return value


def scrub_argv(argv: list[str]) -> list[str]:
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        m = _SECRET_ARG.fullmatch(arg)
        if m:
            out.append(m.group(1) + ("=***" if m.group(3) else ""))
            hide_next = m.group(3) is None
        else:
            out.append(scrub(arg))
    return out


def package_versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": sys.version.split()[0],
                            "cpu_count": os.cpu_count(), "machine": platform.machine()}
    try:
        import torch

        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # torch missing or broken CUDA: the manifest still gets written
        info["cuda_devices"] = []
    return info


BUNDLE_FILE = "bundle.json"


def git(folder: Path, *args: str) -> str | None:
    """``git -C folder ARGS``'s stripped output, or None when git is missing, fails or hangs."""
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version(package_dir: Path | None = None) -> dict[str, Any] | None:
    """The commit of the code that runs: its git checkout, or the pushed ``code/`` bundle it came from.

    Looked up from the package's own folder, never the current one (a run
    started in another repository must not record that repository's commit).

    Parameters
    ----------
    package_dir : Path, optional
        The ``multitype`` package folder (default: this package's).

    Returns
    -------
    dict or None
        ``{"commit", "dirty", "source"}`` with ``source`` ``"git"`` (a checkout in
        which the package's files are tracked; ``dirty``: tracked files changed)
        or ``"bundle"`` (``<package>/../../bundle.json`` of a pushed ``code/``
        folder: ``code/src/multitype`` -> ``code/bundle.json``); None when
        neither is there (e.g. an installed wheel).
    """
    package_dir = Path(package_dir or Path(__file__).parent).resolve()
    bundle = package_dir.parent.parent / BUNDLE_FILE
    if bundle.is_file():
        try:
            info = json.loads(bundle.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and info.get("commit"):
            return {"commit": str(info["commit"]), "dirty": info.get("dirty"), "source": "bundle"}
    # only a checkout that tracks the package counts (not a venv inside some other repository)
    if git(package_dir, "ls-files", "--error-unmatch", "--", "__init__.py") is None:
        return None
    commit = git(package_dir, "rev-parse", "HEAD")
    if not commit:
        return None
    status = git(package_dir, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status), "source": "git"}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a local file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_hashes(folder: str | os.PathLike[str], name: str) -> dict[str, str]:
    """``{name/relative/path: sha256}`` of every file in a local folder (hash it before publishing it as ``name``)."""
    folder = Path(folder)
    return {f"{name}/{p.relative_to(folder).as_posix()}": sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def folder_digest(folder: str | os.PathLike[str]) -> str:
    """One sha256 over every file's relative path and bytes, in path order: a model folder's identity.

    The publish marker (``_COMPLETE``) is left out, so a folder hashes the same
    before and after :meth:`~multitype.storage.Storage.put_dir` publishes it.
    ``serve`` reports the first 12 hex digits as the model's version; the
    registry records the whole digest.
    """
    from multitype.storage import COMPLETE_MARKER

    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER):
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def file_hashes(project: Project, keys: Iterable[str]) -> dict[str, str]:
    """sha256 of every file under each key (a file or a folder); missing keys are skipped."""
    storage = project.storage
    hashes: dict[str, str] = {}
    for key in keys:
        for rel in sorted(storage.walk_files(key)) if storage.isdir(key) else ([key] if storage.exists(key) else []):
            hashes[rel] = hashlib.sha256(storage.read_bytes(rel)).hexdigest()
    return hashes


def write_manifest(
    project: Project,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    extra: dict[str, Any] | None = None,
    external_inputs: dict[str, str] | None = None,
    output_hashes: Mapping[str, str] | None = None,
    storage: Storage | None = None,
) -> str:
    """Write ``runs/<run-id>/manifest.json`` and return its key.

    Parameters
    ----------
    project : Project
    inputs, outputs : iterable of str
        Keys under the root (files or folders), hashed by reading them back.
    extra : dict, optional
        More fields (scrubbed of secrets).
    external_inputs : dict, optional
        Description (e.g. an input file outside the root) -> sha256.
    output_hashes : mapping, optional
        Output name -> sha256 of outputs hashed while they were written (no read-back).
    storage : Storage, optional
        Where the manifest goes (default: the root; training passes its results root).
    """
    code = code_version()
    manifest = {
        "run_id": project.run_id,
        "command": project.command,
        "argv": scrub_argv(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(project.started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - project.started, 3),
        "root": scrub(project.storage.root),
        "seed": project.configs.project.seed,
        "config": scrub(project.configs.to_dict()),
        "config_source": project.configs.source,
        "inputs": {**(external_inputs or {}), **file_hashes(project, inputs)},
        "outputs": {**file_hashes(project, outputs), **(output_hashes or {})},
        "git_commit": code["commit"] if code else None,
        "code": code,
        "packages": package_versions(),
        "hardware": hardware(),
    }
    if extra:
        manifest.update(scrub(extra))
    key = layout.manifest(project.run_id)
    (storage or project.storage).write_json(key, manifest)
    return key
