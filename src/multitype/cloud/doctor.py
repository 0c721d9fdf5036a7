"""``multitype doctor``: the runbook's migration checklist as checks that pass, fail or are skipped.

:func:`run_checks` runs the checks in checklist order and returns one
:class:`Check` each (PASS / FAIL / SKIP, a one-line reason, the command that
fixes it). A check whose prerequisite is missing is skipped and says which
(no configs, no ``storage.remote``, no AWS credentials); a check never raises
for something the user can fix: that is its FAIL.

1. configs valid (:func:`multitype.config.load_configs`)
2. the local pipeline ran: metrics files and the report exist under the root
3. the data audit is clean: no exact or near duplicate across splits
4. the code is committed (``git status``)
5. AWS credentials and a known region; the account (STS)
6. the code is pushed by ``sync push`` (a dry run of ``sync push --only code``
   moves nothing)
7. the bucket is reachable and a test object round-trips (written, read and
   deleted under ``<remote>/.multitype-doctor/``)
8. the SageMaker role and 9. the EC2 role and instance profile exist with the
   trust and inline policies ``multitype iam policy`` writes
10. an AWS Budgets budget with an alert exists (any budget of the account:
    ``cost budget create`` names its own ``multitype-<project>-monthly``)
11. no EC2 instance tagged ``multitype:project=<name>``, no spot request of
    the project that would still start one (open, or persistent and not
    cancelled), and no ``multitype-*`` SageMaker training job is left running
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from multitype import layout
from multitype.cloud.iam import DOCTOR_FOLDER
from multitype.errors import UserError
from multitype.storage import split_s3_url

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
RUNNING_INSTANCE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]
RUNNING_JOB_STATES = ("InProgress", "Stopping")
# a request in these states may still start an instance: open ones, and persistent ones until cancelled
LIVE_SPOT_STATES = ["open", "active", "disabled"]


@dataclass
class Check:
    """The outcome of one check: ``status`` is PASS, FAIL or SKIP; ``fix`` the command that fixes a FAIL."""

    name: str
    status: str
    reason: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class _State:
    """What earlier checks found, for the later ones."""

    config_dir: str
    root: str | None
    local: Path
    configs: Any = None
    storage: Any = None
    account: str | None = None
    remote_ok: bool = False


def _configs(st: _State) -> Check:
    from multitype.project import open_project

    try:
        project = open_project(st.root, st.config_dir, "doctor")
    except UserError as exc:
        return Check("configs valid", FAIL, str(exc), f"fix the files in {st.config_dir}/")
    st.configs, st.storage = project.configs, project.storage
    return Check("configs valid", PASS, f"the 4 config files in {st.config_dir}/ are valid")


def _results(st: _State) -> Check:
    from multitype.results import metrics_keys

    name = "local results"
    if st.storage is None:
        return Check(name, SKIP, "no valid configs")
    metrics = [k for kind in ("baseline", "transformer") for k in metrics_keys(st.storage, kind)]
    if not metrics:
        return Check(name, FAIL, f"no metrics files under {st.storage.url('results')}", "multitype run")
    if not st.storage.exists(layout.REPORT):
        return Check(name, FAIL, f"{len(metrics)} metrics file(s) but no {layout.REPORT}", "multitype report")
    return Check(name, PASS, f"{len(metrics)} metrics file(s) and {layout.REPORT}")


def _audit(st: _State) -> Check:
    from multitype.data.publish import read_current

    name = "data audit clean"
    if st.storage is None:
        return Check(name, SKIP, "no valid configs")
    raw = read_current(st.storage, layout.AUDIT)
    if raw is None:
        return Check(name, FAIL, f"no {layout.AUDIT}: the data was not prepared", "multitype prepare")
    try:
        cross = json.loads(raw).get("cross_split") or {}
    except (ValueError, AttributeError):
        return Check(name, FAIL, f"{layout.AUDIT} is not a JSON object", "multitype prepare")
    exact, near = int(cross.get("exact_duplicates", 0) or 0), int(cross.get("near_duplicates", 0) or 0)
    if exact or near:
        return Check(name, FAIL, f"{exact} exact and {near} near duplicate(s) across splits",
                     "set leakage.policy: drop in data_config.yaml, then multitype prepare")
    return Check(name, PASS, "no exact or near duplicate across splits")


def _committed(st: _State) -> Check:
    from multitype.manifest import git

    name = "code committed"
    if git(st.local, "rev-parse", "--is-inside-work-tree") != "true":
        return Check(name, SKIP, f"{st.local} is not a git checkout", "git init && git add -A && git commit")
    status = git(st.local, "status", "--porcelain")
    if status is None:
        return Check(name, FAIL, f"git status failed in {st.local}", "git status")
    if status:
        changed = len(status.splitlines())
        return Check(name, FAIL, f"{changed} uncommitted change(s) in {st.local}", "git add -A && git commit")
    commit = git(st.local, "rev-parse", "--short", "HEAD") or "?"
    return Check(name, PASS, f"clean at {commit}")


def _remote(st: _State) -> str | None:
    return st.configs.project.storage.remote if st.configs is not None else None


def _s3_skip(st: _State, name: str) -> Check | None:
    """SKIP without a remote root, valid configs or usable credentials."""
    if _remote(st) is None:
        return Check(name, SKIP, "no storage.remote in project.yaml" if st.configs else "no valid configs",
                     "set storage.remote: s3://bucket/prefix in project.yaml")
    return _aws_skip(st, name)


def _pushed(st: _State) -> Check:
    from multitype.cloud.bundle import code_files
    from multitype.sync import sync

    name = "code pushed"
    skip = _s3_skip(st, name)
    if skip:
        return skip
    remote, project = _remote(st), st.configs.project
    try:
        result = sync("push", local=st.local, remote=remote, only="code", dry_run=True,
                      endpoint_url=project.storage.endpoint_url, profile=project.aws.profile,
                      code_files=code_files(st.local))
    except UserError as exc:
        return Check(name, SKIP, f"cannot compare with {remote}/code: {exc}")
    if result.uploaded:
        return Check(name, FAIL, f"{len(result.uploaded)} code file(s) differ from {remote}/{layout.CODE}/ "
                     f"(e.g. {result.uploaded[0]})", "multitype sync push --only code")
    return Check(name, PASS, f"{remote}/{layout.CODE}/ matches the local code ({len(result.skipped)} files)")


def _credentials(st: _State) -> Check:
    import botocore.session

    from multitype.cloud import aws

    name = "credentials and region"
    if st.configs is None:
        return Check(name, SKIP, "no valid configs")
    cfg = st.configs.project.aws
    regions = botocore.session.get_session().get_available_regions("sagemaker")
    if cfg.region not in regions:
        return Check(name, FAIL, f"aws.region {cfg.region!r} is not an AWS region with SageMaker",
                     "set aws.region in project.yaml (e.g. us-east-1)")
    try:
        source = aws.check_credentials(cfg)
        with aws.aws_errors("check the AWS credentials (sts get-caller-identity)", cfg):
            identity = aws.client("sts", cfg).get_caller_identity()
    except UserError as exc:
        return Check(name, FAIL, str(exc), "aws configure (or set AWS_PROFILE)")
    st.account = str(identity["Account"])
    return Check(name, PASS, f"account {st.account} as {identity.get('Arn', '?')} ({source}), region {cfg.region}")


def _aws_skip(st: _State, name: str) -> Check | None:
    if st.configs is None:
        return Check(name, SKIP, "no valid configs")
    if st.account is None:
        return Check(name, SKIP, "no usable AWS credentials")
    return None


def _bucket(st: _State) -> Check:
    from multitype.storage import Storage

    name = "bucket round trip"
    skip = _s3_skip(st, name)
    if skip:
        return skip
    remote, project = _remote(st), st.configs.project
    key = f"{DOCTOR_FOLDER}/{uuid.uuid4().hex}"
    payload = b"multitype doctor round trip\n"
    try:
        storage = Storage(remote, endpoint_url=project.storage.endpoint_url, profile=project.aws.profile)
        storage.write_bytes(key, payload)
        back = storage.read_bytes(key)
        storage.rm(key)
    except UserError as exc:
        bucket = split_s3_url(remote)[0]
        return Check(name, FAIL, str(exc), f"aws s3 mb s3://{bucket}, or fix storage.remote or the permissions "
                     "(multitype iam policy launcher)")
    if back != payload:
        return Check(name, FAIL, f"{storage.url(key)} read back differs from what was written",
                     "check storage.endpoint_url")
    st.remote_ok = True
    return Check(name, PASS, f"wrote, read and deleted {storage.url(key)}")


def _role(st: _State, which: str) -> Check:
    from multitype.cloud import iam

    name = "SageMaker role" if which == "sagemaker" else "EC2 role and instance profile"
    kind = "sagemaker-role" if which == "sagemaker" else "ec2-profile"
    skip = _aws_skip(st, name)
    if skip:
        return skip
    project = st.configs.project
    fix = f"multitype iam policy {kind} --create"
    try:
        scope = iam.scope_for(project, account=st.account)
        ok, reason = iam.role_status(scope, project.aws, which)
    except UserError as exc:
        return Check(name, FAIL, str(exc), fix)
    return Check(name, PASS if ok else FAIL, reason, "" if ok else fix)


def _budget(st: _State) -> Check:
    from multitype.cloud import aws

    name = "budget alert"
    skip = _aws_skip(st, name)
    if skip:
        return skip
    cfg = st.configs.project.aws
    fix = "multitype cost budget create --amount USD --email ADDR"
    project = st.configs.project.name
    try:
        with aws.aws_errors("read the AWS budgets", cfg):
            budgets = aws.client("budgets", cfg)
            names = [b["BudgetName"] for b in budgets.describe_budgets(AccountId=st.account).get("Budgets", [])]
            alerted = [n for n in names if budgets.describe_notifications_for_budget(
                AccountId=st.account, BudgetName=n).get("Notifications")]
    except UserError as exc:
        return Check(name, FAIL, str(exc), fix)
    if not names:
        return Check(name, FAIL, f"no AWS budget in account {st.account}", fix)
    if not alerted:  # a budget of that name exists: the new one needs another (multitype-*: the launcher's scope)
        return Check(name, FAIL, f"budget(s) {', '.join(names)} have no alert",
                     f"{fix} --name multitype-{project}-alerts (or add an alert in the Billing console)")
    return Check(name, PASS, f"budget {alerted[0]} has alerts" + (f" (+{len(alerted) - 1} more)" if len(alerted) > 1
                                                                  else ""))


def _running(st: _State) -> Check:
    from multitype.cloud import aws, iam

    name = "nothing left running"
    skip = _aws_skip(st, name)
    if skip:
        return skip
    project = st.configs.project
    cfg = project.aws
    try:
        with aws.aws_errors("list the project's instances and training jobs", cfg):
            ec2 = aws.client("ec2", cfg)
            ours = {"Name": f"tag:{iam.PROJECT_TAG}", "Values": [project.name]}
            instances = [i["InstanceId"] for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[ours, {"Name": "instance-state-name", "Values": RUNNING_INSTANCE_STATES}])
                for r in page.get("Reservations", []) for i in r.get("Instances", [])]
            requests = [r["SpotInstanceRequestId"]
                        for page in ec2.get_paginator("describe_spot_instance_requests").paginate(
                            Filters=[ours, {"Name": "state", "Values": LIVE_SPOT_STATES}])
                        for r in page.get("SpotInstanceRequests", [])
                        if r.get("State") == "open" or r.get("Type") == "persistent"]
            jobs = [j["TrainingJobName"]
                    for page in aws.client("sagemaker", cfg).get_paginator("list_training_jobs").paginate(
                        NameContains=iam.JOB_PREFIX.rstrip("-"))
                    for j in page.get("TrainingJobSummaries", [])
                    if j["TrainingJobName"].startswith(iam.JOB_PREFIX) and j["TrainingJobStatus"] in RUNNING_JOB_STATES]
    except UserError as exc:
        return Check(name, FAIL, str(exc), "multitype ec2 list; multitype sagemaker list")
    if instances or requests or jobs:
        what = ([f"instance(s) {', '.join(instances)}"] * bool(instances)
                + [f"spot request(s) {', '.join(requests)} (would start instances)"] * bool(requests)
                + [f"job(s) {', '.join(jobs)}"] * bool(jobs))
        fixes = ([f"multitype ec2 terminate {i}" for i in instances]
                 + [f"aws ec2 cancel-spot-instance-requests --spot-instance-request-ids {' '.join(requests)}"]
                 * bool(requests)
                 + [f"multitype sagemaker stop {j}" for j in jobs])
        return Check(name, FAIL, "still running: " + "; ".join(what), "; ".join(fixes))
    return Check(name, PASS, f"no instance or spot request tagged {iam.PROJECT_TAG}={project.name} and no "
                 "multitype-* job running")


CHECKS: list[Callable[[_State], Check]] = [
    _configs, _results, _audit, _committed, _credentials, _pushed, _bucket,
    lambda st: _role(st, "sagemaker"), lambda st: _role(st, "ec2"), _budget, _running,
]


def run_checks(root: str | None = None, config_dir: str = "configs", local: str = ".") -> list[Check]:
    """Run every check in checklist order.

    Parameters
    ----------
    root : str, optional
        The artifact root (``--root``; default as every command: ``MULTITYPE_ROOT``, ``storage.root``, ``.``).
    config_dir : str, default="configs"
        The config folder.
    local : str, default="."
        The project folder: its git checkout and the code ``sync push`` bundles.

    Returns
    -------
    list of Check
        One per check, in order; none raises for what the user can fix.
    """
    state = _State(config_dir=config_dir, root=root, local=Path(local))
    return [check(state) for check in CHECKS]
