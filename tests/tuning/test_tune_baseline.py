"""`multitype tune baseline` on a local root: the results contract, resume, --parallel (real TF-IDF + logreg)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import run_cli_process


def _args(root: Path, configs: Path, *extra: str) -> list[str]:
    return ["tune", "baseline", "--root", str(root), "--config-dir", str(configs), *extra]


def _rows(root: Path, study: str = "logreg-baseline") -> list[dict[str, str]]:
    with open(root / "results" / "tuning" / f"{study}.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _manifests(root: Path, command: str) -> list[dict]:
    return [m for m in (json.loads(p.read_text()) for p in sorted((root / "runs").glob("*/manifest.json")))
            if m["command"].startswith(command)]


def test_a_study_writes_the_contract_files_and_evaluates_the_best_once(tune_project, cli) -> None:
    root, configs = tune_project
    result = cli(*_args(root, configs))
    assert result.exit_code == 0, result.stderr
    with open(root / "results/tuning/logreg-baseline.csv", encoding="utf-8") as fh:
        assert fh.readline().strip() == "number,slug,state,value,seconds,params_C,params_ngram_range"
    rows = _rows(root)
    assert [r["number"] for r in rows] == ["0", "1", "2"]
    assert [r["slug"] for r in rows] == ["logreg-t0", "logreg-t1", "logreg-t2"]
    assert {r["state"] for r in rows} == {"COMPLETE"}
    assert all(r["params_ngram_range"] in ("[1, 1]", "[1, 2]") and float(r["seconds"]) >= 0 for r in rows)

    doc = json.loads((root / "results/tuning/logreg-baseline.json").read_text())
    assert set(doc) == {"schema_version", "study", "kind", "backend", "model_name", "metric", "direction", "space",
                        "fingerprint", "trials", "best", "tuning_job", "intermediate"}
    assert (doc["kind"], doc["backend"], doc["model_name"], doc["tuning_job"]) == ("baseline", "local", "logreg", None)
    assert doc["trials"] == {"total": 3, "complete": 3, "pruned": 0, "failed": 0, "running": 0}
    values = [float(r["value"]) for r in rows]
    best = doc["best"]
    assert best["value"] == max(values) and best["number"] == values.index(max(values))
    assert isinstance(best["params"]["ngram_range"], list)

    # every trial is a run of its own, scored on val; only the best's metrics gain test, once
    for row in rows:
        record = json.loads((root / f"results/baseline/{row['slug']}_metrics.json").read_text())
        assert abs(record["splits"]["val"]["macro_f1"] - float(row["value"])) < 1e-12
        assert ("test" in record["splits"]) == (row["slug"] == best["slug"])
        # only the best trial's model stays once the study ends (--keep-trial-models keeps them all)
        assert (root / f"models/final/{row['slug']}/model.json").is_file() == (row["slug"] == best["slug"])
    record = json.loads((root / f"results/baseline/{best['slug']}_metrics.json").read_text())
    assert best["test_metrics"] == {k: record["splits"]["test"][k] for k in ("accuracy", "macro_f1", "weighted_f1")}
    assert record["split"] == "test" and record["macro_f1"] == best["test_metrics"]["macro_f1"]
    assert record["model"] == best["slug"] and record["tuning"] == {"study": "logreg-baseline",
                                                                     "trial": best["number"]}
    # the val-only trials are no test results: the summary holds the tested best alone
    with open(root / "results/baseline/baseline_summary.csv", newline="", encoding="utf-8") as fh:
        assert [r["model"] for r in csv.DictReader(fh)] == [best["slug"]]
    assert len(_manifests(root, "tune trial")) == 3
    tests = _manifests(root, "tune test")
    assert len(tests) == 1 and tests[0]["inputs"]  # the test split is named among its inputs
    assert all("test_" not in key for m in _manifests(root, "tune trial") for key in m["inputs"])

    # the same command again: nothing to run, nothing re-evaluated
    again = cli(*_args(root, configs))
    assert again.exit_code == 0, again.stderr
    assert "trial logreg-t" not in again.stderr and "evaluating" not in again.stderr and len(_manifests(root, "tune test")) == 1
    assert _rows(root) == rows
    # a larger --trials continues the same study
    more = cli(*_args(root, configs, "--trials", "4"))
    assert more.exit_code == 0, more.stderr
    assert [r["number"] for r in _rows(root)] == ["0", "1", "2", "3"] and _rows(root)[:3] == rows


def test_keep_trial_models_keeps_every_trials_model(tune_project, cli) -> None:
    root, configs = tune_project
    result = cli(*_args(root, configs, "--keep-trial-models"))
    assert result.exit_code == 0, result.stderr
    assert "removed the models" not in result.stderr
    assert all((root / f"models/final/{row['slug']}/model.json").is_file() for row in _rows(root))


@pytest.mark.slow  # three Python processes start (~30 s on 2 busy cores)
def test_parallel_workers_share_one_study(tune_project) -> None:
    root, configs = tune_project
    result = run_cli_process(*_args(root, configs, "--trials", "4", "--parallel", "2"), timeout=300)
    assert result.exit_code == 0, result.stderr
    rows = _rows(root)
    assert [r["number"] for r in rows] == ["0", "1", "2", "3"] and {r["state"] for r in rows} == {"COMPLETE"}
    assert "[worker 0] trial" in result.stderr and "[worker 1] trial" in result.stderr
    assert len(_manifests(root, "tune trial")) == 4 and len(_manifests(root, "tune test")) == 1


def test_timeout_starts_no_new_trial_once_reached(tune_project, cli) -> None:
    root, configs = tune_project
    # a warm process runs a small logreg trial in ~0.1 s: 200 trials cannot all fit in the 1 s
    result = cli(*_args(root, configs, "--trials", "200", "--timeout", "1s"))
    assert result.exit_code == 0, result.stderr
    assert "--timeout reached" in result.stderr
    assert 1 <= len(_rows(root)) < 200 and {r["state"] for r in _rows(root)} == {"COMPLETE"}


def test_apply_hands_the_best_params_to_apply_best(tune_project, cli, monkeypatch) -> None:
    """--apply calls multitype.tuning.apply.apply_best with the contract's arguments (a stand-in module here)."""
    import sys
    import types

    calls = []
    module = types.ModuleType("multitype.tuning.apply")

    def apply_best(config_dir: str, kind: str, model_name: str, params: dict, storage_options=None) -> list[str]:
        calls.append((config_dir, kind, model_name, params, storage_options))
        return [f"models.{model_name}.C: 1.0 -> {params['C']}"]

    module.apply_best = apply_best  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "multitype.tuning.apply", module)
    root, configs = tune_project
    result = cli(*_args(root, configs, "--trials", "2", "--apply"))
    assert result.exit_code == 0, result.stderr
    best = json.loads((root / "results/tuning/logreg-baseline.json").read_text())["best"]
    assert calls == [(str(configs), "baseline", "logreg", best["params"], {})]
    assert f"applied: models.logreg.C: 1.0 -> {best['params']['C']}" in result.stderr


