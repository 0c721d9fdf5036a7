"""``multitype cost budget create``: an AWS Budgets monthly cost budget with alerts (the runbook's "set budget alerts").

One ``CreateBudget`` call: a ``COST`` budget, ``MONTHLY``, limit in USD, with
two notifications on ``ACTUAL`` spend, ``GREATER_THAN`` 80% and 100% of the
limit (percentage thresholds), each sent to the given e-mail addresses and/or
SNS topic. The account id comes from STS. AWS requires a subscriber for every
notification, so without one the budget is created without alerts and the
caller says so.

Why ACTUAL and not FORECASTED: AWS needs about five weeks of usage history
before it forecasts, so on a new account a forecasted alert stays silent; and a
training burst swings the month's forecast, so it would cry wolf after one job.
Actual spend at 80% leaves room to stop instances before the limit.

A budget of that name existing already is an error that names it (AWS has no
"create or keep"; changing a budget is the Billing console's job), so a rerun
never silently keeps a different amount.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from multitype.cloud import aws as cloud_aws
from multitype.cloud.price_refresh import location_name
from multitype.config import AwsConfig
from multitype.errors import AwsError, UserError

THRESHOLDS = (80.0, 100.0)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class BudgetResult:
    """The budget that was created."""

    account: str
    name: str
    amount: float
    subscribers: list[dict[str, str]] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)


def budget_request(account: str, name: str, amount: float, emails: list[str], sns_topic: str | None) -> dict[str, Any]:
    """The ``CreateBudget`` parameters (see the module docstring)."""
    subscribers = [{"SubscriptionType": "EMAIL", "Address": a} for a in emails]
    if sns_topic:
        subscribers.append({"SubscriptionType": "SNS", "Address": sns_topic})
    request: dict[str, Any] = {
        "AccountId": account,
        "Budget": {"BudgetName": name, "BudgetLimit": {"Amount": f"{amount:.2f}", "Unit": "USD"},
                   "TimeUnit": "MONTHLY", "BudgetType": "COST"},
    }
    if subscribers:
        request["NotificationsWithSubscribers"] = [
            {"Notification": {"NotificationType": "ACTUAL", "ComparisonOperator": "GREATER_THAN",
                              "Threshold": t, "ThresholdType": "PERCENTAGE"},
             "Subscribers": subscribers} for t in THRESHOLDS]
    return request


def create_budget(aws: AwsConfig, amount: float, *, name: str, emails: list[str] | None = None,
                  sns_topic: str | None = None) -> BudgetResult:
    """Create the monthly cost budget ``name`` of ``amount`` USD with 80% / 100% alerts.

    Raises
    ------
    UserError
        An amount of 0 or below, or an address that is not an e-mail address.
    AwsError
        A region botocore does not know (names the nearest).
    AwsError
        No credentials, access denied, or a budget of that name exists already.
    """
    if round(amount, 2) <= 0:  # AWS takes cents: 0.001 would be a budget of $0.00
        raise UserError(f"--amount must be above 0 USD, got {amount:g}")
    emails = list(emails or [])
    bad = [a for a in emails if not _EMAIL.match(a)]
    if bad:
        raise UserError(f"--email {bad[0]!r} is not an e-mail address")
    location_name(aws.region)  # a region typo is named here, not as an STS endpoint that does not answer
    cloud_aws.check_credentials(aws)
    with cloud_aws.aws_errors("read the account id (sts:GetCallerIdentity)", aws):
        account = str(cloud_aws.client("sts", aws).get_caller_identity()["Account"])
    request = budget_request(account, name, amount, emails, sns_topic)
    client = cloud_aws.client("budgets", aws, max_attempts=1)
    try:
        with cloud_aws.aws_errors(f"create the budget {name!r}", aws):
            client.create_budget(**request)
    except Exception as exc:
        if cloud_aws.error_code(exc) == "DuplicateRecordException":
            raise AwsError(f"a budget named {name!r} exists already in account {account}; pass another --name, "
                           "or change it in the Billing console") from None
        raise
    subs = request.get("NotificationsWithSubscribers", [{}])[0].get("Subscribers", [])
    return BudgetResult(account, name, amount, subs, request)
