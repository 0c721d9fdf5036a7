"""Run manifests (DESIGN.md section 4): what produced what, with which settings."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import time
from typing import Any, Iterable

from multitype import layout
from multitype.project import Project

_PACKAGES = ("multitype", "torch", "transformers", "accelerate", "scikit-learn", "skops", "numpy",
             "pandas", "pydantic", "fsspec", "s3fs", "boto3")
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


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


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
) -> str:
    """Write ``runs/<run-id>/manifest.json`` and return its key.

    ``inputs`` and ``outputs`` are keys under the root; ``external_inputs`` maps
    a description (e.g. an input file outside the root) to its sha256.
    """
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
        "outputs": file_hashes(project, outputs),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "hardware": hardware(),
    }
    if extra:
        manifest.update(scrub(extra))
    key = layout.manifest(project.run_id)
    project.storage.write_json(key, manifest)
    return key