def test_apply_writes_the_best_params_into_models_baseline_yaml(tune_project, cli) -> None:
    import yaml

    root, configs = tune_project
    result = cli(*_args(root, configs, "--trials", "2", "--apply"))
    assert result.exit_code == 0, result.stderr
    best = json.loads((root / "results/tuning/logreg-baseline.json").read_text())["best"]
    written = yaml.safe_load((configs / "models_baseline.yaml").read_text())
    assert written["models"]["logreg"]["C"] == best["params"]["C"]
    assert written["tfidf"]["ngram_range"] == best["params"]["ngram_range"]
    assert "applied: models.logreg.C:" in result.stderr


def test_the_report_compares_the_tested_best_trial_not_the_others(tune_project, cli) -> None:
    root, configs = tune_project
    assert cli(*_args(root, configs)).exit_code == 0
    assert cli("train", "baseline", "--models", "logreg", "--root", root, "--config-dir", configs).exit_code == 0
    best = json.loads((root / "results/tuning/logreg-baseline.json").read_text())["best"]["slug"]
    result = cli("report", "--root", root, "--config-dir", configs)
    assert result.exit_code == 0, result.stderr
    report = (root / "results/report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| `")]
    rows = {line.split("|")[1].strip() for line in table if "| baseline |" in line}
    assert rows == {"`logreg`", f"`{best}`"}
