"""`multitype tune transformer` with the real MiniLM on a tiny BBC project: kill and resume, pruning, test once."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from multitype.project import open_project
from multitype.tuning.local import Request, tune
from tests.tuning.conftest import SUBPROCESS_ENV


def _rows(root: Path, study: str = "minilm") -> list[dict[str, str]]:
    path = root / "results" / "tuning" / f"{study}.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _manifests(root: Path, command: str) -> list[dict]:
    return [m for m in (json.loads(p.read_text()) for p in sorted((root / "runs").glob("*/manifest.json")))
            if m["command"].startswith(command)]


def _tune(root: Path, configs: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "multitype", "tune", "transformer", "--model-name", "minilm",
                             "--root", str(root), "--config-dir", str(configs), *extra],
                            env={**os.environ, **SUBPROCESS_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.slow  # three trials of the real MiniLM in two processes (~1 min on 2 busy cores)
def test_a_killed_study_resumes_without_running_a_trial_twice(tune_project) -> None:
    root, configs = tune_project
    first = _tune(root, configs)
    # SIGKILL once trial 0 is complete and trial 1 has saved a checkpoint: no handler runs, trial 1 stays RUNNING
    step = root / "models/checkpoints/minilm-t1-step2/_COMPLETE"
    deadline = time.monotonic() + 240
    while not (step.exists() and any(r["state"] == "COMPLETE" for r in _rows(root))):
        assert first.poll() is None, first.communicate()[1]
        assert time.monotonic() < deadline, "trial 1 never saved a checkpoint"
        time.sleep(0.05)
    first.kill()
    first.communicate()
    killed_rows = _rows(root)
    assert [(r["number"], r["state"]) for r in killed_rows] == [("0", "COMPLETE"), ("1", "RUNNING")]
    trial0 = (root / "results/transformer/minilm-t0_metrics.json").read_text()

    second = _tune(root, configs)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "continuing trial minilm-t1" in err and "models/checkpoints/minilm-t1-" in err and "resuming from" in err
    assert "trial minilm-t0 (" not in err  # trial 0 is not run again
    assert "trial minilm-t1 (2 of 3)" in err and "trial minilm-t2 (3 of 3)" in err and "minilm-t3" not in err
    rows = _rows(root)
    assert [(r["number"], r["slug"], r["state"]) for r in rows] == [
        ("0", "minilm-t0", "COMPLETE"), ("1", "minilm-t1", "COMPLETE"), ("2", "minilm-t2", "COMPLETE")]
    assert rows[0] == killed_rows[0]  # unchanged
    assert rows[1]["params_learning_rate"] == killed_rows[1]["params_learning_rate"]  # continued, not re-drawn
    best = json.loads((root / "results/tuning/minilm.json").read_text())["best"]

    # trials never read test; the best trial's model is evaluated on it once
    for row in rows:
        record = json.loads((root / f"results/transformer/{row['slug']}_metrics.json").read_text())
        assert record["pruned"] is False and record["slug"] == row["slug"]
        assert ("test" in record["splits"]) == (row["slug"] == best["slug"])
        assert abs(record["splits"]["val"]["macro_f1"] - float(row["value"])) < 1e-12
    if best["slug"] != "minilm-t0":
        assert (root / "results/transformer/minilm-t0_metrics.json").read_text() == trial0
    assert len(_manifests(root, "tune test")) == 1 and best["test_metrics"]["macro_f1"] > 0
    # one run (manifest) per trial: the killed process of trial 1 never finished its run
    slugs = [m["command"].removeprefix("tune trial ") for m in _manifests(root, "tune trial")]
    assert sorted(slugs) == ["minilm-t0", "minilm-t1", "minilm-t2"]


class PruneSecondTrial(optuna.pruners.BasePruner):
    """Prunes trial 1 at its first report (a median pruner would need 5 finished trials first)."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number == 1


@pytest.mark.slow  # two trials of the real MiniLM (~35 s on 2 busy cores)
def test_a_pruned_trial_stops_early_and_is_recorded_as_pruned(tune_project) -> None:
    root, configs = tune_project
    project = open_project(str(root), str(configs), "tune transformer")
    lines: list[str] = []
    summary = tune(project, Request("transformer", "minilm", "pruning", trials=2, keep_trial_models=True), lines.append,
                   pruner=PruneSecondTrial())
    assert summary is not None and summary["trials"] == {"total": 2, "complete": 1, "pruned": 1, "failed": 0,
                                                         "running": 0}
    rows = _rows(root, "pruning")
    assert [(r["slug"], r["state"]) for r in rows] == [("minilm-t0", "COMPLETE"), ("minilm-t1", "PRUNED")]
    assert summary["intermediate"]["1"] == [[1, pytest.approx(float(rows[1]["value"]))]]  # one epoch of two
    assert len(summary["intermediate"]["0"]) == 2
    record = json.loads((root / "results/transformer/minilm-t1_metrics.json").read_text())
    assert record["pruned"] is True and record["epochs_trained"] == 1 and "test" not in record["splits"]
    manifest = next(m for m in _manifests(root, "tune trial") if m["command"].endswith("minilm-t1"))
    assert manifest["pruned"] is True
    assert (root / "models/final/minilm-t1/model.safetensors").is_file()  # the run ended cleanly
    assert any("trial minilm-t1 PRUNED" in line for line in lines)
    assert summary["best"]["slug"] == "minilm-t0" and summary["best"]["test_metrics"] is not None


@pytest.mark.slow  # one trial of the real MiniLM over two processes (~40 s on 2 busy cores)
def test_sigterm_checkpoints_the_trial_and_exits_143(tune_project) -> None:
    root, configs = tune_project
    proc = _tune(root, configs, "--trials", "1")
    step = root / "models/checkpoints/minilm-t0-step2/_COMPLETE"
    deadline = time.monotonic() + 240
    while not step.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "trial 0 never saved a checkpoint"
        time.sleep(0.05)
    proc.terminate()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "checkpoint saved" in err
    row = _rows(root)[0]
    assert (row["slug"], row["state"]) == ("minilm-t0", "RUNNING") and float(row["seconds"]) > 0
    assert not (root / "results/transformer/minilm-t0_metrics.json").exists()

    again = _tune(root, configs, "--trials", "1")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "continuing trial minilm-t0" in err and "resuming from" in err
    rows = _rows(root)
    assert [(r["slug"], r["state"]) for r in rows] == [("minilm-t0", "COMPLETE")]
    assert float(rows[0]["seconds"]) > float(row["seconds"])  # both processes' time
