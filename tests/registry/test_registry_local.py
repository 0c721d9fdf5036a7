"""``multitype registry`` on a local root: what a version records, stages, and ``registry:`` in predict.

The model is the real logreg baseline of tests/serve/conftest.py; every recorded fact is checked against
the files themselves (the model folder's bytes, the processed splits, the run's manifest and metrics).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

import pandas as pd
from multitype.manifest import folder_digest
from multitype.registry import index as ix
from multitype.storage import Storage
from tests.registry.conftest import Project, one_line_error, run_manifest, sha256


def _show(cli, project: Project, ref: str) -> dict:
    res = cli("registry", "show", ref, *project.where())
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def test_add_records_the_model_its_run_data_code_and_test_metrics(cli, project: Project) -> None:
    folder = project.root / "models" / "final" / "logreg"
    res = cli("registry", "add", "models/final/logreg", "--name", "news", *project.where())
    assert res.exit_code == 0, res.stderr
    digest = folder_digest(folder)
    copy = f"models/registry/news/{digest[:16]}"
    assert res.stderr.splitlines() == [f"copying the model (sklearn, 2 files) to {project.root / copy}",
                                       f"registered news version 1 (none) from {folder} -> {project.root / copy}"]
    assert "warning" not in res.stderr

    v1 = _show(cli, project, "news:1")
    card = json.loads((folder / "model.json").read_text())
    manifest = run_manifest(project.root, card["run_id"])
    metrics = json.loads((project.root / "results" / "baseline" / "logreg_metrics.json").read_text())
    splits = {f"data/processed/{s}_4class.csv": sha256(project.root / "data" / "processed" / f"{s}_4class.csv")
              for s in ("train", "val", "test")}
    fingerprint = hashlib.sha256("".join(f"{k} {v}\n" for k, v in sorted(splits.items())).encode()).hexdigest()
    assert v1 == {
        "version": 1, "stage": "none", "created": v1["created"], "updated": v1["created"], "model": copy,
        "source": str(folder), "sha256": digest, "kind": "sklearn", "name": "logreg", "run_id": card["run_id"],
        "code": manifest["code"], "data_fingerprint": fingerprint, "data_files": splits,
        "metrics": {"split": "test", "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                    "weighted_f1": metrics["weighted_f1"], "intervals": metrics["intervals"]},
        "metrics_file": "results/baseline/logreg_metrics.json",
        "history": [{"stage": "none", "at": v1["created"]}]}
    assert metrics["schema_version"] == 2 and metrics["intervals"]["macro_f1"][0] <= metrics["macro_f1"]
    # the registry's own copy: the same files, byte for byte, published with its marker
    copied = project.root / copy
    assert sorted(p.name for p in copied.iterdir()) == ["_COMPLETE", "model.json", "model.skops"]
    assert folder_digest(copied) == digest
    # the index on disk is the documented schema
    stored = json.loads(project.index.read_text())
    assert stored["schema_version"] == 1 and list(stored["models"]) == ["news"]


def test_stages_promote_demote_archive_and_predict_by_reference(cli, project: Project, tmp_path: Path) -> None:
    for stage in ("staging", "none"):
        assert cli("registry", "add", "models/final/logreg", "--name", "news", "--stage", stage,
                   *project.where()).exit_code == 0
    res = cli("registry", "promote", "news:2", "--stage", "production", *project.where())
    assert res.exit_code == 0, res.stderr
    assert res.stderr.strip().splitlines() == ["news version 2: production"]
    res = cli("registry", "promote", "news:1", "--stage", "production", *project.where())
    assert res.stderr.strip().splitlines() == ["news version 2: production -> staging", "news version 1: production"]
    entry = _show(cli, project, "news")
    assert [(v["version"], v["stage"]) for v in entry["versions"]] == [(1, "production"), (2, "staging")]
    assert [h["stage"] for h in entry["versions"][1]["history"]] == ["none", "production", "staging"]

    # predict with registry:news (production: version 1) and registry:news:2 gives what the folder gives
    texts = tmp_path / "news.txt"
    texts.write_text("Shares fell after the bank cut its dividend.\nThe striker scored twice in the final.\n")
    outputs = {}
    for ref in ("registry:news", "registry:news:2", "models/final/logreg"):
        out = tmp_path / f"{len(outputs)}.csv"
        res = cli("predict", "--model", ref, "--input", texts, "--output", out, *project.where())
        assert res.exit_code == 0, res.stderr
        outputs[ref] = pd.read_csv(out)
        if ref.startswith("registry:"):
            number = 1 if ref == "registry:news" else 2
            stage = "production" if number == 1 else "staging"
            assert f"model {ref} is news version {number} ({stage}, sha256 " in res.stderr
    assert outputs["registry:news"].equals(outputs["models/final/logreg"])
    assert outputs["registry:news:2"]["predicted_label"].tolist() == ["business", "sports"]

    # archive the production version: registry:news has none now, registry:news:2 still works
    res = cli("registry", "archive", "news:1", *project.where())
    assert res.exit_code == 0 and res.stderr.strip() == "news version 1: archived"
    res = cli("predict", "--model", "registry:news", "--input", texts, "--output", tmp_path / "x.csv",
              *project.where())
    assert one_line_error(res) == (
        f"news has no production version in {project.index}; promote one ('multitype registry promote "
        "news:<version> --stage production') or name one (registry:news:<version>)")
    assert not (tmp_path / "x.csv").exists()
    res = cli("registry", "list", "news", *project.where())
    rows = [line.split("\t") for line in res.stdout.strip().splitlines()]
    assert res.exit_code == 0 and rows[0][:2] == ["version", "stage"]
    assert [r[:2] for r in rows[1:]] == [["1", "archived"], ["2", "staging"]]
    res = cli("registry", "list", *project.where())
    assert res.stdout.strip().splitlines()[1].split("\t") == ["news", "2", "-", "2", "staging"]


def test_a_version_keeps_its_model_when_the_folder_is_retrained(cli, project: Project, tmp_path: Path) -> None:
    folder = project.root / "models" / "final" / "logreg"
    assert cli("registry", "add", "models/final/logreg", "--name", "news", "--stage", "production",
               *project.where()).exit_code == 0
    before = _show(cli, project, "news:1")
    res = cli("train", "baseline", "--models", "logreg", *project.where())  # models/final/logreg replaced
    assert res.exit_code == 0, res.stderr
    retrained = json.loads((folder / "model.json").read_text())["run_id"]
    assert retrained != before["run_id"] and folder_digest(folder) != before["sha256"]
    from multitype.registry import resolve

    resolved = resolve(Storage(str(project.root)), "registry:news")
    assert resolved.version.sha256 == before["sha256"]
    assert folder_digest(project.root / resolved.version.model) == before["sha256"]
    # the retrained folder is a new version with its own copy and its own run
    assert cli("registry", "add", "models/final/logreg", "--name", "news", *project.where()).exit_code == 0
    v2 = _show(cli, project, "news:2")
    assert v2["sha256"] == folder_digest(folder) and v2["model"] != before["model"]
    assert v2["run_id"] == retrained and v2["data_fingerprint"] == before["data_fingerprint"]

    # a root whose runs/ knows nothing of the model: registered, with a warning, without another run's facts
    other = tmp_path / "other-root"
    res = cli("registry", "add", folder, "--name", "news", *project.where(other))
    assert res.exit_code == 0, res.stderr
    assert f"warning: no run manifest under {other / 'runs'} records these model files" in res.stderr
    v1 = json.loads(cli("registry", "show", "news:1", *project.where(other)).stdout)
    assert v1["sha256"] == v2["sha256"]
    assert not {"run_id", "metrics", "data_fingerprint", "code"} & set(v1)


def test_a_transformer_is_matched_to_its_run_by_the_weights_hash(cli, tiny_transformer: Path) -> None:
    """A transformer's model.json names no run: the manifest whose outputs hold these weights is found."""
    root = tiny_transformer.parents[2]
    configs = root.parent / "configs"
    work = Path(str(root) + "-registry")
    shutil.copytree(root, work)
    where = ["--root", str(work), "--config-dir", str(configs)]
    res = cli("registry", "add", "models/final/minilm", "--name", "minilm-news", *where)
    assert res.exit_code == 0, res.stderr
    res = cli("registry", "show", "minilm-news:1", *where)
    v1 = json.loads(res.stdout)
    metrics = json.loads((work / "results" / "transformer" / "minilm_metrics.json").read_text())
    manifest = run_manifest(work, metrics["run_id"])
    weights = sha256(work / "models" / "final" / "minilm" / "model.safetensors")
    assert manifest["outputs"]["models/final/minilm/model.safetensors"] == weights
    assert v1["kind"] == "transformer" and v1["run_id"] == metrics["run_id"]
    assert v1["metrics"]["macro_f1"] == metrics["macro_f1"] and v1["metrics"]["split"] == "test"
    assert v1["metrics_file"] == "results/transformer/minilm_metrics.json"
    assert set(v1["data_files"]) == {f"data/processed/{s}_4class.csv" for s in ("train", "val", "test")}


