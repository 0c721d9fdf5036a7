"""``multitype cost budget create`` against moto's AWS Budgets.

moto keeps the budget and its notifications (``DescribeBudgets``,
``DescribeNotificationsForBudget``) but cannot list subscribers, so the
``CreateBudget`` request is also captured at our client layer and checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from multitype.cloud import aws
from multitype.config import AwsConfig
from tests.cloud.launch_helpers import project_yaml
from tests.conftest import write_configs

ACCOUNT = "123456789012"  # moto's account
NAME = "multitype-bbc-news-monthly"


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        self.root.mkdir()
        self.configs = write_configs(tmp_path / "configs", project=project_yaml(None))
        self.sent: list[dict[str, Any]] = []

    def args(self, *extra: str) -> list[str]:
        return ["cost", "budget", "create", *extra, "--root", str(self.root), "--config-dir", str(self.configs)]

    def client(self) -> Any:
        return aws.client("budgets", AwsConfig(), max_attempts=1)

    def budgets(self) -> list[dict[str, Any]]:
        return self.client().describe_budgets(AccountId=ACCOUNT).get("Budgets", [])

    def notifications(self, name: str = NAME) -> list[dict[str, Any]]:
        return self.client().describe_notifications_for_budget(AccountId=ACCOUNT, BudgetName=name)["Notifications"]


@pytest.fixture
def env(aws_env, tmp_path: Path):
    e = Env(tmp_path)

    def capture(params: dict[str, Any], **_: Any) -> None:
        e.sent.append(json.loads(json.dumps(params)))

    e.client().meta.events.register("provide-client-params.budgets.CreateBudget", capture, unique_id="t-budget")
    yield e
    e.client().meta.events.unregister("provide-client-params.budgets.CreateBudget", unique_id="t-budget")


def test_monthly_cost_budget_with_alerts_at_80_and_100_percent(env: Env, cli) -> None:
    result = cli(*env.args("--amount", "25", "--email", "ml-team@example.com", "--email", "lead@example.com"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"created budget {NAME} in account {ACCOUNT}: $25.00 per month",
        "alerts at 80% and 100% of actual spend to ml-team@example.com, lead@example.com"]
    [budget] = env.budgets()
    assert budget["BudgetName"] == NAME and budget["BudgetType"] == "COST" and budget["TimeUnit"] == "MONTHLY"
    assert budget["BudgetLimit"] == {"Amount": "25.00", "Unit": "USD"}
    notes = sorted(env.notifications(), key=lambda n: n["Threshold"])
    assert notes == [{"NotificationType": "ACTUAL", "ComparisonOperator": "GREATER_THAN", "Threshold": t,
                      "ThresholdType": "PERCENTAGE"} for t in (80.0, 100.0)]
    [sent] = env.sent
    assert sent["AccountId"] == ACCOUNT
    assert [n["Subscribers"] for n in sent["NotificationsWithSubscribers"]] == [
        [{"SubscriptionType": "EMAIL", "Address": "ml-team@example.com"},
         {"SubscriptionType": "EMAIL", "Address": "lead@example.com"}]] * 2


def test_existing_budget_is_a_one_line_error(env: Env, cli) -> None:
    assert cli(*env.args("--amount", "25", "--email", "a@example.com")).exit_code == 0
    again = cli(*env.args("--amount", "40", "--email", "a@example.com"))
    assert again.exit_code == 2
    assert again.stderr.strip() == (f"error: a budget named '{NAME}' exists already in account {ACCOUNT}; pass "
                                    "another --name, or change it in the Billing console")
    [budget] = env.budgets()
    assert budget["BudgetLimit"]["Amount"] == "25.00"  # the first one, unchanged
    other = cli(*env.args("--amount", "40", "--name", "nlp-gpu", "--sns-topic",
                          f"arn:aws:sns:us-east-1:{ACCOUNT}:budget-alerts"))
    assert other.exit_code == 0, other.stderr
    assert {b["BudgetName"] for b in env.budgets()} == {NAME, "nlp-gpu"}
    assert env.sent[-1]["NotificationsWithSubscribers"][0]["Subscribers"] == [
        {"SubscriptionType": "SNS", "Address": f"arn:aws:sns:us-east-1:{ACCOUNT}:budget-alerts"}]


def test_without_a_subscriber_the_budget_has_no_alerts_and_says_so(env: Env, cli) -> None:
    result = cli(*env.args("--amount", "10"))
    assert result.exit_code == 0, result.stderr
    [warning] = result.stderr.strip().splitlines()
    assert warning.startswith("warning: no --email or --sns-topic, so the budget has no alerts")
    assert len(env.budgets()) == 1 and env.notifications() == []
    assert "NotificationsWithSubscribers" not in env.sent[0]


@pytest.mark.parametrize("extra, message", [
    (("--amount", "0"), "error: --amount must be above 0 USD, got 0"),
    (("--amount", "-5"), "error: --amount must be above 0 USD, got -5"),
    (("--amount", "0.001"), "error: --amount must be above 0 USD, got 0.001"),
    (("--amount", "10", "--email", "not-an-address"), "error: --email 'not-an-address' is not an e-mail address"),
])
def test_bad_input_creates_nothing(env: Env, cli, extra, message) -> None:
    result = cli(*env.args(*extra))
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert env.sent == [] and env.budgets() == []


def test_no_credentials_and_region_typo_create_nothing(env: Env, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    write_configs(env.configs, project=project_yaml(None, region="eu-wset-1"))
    result = cli(*env.args("--amount", "10"))
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: unknown AWS region 'eu-wset-1' (aws.region in project.yaml); did you "
                                    "mean eu-west-1")
    write_configs(env.configs, project=project_yaml(None))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(env.root / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(env.root / "none"))
    result = cli(*env.args("--amount", "10"))
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: no AWS credentials found; tried: env, ")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert env.sent == [] and env.budgets() == []
