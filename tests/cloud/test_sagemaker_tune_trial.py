"""A tuning trial: the entry script run as a real process on a fake ``/opt/ml`` tree (``opt_ml.py``), as SageMaker
starts the training jobs of a tuning job.

Its ``hyperparameters.json`` holds what SageMaker sends a trial: the static
hyperparameters of our TrainingJobDefinition (JSON-encoded strings), each
searched one under its ``tune.space`` name as a plain string (a number for
continuous and integer ranges, the JSON text of a choice, see
``multitype.tuning.space.sagemaker_ranges``), and SageMaker's own
``_tuning_objective_metric``. There is no ``test`` channel. Results go to
SeaweedFS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from multitype.cloud.sagemaker import entrypoint
from multitype.tuning.space import TuneConfig, sagemaker_ranges
from tests.cloud import opt_ml
from tests.conftest import write_configs
from tests.transformer.conftest import transformer_yaml, write_processed

TUNING = "multitype-minilm-2612031200"
JOB = f"{TUNING}-002-0a1b2c3d"


def _s3_json(s3_server: Any, bucket: str, key: str) -> Any:
    return json.loads(s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def test_the_ranges_encode_as_the_trial_decodes() -> None:
    """What sagemaker_ranges offers, sent back as a trial's string, decodes to the trainer's value and type."""
    from multitype.cloud.sagemaker.environment import decode

    space = TuneConfig.model_validate({"space": {
        "learning_rate": {"loguniform": [1.0e-5, 3.0e-4]}, "num_epochs": {"int": [1, 3]},
        "batch_size": {"choice": [8, 16]}, "precision": {"choice": ["fp32", "bf16"]},
        "gradient_checkpointing": {"choice": [True, False]}}}).distributions()
    ranges = sagemaker_ranges(space)
    sent = {r["Name"]: r["Values"][0] for r in ranges["CategoricalParameterRanges"]}
    sent.update({r["Name"]: r["MinValue"] for r in ranges["ContinuousParameterRanges"] + ranges[
        "IntegerParameterRanges"]})
    task = entrypoint.read_task({"task": "transformer", "root": "s3://b/p", "tuning-job": TUNING,
                                 **{k: decode(v) for k, v in sent.items()}})
    assert task.overrides == {"learning_rate": 1e-05, "num_epochs": 1, "batch_size": 8, "precision": "fp32",
                              "gradient_checkpointing": True}
    assert task.tuning_job == TUNING
    with pytest.raises(Exception, match="hyperparameter 'tuning-job' .* goes with task transformer"):
        entrypoint.read_task({"task": "baseline", "root": "s3://b/p", "tuning-job": TUNING})


def test_a_trial_trains_on_val_alone_in_its_own_places(s3_server: Any, tmp_path: Path) -> None:
    project = write_processed(tmp_path / "project")
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml(max_steps=2, num_epochs=2))
    bucket = s3_server.make_bucket("trial")
    root = f"s3://{bucket}/proj"
    static = {"task": "transformer", "model-name": "minilm", "resume": "auto", "tuning-job": TUNING, "root": root}
    base = opt_ml.build_tree(tmp_path / "ml", project, configs, static,
                             channels=("train", "val", "labels", "configs"))
    sent = json.loads((base / "input" / "config" / "hyperparameters.json").read_text())
    # the searched values as SageMaker sends them: plain strings, not JSON-encoded by us
    sent.update({"learning_rate": "0.000123", "num_epochs": "1", "batch_size": "4", "precision": '"fp32"',
                 "_tuning_objective_metric": "val_macro_f1"})
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(sent))
    # another trial's checkpoint in the (possibly shared) checkpoint prefix: never resumed from
    other = base / "checkpoints" / f"{TUNING}-001-ffffffff" / "minilm-step1"
    other.mkdir(parents=True)
    (other / "state.json").write_text("{}")

    code, out, err = opt_ml.run(base, JOB)
    assert code == 0, err
    assert f"trial of tuning job {TUNING}: batch_size=4, learning_rate=0.000123, num_epochs=1, precision='fp32'; " \
           "val only (no test data)" in err
    assert "minilm: val accuracy " in err and "test accuracy" not in err
    assert "ignoring hyperparameter" not in err  # _tuning_objective_metric is SageMaker's own
    trial = f"proj/runs/sagemaker-tuning/{TUNING}/{JOB}"
    keys = s3_server.list_keys(bucket, "proj/")
    assert not [k for k in keys if not k.startswith(trial + "/")], keys  # the project's results/ untouched
    metrics = _s3_json(s3_server, bucket, f"{trial}/results/transformer/minilm_metrics.json")
    assert metrics["params"]["learning_rate"] == 0.000123 and metrics["params"]["batch_size"] == 4
    assert metrics["params"]["num_epochs"] == 1 and metrics["params"]["precision"] == "fp32"
    # val alone: the test split was an empty file (val's header), never the test data
    assert set(metrics["splits"]) == {"val"} and metrics["split"] == "val"
    val = (base / "input" / "data" / "val" / "val_4class.csv").read_text()
    assert (base / entrypoint.WORK_DIR / "data" / "processed" / "test_4class.csv").read_text() == \
        val.splitlines(keepends=True)[0]
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith("METRIC test_")]
    # the objective's last value is the best epoch's val macro-F1, the one the record holds
    assert [line for line in lines if line.startswith("METRIC val_macro_f1=")][-1] == \
        f"METRIC val_macro_f1={metrics['splits']['val']['macro_f1']:.6g}"
    result = _s3_json(s3_server, bucket, f"{trial}/runs/sagemaker/{JOB}/result.json")
    assert result["tuning_job"] == TUNING and result["overrides"]["learning_rate"] == 0.000123
    assert result["models"] == {"minilm": {"metrics": "results/transformer/minilm_metrics.json", "model_dir": ""}}
    # its checkpoints in its own folder; the other trial's left alone
    assert (base / "checkpoints" / JOB).is_dir() and (other / "state.json").read_text() == "{}"
    assert not (base / "checkpoints" / "minilm-best").exists()
    assert (base / "model" / "model.safetensors").is_file()
