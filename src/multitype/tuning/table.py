"""``results/tuning/<study>.csv`` and ``.json`` from an Optuna study (the tuning results contract).

Written after every trial, so a killed study still leaves a valid table of the trials so far.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from multitype import layout
from multitype.storage import Storage
from multitype.tuning.space import TuneConfig

SCHEMA_VERSION = 1
BASE_COLUMNS = ["number", "slug", "state", "value", "seconds"]


def trial_slug(model_name: str, number: int) -> str:
    """``<model>-t<k>``: the trial's run slug (artifact name)."""
    return f"{layout.model_slug(model_name)}-t{number}"


def _state(trial: Any) -> str:
    return trial.state.name if trial.state.name in ("COMPLETE", "PRUNED", "FAIL", "RUNNING") else "FAIL"


def _value(trial: Any) -> float | None:
    state = _state(trial)
    if state == "COMPLETE":
        return trial.value
    if state == "PRUNED" and trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list) else value


def rows(study: Any, tune: TuneConfig, model_name: str) -> list[dict[str, Any]]:
    """One row per trial, by number; params as the user wrote them (a list choice as its JSON text)."""
    names = list(tune.space_spec())
    out = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        params = trial.user_attrs.get("params", trial.params)
        row = {"number": trial.number, "slug": trial.user_attrs.get("slug", trial_slug(model_name, trial.number)),
               "state": _state(trial), "value": _value(trial), "seconds": trial.user_attrs.get("seconds")}
        row.update({f"params_{name}": params.get(name) for name in names})
        out.append(row)
    return out


def write_csv(storage: Storage, study_name: str, table: list[dict[str, Any]], tune: TuneConfig) -> str:
    columns = BASE_COLUMNS + [f"params_{name}" for name in tune.space_spec()]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({key: _cell(row.get(key)) for key in columns})
    key = layout.tuning_csv(study_name)
    storage.write_text(key, buf.getvalue())
    return key


def summary(study: Any, tune: TuneConfig, kind: str, model_name: str, table: list[dict[str, Any]],
            test_metrics: dict[str, Any] | None) -> dict[str, Any]:
    """The ``.json`` summary; ``best`` among the COMPLETE trials (None before the first)."""
    counts = {"total": len(table), "complete": 0, "pruned": 0, "failed": 0, "running": 0}
    for row in table:
        counts[{"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}[row["state"]]] += 1
    best = best_trial(study)
    return {
        "schema_version": SCHEMA_VERSION, "study": study.study_name, "kind": kind, "backend": "local",
        "model_name": model_name, "metric": tune.metric, "direction": tune.direction,
        "space": tune.space_spec(), "fingerprint": tune.fingerprint(), "trials": counts,
        "best": None if best is None else {
            "number": best.number, "slug": best.user_attrs.get("slug", trial_slug(model_name, best.number)),
            "value": best.value, "params": best.user_attrs.get("params", best.params),
            "test_metrics": test_metrics},
        "tuning_job": None,
        "intermediate": {str(t.number): [[step, value] for step, value in sorted(t.intermediate_values.items())]
                         for t in study.get_trials(deepcopy=False) if t.intermediate_values},
    }


def best_trial(study: Any) -> Any:
    """The best COMPLETE trial, or None (Optuna's ``best_trial`` raises before the first)."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
    if not complete:
        return None
    pick = max if study.direction.name == "MAXIMIZE" else min
    return pick(sorted(complete, key=lambda t: t.number), key=lambda t: t.value)  # ties: the earliest trial


def write_results(storage: Storage, study: Any, tune: TuneConfig, kind: str, model_name: str,
                  test_metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write both files; return the summary."""
    table = rows(study, tune, model_name)
    write_csv(storage, study.study_name, table, tune)
    doc = summary(study, tune, kind, model_name, table, test_metrics)
    storage.write_json(layout.tuning_summary(study.study_name), doc)
    return doc
