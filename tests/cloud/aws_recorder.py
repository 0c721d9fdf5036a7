"""Record every AWS operation the project's code makes, and evaluate IAM policies against them.

Two ways to record, both through botocore's public event API: every client
created while recording gets a ``provide-client-params`` handler that records
the service, the operation and its parameters before the request is validated
or sent (S3 through :mod:`multitype.storage.s3` and the control plane through
:mod:`multitype.cloud.aws` both create their clients from a botocore session).

- :func:`recording` (a context manager, for one test): the project's client
  caches are emptied first, so no client made before escapes.
- :func:`subprocess_env` (for commands a test runs as subprocesses, e.g. the
  EC2 user data): ``sitecustomize.py`` in ``aws_record_site/`` does the same
  in every Python process started with that environment, appending JSON lines
  to a file that :func:`load` reads (every such call counts as ours: the
  process stands for the instance).
- This module as a pytest plugin, for a whole run:
  ``pytest -p tests.cloud.aws_recorder --record-aws ops.jsonl tests/cloud tests/s3``
  writes one JSON line per operation, with ``ours`` true when the project's
  code made it (a ``multitype`` frame on the stack, or an s3transfer worker:
  only our code uses transfer managers) and false for a test's own setup.
  ``MULTITYPE_AWS_RECORD=ops.jsonl pytest tests/cloud/test_iam_coverage.py``
  then checks that the policies name every recorded action.

:func:`allowed` is a small evaluator of ``Allow`` statements: actions and
resources match with ``fnmatch`` (actions case-insensitively, as IAM does),
and ``StringEquals``/``StringLike`` conditions against the request's context
keys (``s3:prefix``, ``aws:RequestTag/...``, ``aws:ResourceTag/...`` from the
tags a test says the resources have, ``ec2:Region``, ``ec2:CreateAction``); a
condition whose key the request does not have does not match. A call that acts
on several resources is checked on each (:func:`expand`): ``DeleteObjects``
per key, ``CancelSpotInstanceRequests``/``TerminateInstances`` per id,
``CreateEndpoint`` on the endpoint and on its endpoint config, and
``RunInstances`` per resource type it touches, with the ``CreateTags`` that
its ``TagSpecifications`` imply (and ``CreateLaunchTemplate`` likewise). Auto
Scaling calls act on the group's ARN, with ``aws:RequestTag``/``aws:ResourceTag``
and ``aws:RequestedRegion``. No ``Deny``, ``NotAction`` or ``NotResource``:
our policies use none.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import botocore.session

import multitype
from multitype.cloud import iam

_OURS = str(Path(multitype.__file__).parent)
SITE_DIR = Path(__file__).parent / "aws_record_site"
RECORD_ENV = "MULTITYPE_AWS_RECORD_TO"
_SINKS: list[list["Call"]] = []
_ORIGINAL = botocore.session.Session.create_client


@dataclass(frozen=True)
class Call:
    """One AWS operation: IAM service prefix, botocore operation name, the parameters that matter, the region."""

    service: str
    operation: str
    params: Mapping[str, Any] = field(hash=False, compare=False, default_factory=dict)
    ours: bool = field(hash=False, compare=False, default=True)
    region: str | None = field(hash=False, compare=False, default=None)

    @property
    def action(self) -> str:
        return iam.iam_action(self.service, self.operation)


def _from_our_code() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_OURS) or "/s3transfer/" in name:
            return True
        frame = frame.f_back
    return False


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters without bodies and other non-JSON values (kept: names, keys, tags, prefixes)."""
    return json.loads(json.dumps({k: v for k, v in params.items() if k != "Body"}, default=lambda _: None))


def _record(params: dict[str, Any], model: Any, region: str | None = None, **_: Any) -> None:
    if not _SINKS:
        return
    service = model.service_model.signing_name or model.service_model.endpoint_prefix
    call = Call(service, model.name, _plain(params), _from_our_code(), region)
    for sink in _SINKS:
        sink.append(call)


def _create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
    client = _ORIGINAL(self, *args, **kwargs)
    client.meta.events.register("provide-client-params", functools.partial(_record, region=client.meta.region_name),
                                unique_id="multitype-aws-recorder")
    return client