def race(storage: Storage) -> None:
    """Two updates that both read the index before either writes (a barrier): one write is refused, and that
    writer re-reads and applies its change again, so the versions are 1 and 2."""
    barrier = threading.Barrier(2, timeout=30)
    calls: dict[str, int] = {}
    results: dict[str, int] = {}

    def writer(tag: str) -> None:
        def change(index: ix.Index) -> int:
            calls[tag] = calls.get(tag, 0) + 1
            entry = index.models.setdefault("news", ix.RegisteredModel())
            number = len(entry.versions) + 1
            entry.versions.append(ix.Version(version=number, stage="none", created=tag, updated=tag,
                                             model=f"m/{tag}", source=tag, sha256="0" * 64, kind="sklearn"))
            if calls[tag] == 1:
                barrier.wait()  # both have read the same (empty) index
            return number

        results[tag] = ix.update(storage, change, sleep=lambda s: None)

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results.values()) == [1, 2]
    assert sorted(calls.values()) == [1, 2]  # the loser applied its change once more, on the winner's index
    stored = ix.load(storage).models["news"].versions
    assert [(v.version, v.source) for v in stored] == sorted((n, tag) for tag, n in results.items())


def test_two_local_writers_that_read_the_same_index_cannot_both_win(tmp_path: Path) -> None:
    race(Storage(str(tmp_path)))
