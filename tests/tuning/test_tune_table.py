"""The results table of a study in every trial state, and the pruner choices (no training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest

from multitype.storage import Storage
from multitype.tuning import table
from multitype.tuning.space import TuneConfig
from multitype.tuning.study import make_pruner

SPACE = TuneConfig.model_validate({"direction": "minimize", "space": {
    "ngram_range": {"choice": [[1, 1], [1, 2]]}, "C": {"loguniform": [0.01, 100.0]}}})


def test_every_state_gets_its_row_and_count(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="s", direction="minimize")
    dists = {"C": optuna.distributions.FloatDistribution(0.01, 100.0, log=True),
             "ngram_range": optuna.distributions.CategoricalDistribution(["[1, 1]", "[1, 2]"])}

    def add(state: optuna.trial.TrialState, value: float | None, steps: dict[int, float], c: float) -> None:
        study.add_trial(optuna.trial.create_trial(
            state=state, value=value, params={"C": c, "ngram_range": "[1, 2]"}, distributions=dists,
            intermediate_values=steps, user_attrs={"params": {"C": c, "ngram_range": [1, 2]}, "seconds": 1.5}))

    add(optuna.trial.TrialState.COMPLETE, 0.30, {1: 0.5, 2: 0.3}, 1.0)
    add(optuna.trial.TrialState.PRUNED, None, {1: 0.9}, 2.0)
    add(optuna.trial.TrialState.FAIL, None, {}, 3.0)
    add(optuna.trial.TrialState.COMPLETE, 0.30, {}, 4.0)  # ties with trial 0: the earlier one is best
    study.ask()  # RUNNING, no params yet
    doc = table.write_results(Storage(str(tmp_path)), study, SPACE, "baseline", "logreg",
                              test_metrics={"accuracy": 0.9})
    with open(tmp_path / "results/tuning/s.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["number", "slug", "state", "value", "seconds", "params_C", "params_ngram_range"]
    assert rows[1:] == [["0", "logreg-t0", "COMPLETE", "0.3", "1.5", "1.0", "[1, 2]"],
                        ["1", "logreg-t1", "PRUNED", "0.9", "1.5", "2.0", "[1, 2]"],
                        ["2", "logreg-t2", "FAIL", "", "1.5", "3.0", "[1, 2]"],
                        ["3", "logreg-t3", "COMPLETE", "0.3", "1.5", "4.0", "[1, 2]"],
                        ["4", "logreg-t4", "RUNNING", "", "", "", ""]]
    assert doc["trials"] == {"total": 5, "complete": 2, "pruned": 1, "failed": 1, "running": 1}
    assert doc["best"] == {"number": 0, "slug": "logreg-t0", "value": 0.3, "params": {"C": 1.0, "ngram_range": [1, 2]},
                           "test_metrics": {"accuracy": 0.9}}
    assert doc["intermediate"] == {"0": [[1, 0.5], [2, 0.3]], "1": [[1, 0.9]]}
    assert doc["direction"] == "minimize" and doc["space"] == SPACE.space_spec()
    assert json.loads((tmp_path / "results/tuning/s.json").read_text()) == doc


def test_no_complete_trial_no_best(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="empty")
    assert table.write_results(Storage(str(tmp_path)), study, SPACE, "baseline", "logreg")["best"] is None


@pytest.mark.parametrize("name, kind", [("median", optuna.pruners.MedianPruner),
                                        ("hyperband", optuna.pruners.HyperbandPruner),
                                        ("none", optuna.pruners.NopPruner)])
def test_pruners(name: str, kind: type) -> None:
    assert isinstance(make_pruner(name), kind)