def subprocess_env(env: Mapping[str, str], path: Path) -> dict[str, str]:
    """``env`` for a subprocess whose Python processes append their AWS operations to ``path`` (JSON lines)."""
    python_path = os.pathsep.join(p for p in (str(SITE_DIR), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": python_path, RECORD_ENV: str(path)}


def _forget_clients(setattr_: Any) -> None:
    from multitype.cloud import aws as cloud_aws
    from multitype.storage import s3, transfer

    setattr_(s3, "_CLIENTS", {})
    setattr_(cloud_aws, "_CLIENTS", {})
    setattr_(transfer, "_MANAGERS", {})


@contextlib.contextmanager
def recording(monkeypatch: Any) -> Iterator[list[Call]]:
    """Record the operations of every botocore client created inside the block (in this process)."""
    calls: list[Call] = []
    if botocore.session.Session.create_client is not _create_client:
        monkeypatch.setattr(botocore.session.Session, "create_client", _create_client)
    _forget_clients(monkeypatch.setattr)  # clients (and transfer managers holding them) made before would not record
    _SINKS.append(calls)
    try:
        yield calls
    finally:
        _SINKS.remove(calls)


# --- the pytest plugin (-p tests.cloud.aws_recorder --record-aws FILE) -------------------------------
_SESSION: list[Call] = []


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--record-aws", metavar="FILE", default=None,
                     help="write every AWS operation of the run to FILE (JSON lines) for test_iam_coverage")


def pytest_configure(config: Any) -> None:
    if config.getoption("--record-aws", default=None):
        botocore.session.Session.create_client = _create_client  # for the whole run, before any client exists
        _SINKS.append(_SESSION)


def pytest_unconfigure(config: Any) -> None:
    path = config.getoption("--record-aws", default=None)
    if path:
        with open(path, "w", encoding="utf-8") as out:
            for call in _SESSION:
                out.write(json.dumps({"service": call.service, "operation": call.operation, "ours": call.ours,
                                      "params": call.params, "region": call.region}) + "\n")


def load(path: str | Path) -> list[Call]:
    """The calls a ``--record-aws`` run or the processes of :func:`subprocess_env` wrote."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as lines:
        return [Call(d["service"], d["operation"], d["params"], d["ours"], d.get("region"))
                for d in map(json.loads, lines)]


# --- resources and context keys of a call -----------------------------------------------------------
LOG_STREAM_OPERATIONS = {"CreateLogStream", "PutLogEvents", "GetLogEvents"}
# SageMaker parameter naming a resource -> its ARN's resource type, the first one present wins
SAGEMAKER_RESOURCES = (("TrainingJobName", "training-job"), ("ProcessingJobName", "processing-job"),
                       ("EndpointName", "endpoint"),
                       ("EndpointConfigName", "endpoint-config"), ("ModelName", "model"),
                       ("HyperParameterTuningJobName", "hyper-parameter-tuning-job"),
                       ("ModelPackageGroupName", "model-package-group"), ("ModelPackageArn", ""))
# an EC2 call expanded per resource carries it as params "_resource" ("<type>/<id>") and its request's
# condition keys as "_context"


def target(call: Call, region: str, account: str,
           tags: Mapping[str, Mapping[str, str]] | None = None) -> tuple[str, dict[str, str]]:
    """The resource ARN a call acts on and its condition context keys (``"*"`` where the action has none).

    ``tags``: resource id -> its tags, for ``aws:ResourceTag/...`` (what the resource carries in AWS).
    """
    p = call.params
    region = call.region or region
    if call.service == "s3":
        bucket = p.get("Bucket", "")
        if call.action == "s3:ListBucket":
            return f"arn:aws:s3:::{bucket}", {"s3:prefix": p.get("Prefix", "")}
        if "Key" in p:
            return f"arn:aws:s3:::{bucket}/{p['Key']}", {}
        if call.operation == "DeleteObjects":  # checked per key by the caller (see :func:`expand`)
            raise AssertionError("expand DeleteObjects first")
        return f"arn:aws:s3:::{bucket}", {}
    if call.service == "sagemaker":
        context = {f"aws:RequestTag/{t['Key']}": t["Value"] for t in p.get("Tags", [])}
        for key, kind in SAGEMAKER_RESOURCES:  # CreateEndpoint names two: see :func:`expand`
            if p.get(key):
                if not kind:  # the parameter is the ARN itself (UpdateModelPackage's ModelPackageArn)
                    return str(p[key]), context
                return f"arn:aws:sagemaker:{region}:{account}:{kind}/{str(p[key]).lower()}", context
        return "*", context
    if call.service == "logs":
        group = f"arn:aws:logs:{region}:{account}:log-group:{p.get('logGroupName', '')}"
        if call.operation in LOG_STREAM_OPERATIONS:  # the Service Authorization Reference's log-stream
            return f"{group}:log-stream:{p.get('logStreamName', '')}", {}
        return group, {}
    if call.service == "iam":
        if "RoleName" in p:
            return f"arn:aws:iam::{account}:role/{p['RoleName']}", {}
        if "InstanceProfileName" in p:
            return f"arn:aws:iam::{account}:instance-profile/{p['InstanceProfileName']}", {}
        if "PolicyArn" in p:
            return str(p["PolicyArn"]), {}
        return "*", {}
    if call.service == "budgets":
        name = p.get("Budget", {}).get("BudgetName") or p.get("BudgetName") or "*"
        return f"arn:aws:budgets::{account}:budget/{name}", {}
    if call.service == "autoscaling":
        context = {"aws:RequestedRegion": region}
        if call.operation.startswith("Describe"):  # no resource-level permissions
            return "*", context
        name = p.get("AutoScalingGroupName") or next((t["ResourceId"] for t in p.get("Tags", [])), "")
        if call.operation in ("CreateAutoScalingGroup", "CreateOrUpdateTags"):
            context.update({f"aws:RequestTag/{t['Key']}": t["Value"] for t in p.get("Tags", [])})
        context.update({f"aws:ResourceTag/{k}": v for k, v in (tags or {}).get(name, {}).items()})
        return f"arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{name}", context
    if call.service == "ec2":
        context = {"ec2:Region": region, **{k: str(v) for k, v in p.get("_context", {}).items()}}
        resource = p.get("_resource")
        if resource is None:  # Describe*: no resource-level permissions
            return "*", context
        rid = resource.rsplit("/", 1)[-1]
        context.update({f"aws:ResourceTag/{k}": v for k, v in (tags or {}).get(rid, {}).items()})
        account_part = "" if resource.startswith("image/") else account
        return f"arn:aws:ec2:{region}:{account_part}:{resource}", context
    return "*", {}


def _run_instances(call: Call) -> list[Call]:
    """RunInstances as IAM evaluates it: once per resource type, with ``aws:RequestTag`` of the types it tags,
    plus ``ec2:CreateTags`` (``ec2:CreateAction=RunInstances``) on each tagged type."""
    p = call.params
    tagged = {spec["ResourceType"]: {t["Key"]: t["Value"] for t in spec.get("Tags", [])}
              for spec in p.get("TagSpecifications", [])}
    creates = ["instance", "volume", "network-interface"]
    if p.get("InstanceMarketOptions", {}).get("MarketType") == "spot":
        creates.append("spot-instances-request")
    out = []
    for kind in creates:
        context = {f"aws:RequestTag/{k}": v for k, v in tagged.get(kind, {}).items()}
        out.append(Call("ec2", "RunInstances", {"_resource": f"{kind}/new", "_context": context}, call.ours,
                        call.region))
        if kind in tagged:
            out.append(Call("ec2", "CreateTags", {"_resource": f"{kind}/new",
                                                  "_context": {**context, "ec2:CreateAction": "RunInstances"}},
                            call.ours, call.region))
    uses = [f"image/{p.get('ImageId', '')}", *(f"security-group/{g}" for g in p.get("SecurityGroupIds", []))]
    if p.get("SubnetId"):
        uses.append(f"subnet/{p['SubnetId']}")
    if p.get("KeyName"):
        uses.append(f"key-pair/{p['KeyName']}")
    out += [Call("ec2", "RunInstances", {"_resource": r}, call.ours, call.region) for r in uses]
    return out


def expand(call: Call) -> list[Call]:
    """A call on several resources as one call per resource (IAM checks each); other calls unchanged."""
    p = call.params
    if call.service == "s3" and call.operation == "DeleteObjects":
        return [Call("s3", "DeleteObject", {"Bucket": p["Bucket"], "Key": o["Key"]}, call.ours, call.region)
                for o in p["Delete"]["Objects"]]
    if call.service == "ec2" and call.operation == "CancelSpotInstanceRequests":
        return [Call("ec2", call.operation, {"_resource": f"spot-instances-request/{i}"}, call.ours, call.region)
                for i in p["SpotInstanceRequestIds"]]
    if call.service == "ec2" and call.operation in ("TerminateInstances", "CreateTags"):
        ids = p.get("InstanceIds") or p.get("Resources") or []
        kind = {"i": "instance", "sir": "spot-instances-request", "vol": "volume"}
        return [Call("ec2", call.operation, {"_resource": f"{kind.get(i.split('-')[0], 'instance')}/{i}",
                                             "_context": {f"aws:RequestTag/{t['Key']}": t["Value"]
                                                          for t in p.get("Tags", [])}}, call.ours, call.region)
                for i in ids]
    if call.service == "ec2" and call.operation == "RunInstances":
        return _run_instances(call)
    if call.service == "ec2" and call.operation == "CreateLaunchTemplate":  # tagged on create: CreateTags too
        tagged = {f"aws:RequestTag/{t['Key']}": t["Value"] for spec in p.get("TagSpecifications", [])
                  if spec.get("ResourceType") == "launch-template" for t in spec.get("Tags", [])}
        return [Call("ec2", "CreateLaunchTemplate", {"_resource": "launch-template/new", "_context": tagged},
                     call.ours, call.region),
                Call("ec2", "CreateTags", {"_resource": "launch-template/new",
                                           "_context": {**tagged, "ec2:CreateAction": "CreateLaunchTemplate"}},
                     call.ours, call.region)]
    if call.service == "ec2" and call.operation in ("CreateLaunchTemplateVersion", "DeleteLaunchTemplate"):
        # the template as a resource; tests key its tags by name (AWS by id: the same template)
        return [Call("ec2", call.operation, {"_resource": f"launch-template/{p['LaunchTemplateName']}"},
                     call.ours, call.region)]
    if call.service == "sagemaker" and call.operation == "CreateEndpoint":  # IAM checks the endpoint and its config
        tags = {"Tags": p["Tags"]} if "Tags" in p else {}
        return [Call("sagemaker", call.operation, {"EndpointName": p["EndpointName"], **tags}, call.ours, call.region),
                Call("sagemaker", call.operation, {"EndpointConfigName": p["EndpointConfigName"], **tags}, call.ours,
                     call.region)]
    return [call]


def _listify(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _condition_ok(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for op, tests in condition.items():
        for key, wanted in tests.items():
            if key not in context:
                return False
            value = context[key]
            if op == "StringEquals" and value not in _listify(wanted):
                return False
            if op == "StringLike" and not any(fnmatch.fnmatchcase(value, w) for w in _listify(wanted)):
                return False
            if op not in ("StringEquals", "StringLike"):
                raise AssertionError(f"the evaluator does not know condition operator {op}")
    return True


def allowed(document: Mapping[str, Any], action: str, resource: str, context: Mapping[str, str]) -> bool:
    """Does some ``Allow`` statement of ``document`` allow ``action`` on ``resource`` in ``context``?"""
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        if not any(fnmatch.fnmatch(action.lower(), a.lower()) for a in _listify(statement["Action"])):
            continue
        if not any(r == "*" or fnmatch.fnmatchcase(resource, r) for r in _listify(statement["Resource"])):
            continue
        if _condition_ok(statement.get("Condition", {}), context):
            return True
    return False


def denied(document: Mapping[str, Any], calls: list[Call], region: str, account: str,
           tags: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """The calls ``document`` does not allow, as readable lines (empty: all allowed)."""
    out = []
    for call in (c for each in calls for c in expand(each)):
        resource, context = target(call, region, account, tags)
        if not allowed(document, call.action, resource, context):
            out.append(f"{call.service}.{call.operation} ({call.action}) on {resource} {context or ''}".strip())
    return sorted(set(out))
