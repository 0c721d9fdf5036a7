"""The leakage audit on crafted leaks: duplicates, conflicts, near-duplicates, and the three policies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multitype.data import audit as leakage
from tests.data.conftest import bbc_records, snapshot, write_json

SPLITS = ("train", "val", "test")


def split_of_texts(root: Path, n: int) -> dict[str, set[str]]:
    """Normalised text -> the splits it was written to (read back from the CSVs)."""
    where: dict[str, set[str]] = {}
    for split in SPLITS:
        frame = pd.read_csv(root / f"data/processed/{split}_{n}class.csv", dtype=str, keep_default_na=False)
        for text in frame["text"]:
            where.setdefault(leakage.normalize(text), set()).add(split)
    return where


def edit(text: str, every: int = 40) -> str:
    """``text`` with every ``every``-th word replaced: a near-duplicate, not an exact one."""
    words = text.split()
    return " ".join("changed" if i % every == 7 else w for i, w in enumerate(words))


def test_cosine_pairs_is_exact_against_brute_force():
    texts = [leakage.normalize(r["text"]) for r in bbc_records(per_class=40)]
    texts += [edit(t, every) for t, every in zip(texts[:30], range(5, 35))]  # pairs across the whole range
    matrix = leakage.tfidf_matrix(texts)
    dense = (matrix @ matrix.T).toarray()
    upper = np.triu_indices(len(texts), 1)
    for threshold in (0.3, 0.6, 0.9, 0.97):
        expected = {(int(i), int(j)) for i, j, s in zip(*upper, dense[upper]) if s >= threshold - 1e-6}
        i, j, s = leakage.cosine_pairs(matrix, threshold, budget=2_000)  # tiny budget: many chunks
        assert set(zip(i.tolist(), j.tolist())) == expected, threshold
        assert np.allclose(s, dense[i, j], atol=1e-5)
    assert len(expected) >= 10


def test_exact_duplicates_conflicts_and_near_duplicates_under_drop(records, cli, config_dir, tmp_path):
    a, b, c, d = records[0], records[1], records[15], records[30]
    leaky = [
        *records,
        {"text": "  " + a["text"].upper() + "\n\n", "label": a["label"]},  # exact dup: case + whitespace
        {"text": a["text"].replace(" ", "\t "), "label": a["label"]},       # and another
        {"text": b["text"], "label": "tech"},                               # conflict with row 2
        {"text": edit(c["text"]), "label": c["label"]},                     # near-duplicate, same label
        {"text": edit(d["text"]), "label": "business"},                     # near-duplicate, other label
    ]
    n = len(records)
    root = tmp_path / "root"
    result = cli("prepare", "--input", write_json(tmp_path / "leaky.json", leaky), "--root", root,
                 "--config-dir", config_dir)
    assert result.exit_code == 0, result.stderr
    audit = json.loads((root / "data/processed/audit.json").read_text())

    exact = audit["exact_duplicates"]
    assert (exact["groups"], exact["extra_rows"]) == (2, 3)  # group {1, n+1, n+2} and the conflict group {2, n+3}
    assert [1, n + 1, n + 2] in [e["rows"] for e in exact["examples"]]
    conflicts = audit["label_conflicts"]
    assert (conflicts["groups"], conflicts["rows"]) == (1, 2)
    assert conflicts["examples"][0]["rows"] == [2, n + 3]
    assert conflicts["examples"][0]["labels"] == [b["label"], "tech"]
    near = audit["near_duplicates"]
    assert (near["pairs"], near["clusters"], near["mixed_label_clusters"]) == (2, 2, 1)
    assert {tuple(e["rows"]) for e in near["examples"]} == {(16, n + 4), (31, n + 5)}
    assert all(e["similarity"] >= 0.9 and e["texts"][0] for e in near["examples"])
    assert audit["dropped"] == {"exact_duplicates": 2, "label_conflicts": 2, "near_duplicate_conflicts": 2}
    assert audit["cross_split"] == {"exact_duplicates": 0, "near_duplicates": 0,
                                    "exact_examples": [], "near_examples": []}

    where = split_of_texts(root, 4)
    assert all(len(splits) == 1 for splits in where.values())       # no text in two splits
    assert leakage.normalize(b["text"]) not in where                  # conflict dropped whole
    assert leakage.normalize(d["text"]) not in where                  # mixed-label cluster dropped whole
    assert where[leakage.normalize(c["text"])] == where[leakage.normalize(edit(c["text"]))]  # kept together
    assert sum(s["size"] for s in audit["splits"].values()) == n + 5 - 6
    assert "near-duplicate pairs" in result.stderr and "cross-split" in result.stderr


def test_warn_keeps_everything_and_reports_cross_split_leaks(records, cli, set_data_config, tmp_path):
    copies = [{"text": records[i]["text"], "label": records[i]["label"]} for i in range(0, 48, 4) for _ in range(3)]
    rows = [*records, *copies, {"text": edit(records[5]["text"]), "label": records[5]["label"]}]
    config_dir = set_data_config(leakage={"policy": "warn"})
    root = tmp_path / "root"
    result = cli("prepare", "--input", write_json(tmp_path / "in.json", rows), "--root", root,
                 "--config-dir", config_dir)
    assert result.exit_code == 0, result.stderr
    audit = json.loads((root / "data/processed/audit.json").read_text())
    assert audit["exact_duplicates"]["extra_rows"] == len(copies)
    assert audit["near_duplicates"]["pairs"] == 1
    assert audit["dropped"] == {}
    assert sum(s["size"] for s in audit["splits"].values()) == len(rows)
    where = split_of_texts(root, 4)
    crossing = sum(1 for splits in where.values() if len(splits) > 1)
    assert crossing > 0 and audit["cross_split"]["exact_duplicates"] == crossing
    assert "warning:" in result.stderr and "leakage.policy: warn" in result.stderr


def test_fail_refuses_leaky_data_and_writes_nothing(records, cli, set_data_config, root, tmp_path):
    rows = [*records, dict(records[3]), {"text": records[9]["text"], "label": "sports"}]
    config_dir = set_data_config(leakage={"policy": "fail"})
    before = snapshot(root)
    result = cli("prepare", "--input", write_json(tmp_path / "in.json", rows), "--root", root,
                 "--config-dir", config_dir)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: leakage audit failed (policy: fail)")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "2 exact duplicate row(s) in 2 group(s) (e.g. rows 4, 49)" in result.stderr
    assert "1 conflicting-label group(s) (e.g. rows 10, 50)" in result.stderr
    assert "0 near-duplicate pair(s)" in result.stderr
    assert snapshot(root) == before


def test_fail_passes_clean_data(records, cli, set_data_config, tmp_path):
    config_dir = set_data_config(leakage={"policy": "fail", "near_duplicate_threshold": 0.95})
    result = cli("prepare", "--input", write_json(tmp_path / "in.json", records), "--root", tmp_path / "root",
                 "--config-dir", config_dir)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("threshold, found", [(0.99, 0), (0.5, 1)])
def test_threshold_decides_what_is_near(records, cli, set_data_config, tmp_path, threshold, found):
    rows = [*records, {"text": edit(records[0]["text"], every=8), "label": records[0]["label"]}]
    matrix = leakage.tfidf_matrix([leakage.normalize(r["text"]) for r in rows])
    similarity = float((matrix[0] @ matrix[len(rows) - 1].T).toarray()[0, 0])
    assert 0.5 < similarity < 0.99
    config_dir = set_data_config(leakage={"near_duplicate_threshold": threshold})
    root = tmp_path / "root"
    assert cli("prepare", "--input", write_json(tmp_path / "in.json", rows), "--root", root,
               "--config-dir", config_dir).exit_code == 0
    audit = json.loads((root / "data/processed/audit.json").read_text())
    assert audit["near_duplicates"]["pairs"] == found
