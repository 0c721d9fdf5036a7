"""The ``sourcedir.tar.gz`` of a training job, packed as the SageMaker SDK's framework estimators pack it.

The stock PyTorch training image's toolkit downloads the tarball named by the
``sagemaker_submit_directory`` hyperparameter, runs ``pip install -r
requirements.txt`` and then ``python entry.py --name value ...``::

    entry.py            multitype.cloud.sagemaker.entrypoint.ENTRY_SCRIPT (puts src/ first on sys.path)
    requirements.txt    the runtime dependencies of multitype, pinned to the versions in use
    src/multitype/...   the package (multitype.cloud.bundle.code_files)
    bundle.json         which commit it is

No ``setup.py`` or ``pyproject.toml``: with one the toolkit would ``pip install
.`` the folder, dependencies (torch) included. ``requirements.txt`` leaves out
torch and whatever only torch needs (its CUDA stack, triton): the image has
them, and a second torch would be downloaded otherwise.

The tarball's bytes depend only on the files, so it is named by its content
hash (``code/sagemaker/sourcedir-<sha12>.tar.gz``): an unchanged bundle has the
same key and the sync does not upload it again, and every job keeps the code it
ran.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path

from multitype import layout
from multitype.cloud import bundle
from multitype.storage import Storage

ENTRY_POINT = "entry.py"
STAGING = ".multitype/sagemaker"  # under the project folder: the generated files and the tarball
KEY_PREFIX = f"{layout.CODE}/sagemaker"
# never pinned: the image provides them (the CUDA stack is reached through torch only anyway)
_IMAGE_PROVIDES = re.compile(r"^(torch|triton|nvidia-.*|pytorch-triton.*)$")
_SKIP = {"multitype", "pip", "setuptools", "wheel"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(name: str) -> list[tuple[str, str]]:
    """(canonical name, specifier) of what ``name`` needs, without extras, markers evaluated here.

    torch is also taken from the ``torch`` extra: it is not installed from
    there, but that extra says which torch versions the package supports.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        lines = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        dep = _canonical(req.name)
        # a dependency's own `torch` extra states the torch it works with (transformers: torch>=2.6)
        extras = ("", "torch") if dep == "torch" else ("",)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        found.append((dep, str(req.specifier)))
    return found


def _closure(start: str, stop: frozenset[str] = frozenset()) -> tuple[set[str], list[str]]:
    """(every distribution ``start`` needs, not walking through ``stop``; the torch specifiers stated on the way)."""
    seen: set[str] = set()
    torch_specs: list[str] = []
    todo = [_canonical(start)]
    while todo:
        for dep, spec in _requires(todo.pop()):
            if dep == "torch" and spec:
                torch_specs.append(spec)
            if dep in seen:
                continue
            seen.add(dep)
            if dep not in stop:
                todo.append(dep)
    return seen, torch_specs


def runtime_requirements(package: str = "multitype") -> list[str]:
    """``name==version`` for what ``package`` needs at run time, minus what the training image provides.

    The closure of ``Requires-Dist`` without extras (markers evaluated for
    this Python), pinned to the installed versions (local labels such as
    ``+cpu`` dropped), leaving out ``package`` itself, torch, and everything
    reachable only through torch (nvidia-*, triton, sympy...).
    """
    needed, _ = _closure(package, stop=frozenset({"torch"}))
    pins = []
    for name in sorted(needed):
        if name in _SKIP or name == _canonical(package) or _IMAGE_PROVIDES.match(name):
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # optional on this platform and not installed
        pins.append(f"{dist.metadata['Name']}=={dist.version.split('+')[0]}")
    return pins


def torch_specifier(package: str = "multitype") -> str:
    """Every torch range that ``package`` and its dependencies state, joined (``">=2.2,<3,>=2.0.0"``)."""
    _, specs = _closure(package, stop=frozenset({"torch"}))
    return ",".join(dict.fromkeys(s for spec in specs for s in spec.split(",") if s))


@dataclass(frozen=True)
class Sourcedir:
    """A packed sourcedir: the local file, its key under the root, its size and the files in it."""

    path: Path
    key: str
    size: int
    sha256: str
    files: tuple[str, ...]


def _entry_script() -> str:
    from multitype.cloud.sagemaker.entrypoint import ENTRY_SCRIPT

    return ENTRY_SCRIPT


def build_sourcedir(local: str | os.PathLike[str] = ".") -> Sourcedir:
    """Pack the sourcedir of the project folder ``local`` into ``<local>/.multitype/sagemaker/``.

    Parameters
    ----------
    local : path, default="."
        The project folder (see :func:`multitype.cloud.bundle.code_files` for
        which package source is taken).

    Returns
    -------
    Sourcedir
        ``key`` is ``code/sagemaker/sourcedir-<sha12>.tar.gz``.
    """
    local = Path(local).expanduser()
    files = {key: path for key, path in bundle.code_files(local).items()
             if key.startswith(f"{layout.CODE}/src/") or key == f"{layout.CODE}/{bundle.BUNDLE_FILE}"}
    staging = Storage(str(local))
    generated = {
        ENTRY_POINT: _entry_script(),
        bundle.REQUIREMENTS_FILE: "# written by multitype: what the training image lacks, pinned to the versions "
                                  "in use\n" + "\n".join(runtime_requirements()) + "\n",
    }
    for name, text in generated.items():
        key = f"{STAGING}/{name}"
        if not staging.exists(key) or staging.read_text(key) != text:
            staging.write_text(key, text)
        files[f"{layout.CODE}/{name}"] = staging.local_path(key)
    folder = local / STAGING
    tmp = bundle.write_tarball(files, folder / "sourcedir.tar.gz")
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"sourcedir-{digest[:12]}.tar.gz"
    final = folder / name
    os.replace(tmp, final)
    for old in folder.glob("sourcedir-*.tar.gz"):  # keep only the newest locally; S3 keeps every job's
        if old != final:
            old.unlink(missing_ok=True)
    members = tuple(sorted(k[len(layout.CODE) + 1:] for k in files))
    return Sourcedir(final, f"{KEY_PREFIX}/{name}", final.stat().st_size, digest, members)
