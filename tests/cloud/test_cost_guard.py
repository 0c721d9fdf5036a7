"""The budget guard of ``multitype sagemaker launch`` (moto for SageMaker, SeaweedFS for S3).

The launch prints its estimate and refuses, before anything is uploaded, when
the estimate is above ``--budget`` (or ``aws.budget_usd`` in project.yaml)
unless ``--force``. The prepared project's minilm job on ml.g5.xlarge is
estimated at the catalog's 4 start-up minutes plus under a second of
training: ~$0.02 at the runbook's $0.30/h spot price.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from multitype.cloud import aws, cost, prices
from multitype.config import AwsConfig
from multitype.project import open_project
from tests.cloud.launch_helpers import make_project, project_yaml
from tests.conftest import write_configs


class Env:
    def __init__(self, s3_server: Any, tmp_path: Path) -> None:
        self.s3 = s3_server
        self.bucket = s3_server.make_bucket("guard")
        self.remote = f"s3://{self.bucket}/proj"
        self.root, self.configs = make_project(tmp_path, self.remote)

    def args(self, *extra: str) -> list[str]:
        return ["sagemaker", "launch", "--model-name", "minilm", *extra, "--root", str(self.root),
                "--config-dir", str(self.configs)]

    def set_budget(self, usd: float) -> None:
        data = yaml.safe_load(project_yaml(self.remote))
        data["aws"]["budget_usd"] = usd
        write_configs(self.configs, project=yaml.safe_dump(data, sort_keys=False))

    def jobs(self) -> list[str]:
        client = aws.client("sagemaker", AwsConfig())
        return [j["TrainingJobName"] for j in client.list_training_jobs()["TrainingJobSummaries"]]

    def keys(self) -> list[str]:
        return self.s3.list_keys(self.bucket)

    def estimate(self) -> cost.Estimate:
        project = open_project(str(self.root), str(self.configs), "test")
        return cost.launch_estimate(project, "transformer", ["minilm"], "ml.g5.xlarge", spot=True)


@pytest.fixture
def env(s3_server, aws_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the packaged catalog only
    monkeypatch.delenv("MULTITYPE_PRICES", raising=False)
    return Env(s3_server, tmp_path)


def _stderr_lines(text: str) -> list[str]:
    return [line for line in text.strip().splitlines() if line.strip()]


def test_the_estimate_is_sensible() -> None:
    # not "0 s, $0.0000": the start-up minutes dominate a 48-article job
    assert prices.load_catalog().startup_minutes == {"sagemaker": 4.0, "ec2": 6.0}


def test_over_budget_is_refused_before_any_upload(env: Env, cli) -> None:
    est = env.estimate()
    assert 0.015 < est.usd < 0.025 and est.startup_hours == pytest.approx(4 / 60)
    result = cli(*env.args("--budget", "0.01"))
    assert result.exit_code == 2
    lines = _stderr_lines(result.stderr)
    assert len(lines) == 2, lines  # the estimate, unwrapped, then the error
    assert lines[0].startswith(f"estimate: {cost.duration(est.hours)} incl. 4 min start-up, "
                                           f"{cost.money(est.usd)} (ml.g5.xlarge, spot")
    assert re.fullmatch(r"error: the SageMaker launch \(1 job\(s\) on ml\.g5\.xlarge\) is estimated at \$0\.02, "
                        r"over the budget of \$0\.01 \(--budget or aws\.budget_usd in project\.yaml\), so it was not "
                        r"started; pass --force to start it anyway, .*", lines[-1]), lines[-1]
    assert env.jobs() == [] and env.keys() == []


def test_budget_from_project_yaml_and_the_flag_over_it(env: Env, cli) -> None:
    env.set_budget(0.01)
    result = cli(*env.args())
    assert result.exit_code == 2
    assert _stderr_lines(result.stderr)[-1].startswith("error: the SageMaker launch (1 job(s) on ml.g5.xlarge) is "
                                                       "estimated at $0.02, over the budget of $0.01")
    assert env.jobs() == [] and env.keys() == []
    # a dry run checks the same budget (and prints no estimate line: stdout is the request)
    dry = cli(*env.args("--dry-run"))
    assert dry.exit_code == 2 and env.keys() == []


def test_force_and_a_larger_budget_start_the_job(env: Env, cli) -> None:
    env.set_budget(0.01)
    result = cli(*env.args("--force"))
    assert result.exit_code == 0, result.stderr
    [name] = env.jobs()
    assert result.stdout.strip() == name
    assert "estimate: " in result.stderr and "incl. 4 min start-up" in result.stderr
    assert "proj/configs/project.yaml" in env.keys()
    import time

    time.sleep(1.0)  # job names carry the second
    result = cli(*env.args("--budget", "1"))  # the flag wins over aws.budget_usd
    assert result.exit_code == 0, result.stderr
    assert len(env.jobs()) == 2


@pytest.mark.parametrize("where", ["flag", "project.yaml"])
def test_budget_of_zero_is_refused(env: Env, cli, where: str) -> None:
    if where == "flag":
        result = cli(*env.args("--budget", "0"))
        assert result.stderr.strip() == "error: --budget must be above 0 USD, got 0"
    else:
        env.set_budget(0)
        result = cli(*env.args())
        [line] = _stderr_lines(result.stderr)
        assert line.startswith("error: ") and "budget_usd" in line and "greater than 0" in line, line
    assert result.exit_code == 2
    assert env.jobs() == [] and env.keys() == []


def test_an_unpriced_instance_type_with_a_budget_needs_force(env: Env, cli) -> None:
    # ml.g5.4xlarge is a SageMaker training type that the price catalog lacks: the budget cannot be checked
    assert prices.load_catalog().instance("ml.g5.4xlarge") is None
    result = cli(*env.args("--instance-type", "ml.g5.4xlarge", "--budget", "5"))
    assert result.exit_code == 2
    [line] = _stderr_lines(result.stderr)
    assert line.startswith("error: no estimate: ml.g5.4xlarge has no price in the catalog (")
    assert "so the budget of $5.00 cannot be checked; pass --force" in line
    assert env.jobs() == [] and env.keys() == []
