"""MLflow tracking: runs in a real local store and on a real loopback `mlflow server`; bad URIs are warnings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from multitype.config import default_yaml
from tests.conftest import _free_ports, write_configs
from tests.transformer.conftest import transformer_yaml, write_processed

mlflow = pytest.importorskip("mlflow", reason="the tracking extra is not installed (pip install '.[tracking]')")
from mlflow import MlflowClient  # noqa: E402


def project_yaml(**tracking: object) -> str:
    data = yaml.safe_load(default_yaml("project"))
    data["tracking"] = {"mlflow": True, "uri": None, "experiment": None, **tracking}
    return yaml.safe_dump(data)


@pytest.fixture
def tracked_project(tmp_path: Path) -> tuple[Path, Path]:
    root = write_processed(tmp_path / "root")
    return root, write_configs(tmp_path / "configs", project=project_yaml(experiment="bbc"))


def manifest_of(root: Path, run_id: str) -> dict:
    return json.loads((root / "runs" / run_id / "manifest.json").read_text())


def runs_by_name(client: MlflowClient, experiment: str) -> dict[str, object]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    return {run.data.tags["multitype.model"]: run for run in client.search_runs([exp.experiment_id])}


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def check_baseline_runs(client: MlflowClient, root: Path, stderr: str) -> None:
    [run_id] = [p.name for p in (root / "runs").iterdir() if p.name.endswith(tuple("0123456789abcdef"))
                and "train-baseline" in p.name]
    manifest = manifest_of(root, run_id)
    runs = runs_by_name(client, "bbc")
    assert set(runs) == {"logreg", "linear_svm"}
    for name, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["multitype.run_id"] == run_id and run.data.tags["multitype.kind"] == "baseline"
        assert manifest["tracking"][name]["mlflow_run_id"] == run.info.run_id
        assert f"tracking: MLflow run {run.info.run_id} in experiment 'bbc'" in stderr
        params = run.data.params
        assert params["project.seed"] == "42" and params["baseline.tfidf.ngram_range"] == "[1, 2]"
        assert params["run.tfidf.sublinear_tf"] == "True" and params["project.tracking.mlflow"] == "True"
        record = json.loads((root / f"results/baseline/{name}_metrics.json").read_text())
        assert run.data.metrics["test_accuracy"] == pytest.approx(record["accuracy"])
        assert run.data.metrics["test_macro_f1"] == pytest.approx(record["macro_f1"])
        assert run.data.metrics["val_accuracy"] == pytest.approx(record["splits"]["val"]["accuracy"])
        assert artifacts(client, run.info.run_id) == {"manifest", "model"}
        assert artifacts(client, run.info.run_id, "model") >= {"model/model.skops", "model/model.json"}
        assert artifacts(client, run.info.run_id, "manifest") == {"manifest/manifest.json"}


@pytest.mark.slow  # ~10 s: MLflow creates its SQLite store
def test_baselines_log_to_a_local_store_under_the_root(tracked_project, cli) -> None:
    root, configs = tracked_project
    result = cli("train", "baseline", "--root", root, "--config-dir", configs)
    assert result.exit_code == 0, result.stderr
    store = root / "runs/mlflow/mlflow.db"
    assert store.is_file() and (root / "runs/mlflow/artifacts").is_dir()
    check_baseline_runs(MlflowClient(f"sqlite:///{store}"), root, result.stderr)


@pytest.mark.slow  # starts `mlflow server` (once a session)
def test_baselines_log_to_a_loopback_mlflow_server(mlflow_server, tmp_path: Path, cli) -> None:
    root = write_processed(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", project=project_yaml(uri=mlflow_server.url, experiment="bbc"))
    result = cli("train", "baseline", "--root", root, "--config-dir", configs)
    assert result.exit_code == 0, result.stderr
    assert not (root / "runs/mlflow").exists()
    check_baseline_runs(MlflowClient(mlflow_server.url), root, result.stderr)


@pytest.mark.slow  # trains MiniLM (12 steps) and talks to the loopback server
def test_a_transformer_run_logs_steps_epochs_final_metrics_and_the_model(mlflow_server, tmp_path: Path,
                                                                         cli) -> None:
    root = write_processed(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", project=project_yaml(uri=mlflow_server.url, experiment="tx"),
                            transformer=transformer_yaml(batch_size=2, num_epochs=1))
    result = cli("train", "transformer", "--model-name", "minilm", "--root", root, "--config-dir", configs)
    assert result.exit_code == 0, result.stderr
    record = json.loads((root / "results/transformer/minilm_metrics.json").read_text())
    client = MlflowClient(mlflow_server.url)
    run = runs_by_name(client, "tx")["minilm"]
    assert run.info.status == "FINISHED" and run.data.tags["multitype.run_id"] == record["run_id"]
    assert manifest_of(root, record["run_id"])["tracking"]["mlflow_run_id"] == run.info.run_id
    assert run.data.params["run.batch_size"] == "2" and run.data.params["run.max_length"] == "64"
    assert run.data.params["transformer.defaults.model_name"] == "minilm"
    history = {name: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
               for name in ("train_loss", "learning_rate", "epoch_train_loss", "val_macro_f1", "test_accuracy")}
    assert [step for step, _ in history["train_loss"]] == [10]          # per step (every 10 steps)
    assert [step for step, _ in history["learning_rate"]] == [10]
    assert history["epoch_train_loss"] == [(12, pytest.approx(record["history"][0]["train_loss"]))]
    assert history["val_macro_f1"][0] == (12, pytest.approx(record["history"][0]["val_macro_f1"]))
    assert history["test_accuracy"] == [(12, pytest.approx(record["accuracy"]))]
    assert artifacts(client, run.info.run_id, "model") >= {"model/model.safetensors", "model/config.json",
                                                           "model/tokenizer.json"}
    assert artifacts(client, run.info.run_id, "manifest") == {"manifest/manifest.json"}


@pytest.mark.slow  # SeaweedFS and a new SQLite store
def test_an_s3_root_tracks_in_the_working_folder_with_a_note(s3_server, tmp_path: Path, cli,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from multitype.storage import Storage

    local = write_processed(tmp_path / "local")
    root = f"s3://{s3_server.make_bucket('track')}/proj"
    storage = Storage(root, endpoint_url=s3_server.endpoint_url)
    for path in sorted((local / "data/processed").iterdir()):
        storage.put_file(path, f"data/processed/{path.name}")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    configs = write_configs(tmp_path / "configs", project=project_yaml(experiment="bbc"))
    result = cli("train", "baseline", "--root", root, "--config-dir", configs)
    assert result.exit_code == 0, result.stderr
    assert (f"note: the root is on S3 and an MLflow store cannot be: runs are tracked in {work}/runs/mlflow on this "
            f"machine (set tracking.uri to an MLflow server to keep them elsewhere)") in result.stderr
    runs = runs_by_name(MlflowClient(f"sqlite:///{work}/runs/mlflow/mlflow.db"), "bbc")
    assert set(runs) == {"logreg", "linear_svm"} and all(r.info.status == "FINISHED" for r in runs.values())
    assert not [k for k in storage.walk_files("runs") if "mlflow" in k]


@pytest.mark.slow  # the pipeline (prepare, baselines, report) and a new SQLite store
def test_the_pipeline_attaches_the_report_and_its_figures_to_each_tracked_run(tmp_path: Path, cli) -> None:
    from tests.conftest import make_bbc_subset

    data = yaml.safe_load(default_yaml("data"))
    data["input"] = str(make_bbc_subset(tmp_path / "bbc", per_class=20, seed=5))
    configs = write_configs(tmp_path / "configs", project=project_yaml(experiment="bbc"), data=yaml.safe_dump(data))
    root = tmp_path / "root"
    result = cli("run", "--no-transformer", "--root", root, "--config-dir", configs)
    assert result.exit_code == 0, result.stderr
    figures = {f"figures/{p.name}" for p in (root / "figures/results").glob("*.png")}
    assert figures
    client = MlflowClient(f"sqlite:///{root}/runs/mlflow/mlflow.db")
    runs = runs_by_name(client, "bbc")
    assert set(runs) == {"logreg", "linear_svm"}
    for run in runs.values():
        assert artifacts(client, run.info.run_id) == {"manifest", "model", "report", "figures"}
        assert artifacts(client, run.info.run_id, "report") == {"report/report.md", "report/report.html"}
        assert artifacts(client, run.info.run_id, "figures") == figures


# -- bad input: a warning line, training completes -------------------------------------------------------------
def _warning(stderr: str) -> str:
    [line] = [line for line in stderr.splitlines() if line.startswith("warning:")]
    return line


def test_a_tracking_server_that_does_not_answer_is_a_warning(tmp_path: Path, cli) -> None:
    root = write_processed(tmp_path / "root")
    dead = f"http://127.0.0.1:{_free_ports(1)[0]}"
    configs = write_configs(tmp_path / "configs", project=project_yaml(uri=dead))
    result = cli("train", "baseline", "--root", root, "--config-dir", configs)
    assert result.exit_code == 0, result.stderr
    assert _warning(result.stderr).startswith(f"warning: MLflow tracking server {dead} does not answer (")
    assert _warning(result.stderr).endswith("; training without tracking")
    assert (root / "results/baseline/logreg_metrics.json").is_file()
    [run] = (root / "runs").iterdir()
    assert "tracking" not in manifest_of(root, run.name)


@pytest.mark.parametrize(("uri", "expected"), [
    ("localhost:5000", "warning: tracking.uri 'localhost:5000' is not an MLflow tracking URI: use null (a local "
                       "store under the root), http(s)://host:port or a SageMaker MLflow tracking server ARN; "
                       "training without tracking"),
    ("arn:aws:sagemaker:us-east-1:12345:mlflow-tracking-server/x",
     "warning: tracking.uri 'arn:aws:sagemaker:us-east-1:12345:mlflow-tracking-server/x' is not a SageMaker MLflow "
     "tracking server ARN (arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>); training without "
     "tracking"),
])
def test_a_malformed_tracking_uri_is_a_warning(tmp_path: Path, cli, uri: str, expected: str) -> None:
    root = write_processed(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", project=project_yaml(uri=uri))
    result = cli("train", "baseline", "--root", root, "--config-dir", configs)
    assert result.exit_code == 0, result.stderr
    assert _warning(result.stderr) == expected
    assert (root / "results/baseline/linear_svm_metrics.json").is_file()


def test_tracking_without_mlflow_installed_names_the_extra(tracked_project, cli,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root, configs = tracked_project
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import mlflow` (and mlflow.entities) raises ImportError
    result = cli("train", "baseline", "--root", root, "--config-dir", configs)
    assert result.exit_code == 0, result.stderr
    assert _warning(result.stderr) == ("warning: tracking.mlflow is on but MLflow is not installed "
                                       "(pip install 'multitype[tracking]'); training without tracking")


def test_a_server_that_goes_away_mid_run_is_one_warning_and_tracking_stops() -> None:
    from multitype.experiments.tracking import Tracker

    said: list[str] = []
    dead = f"http://127.0.0.1:{_free_ports(1)[0]}"
    tracker = Tracker(MlflowClient(dead), "0" * 32, said.append, where=dead)
    tracker.log_metrics({"train_loss": 1.0}, step=10)
    tracker.log_metrics({"train_loss": 0.5}, step=20)
    tracker.end()
    assert len(said) == 1 and said[0].startswith(f"MLflow tracking stopped: logging metrics failed at {dead} (")
    assert not tracker.active


def test_tracking_off_by_default_writes_no_store(tmp_path: Path, cli) -> None:
    root = write_processed(tmp_path / "root")
    result = cli("train", "baseline", "--root", root, "--config-dir", write_configs(tmp_path / "configs"))
    assert result.exit_code == 0, result.stderr
    assert not (root / "runs/mlflow").exists() and "tracking" not in result.stderr


@pytest.mark.slow  # a new SQLite store (~10 s)
def test_a_resumed_run_continues_its_mlflow_run_and_a_lost_one_starts_anew(tracked_project) -> None:
    """What the transformer loop does with the MLflow run id its checkpoint carries (TrainState.tracking_run_id)."""
    from multitype.experiments import tracking
    from multitype.project import open_project

    root, configs = tracked_project
    said: list[str] = []
    first = open_project(str(root), str(configs), "train transformer")
    tracker = tracking.start(first, "transformer", "minilm", said.append, said.append, params={"batch_size": 8})
    run_id = tracker.run_id
    tracker.log_metrics({"train_loss": 1.0}, step=10)
    tracker.end("KILLED")  # SIGTERM: the checkpoint holds run_id

    second = open_project(str(root), str(configs), "train transformer")
    again = tracking.start(second, "transformer", "minilm", said.append, said.append, resume_run_id=run_id)
    assert again.run_id == run_id
    again.log_metrics({"train_loss": 0.5}, step=20)
    again.end()
    client = MlflowClient(f"sqlite:///{root}/runs/mlflow/mlflow.db")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["multitype.run_id"] == first.run_id
    assert run.data.tags["multitype.run_id.resumed"] == second.run_id
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train_loss")] == [(10, 1.0), (20, 0.5)]

    lost = tracking.start(second, "transformer", "minilm", said.append, said.append, resume_run_id="f" * 32)
    assert lost.active and lost.run_id != run_id
    lost.end()
    assert not [line for line in said if not line.startswith("tracking: MLflow run ")]
