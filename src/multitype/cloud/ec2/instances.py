"""This project's EC2 training instances: status, list, logs and terminate.

An instance is named by its id (``i-...``), by its run id (``multitype-...``;
the record under ``runs/ec2/`` or, failing that, the ``multitype:run`` tag),
or not at all (the newest record). :func:`summary` puts together what
``status`` shows: the instance's state, its spot request (found through the
instance's ``SpotInstanceRequestId`` or, where EC2 leaves that out, by
DescribeSpotInstanceRequests' ``instance-id`` filter), uptime since the last
start, the cost so far (uptime x the price catalog's quote: spot or
on-demand, spot estimated from on-demand where the catalog has no spot price)
and the newest ``METRIC`` value of each name in the run's CloudWatch Logs
stream (group ``/multitype/ec2``, stream = run id, written by the user data). :func:`list_instances` finds every instance tagged
``multitype:project=<name>`` in the region, so none is left running
unnoticed. :func:`terminate` cancels a spot request that is still open or
active first -- otherwise a persistent request would start the instance
again -- then terminates the instance.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any, Callable

from multitype.cloud.aws import aws_errors, client
from multitype.cloud.ec2 import records
from multitype.cloud.ec2.request import LOG_GROUP
from multitype.config import AwsConfig
from multitype.errors import AwsError
from multitype.storage import Storage

PROJECT_TAG, RUN_TAG, MODEL_TAG = "multitype:project", "multitype:run", "multitype:model"
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
RUNNING_STATES = ("pending", "running", "stopping", "shutting-down")
OPEN_SPOT_STATES = ("open", "active", "disabled")
_METRIC = re.compile(r"METRIC (?P<name>[A-Za-z_][\w.]*)=(?P<value>\S+)")
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) GMT\)")


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def describe_instance(aws: AwsConfig, instance_id: str) -> dict[str, Any]:
    """DescribeInstances for one id.

    Raises
    ------
    AwsError
        No such instance in ``aws.region``.
    """
    try:
        with aws_errors(f"describe the instance {instance_id}", aws):
            reservations = client("ec2", aws).describe_instances(InstanceIds=[instance_id])["Reservations"]
    except AwsError as exc:
        if "InvalidInstanceID" in str(exc):
            raise AwsError(f"no instance {instance_id} in {aws.region}; see 'multitype ec2 list --all'") from None
        raise
    found = [i for r in reservations for i in r.get("Instances", [])]
    if not found:
        raise AwsError(f"no instance {instance_id} in {aws.region}; see 'multitype ec2 list --all'")
    return found[0]


def _by_run_tag(aws: AwsConfig, run_id: str) -> list[dict[str, Any]]:
    with aws_errors(f"find the instance of run {run_id}", aws):
        pages = client("ec2", aws).get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}])
        found = [i for page in pages for r in page.get("Reservations", []) for i in r.get("Instances", [])]
    return sorted(found, key=lambda i: i.get("LaunchTime") or dt.datetime.min.replace(tzinfo=dt.timezone.utc))


def resolve(storage: Storage, aws: AwsConfig, target: str | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The instance (DescribeInstances) and this root's record for an instance id, a run id, or None (the newest).

    Raises
    ------
    AwsError
        Nothing launched from this root (and no target), or no such instance or run.
    """
    record = records.find(storage, target)
    if record is not None:
        return describe_instance(aws, str(record["instance_id"])), record
    assert target is not None  # find() raised for None
    if target.startswith("i-"):
        return describe_instance(aws, target), None
    found = _by_run_tag(aws, target)
    if not found:
        raise AwsError(f"no instance or run {target!r}: not in {storage.url(records.FOLDER)} and no instance in "
                       f"{aws.region} is tagged {RUN_TAG}={target}; see 'multitype ec2 list --all'")
    return found[-1], None


def spot_request(aws: AwsConfig, instance: dict[str, Any]) -> dict[str, Any] | None:
    """The spot request behind ``instance`` (None for on-demand, or when EC2 no longer lists it)."""
    if instance.get("InstanceLifecycle") != "spot" and not instance.get("SpotInstanceRequestId"):
        return None
    ec2 = client("ec2", aws)
    request_id = instance.get("SpotInstanceRequestId")
    with aws_errors(f"describe the spot request of {instance['InstanceId']}", aws):
        if request_id:
            try:
                found = ec2.describe_spot_instance_requests(SpotInstanceRequestIds=[request_id])
                return (found.get("SpotInstanceRequests") or [None])[0]
            except Exception as exc:  # noqa: BLE001 - a request EC2 has forgotten is no request
                if "InvalidSpotInstanceRequestID" not in str(exc):
                    raise
                return None
        found = ec2.describe_spot_instance_requests(
            Filters=[{"Name": "instance-id", "Values": [instance["InstanceId"]]}]).get("SpotInstanceRequests", [])
    return found[-1] if found else None


def _when_stopped(instance: dict[str, Any]) -> dt.datetime | None:
    """When a stopped or terminated instance left running, from its StateTransitionReason (``... (date GMT)``)."""
    match = _TRANSITION_TIME.search(str(instance.get("StateTransitionReason", "")))
    if not match:
        return None
    return dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)


def uptime_seconds(instance: dict[str, Any], now: dt.datetime | None = None) -> float | None:
    """Seconds since the instance last started, to now (running) or to when it stopped (None: unknown)."""
    launched = instance.get("LaunchTime")
    if not isinstance(launched, dt.datetime):
        return None
    state = instance.get("State", {}).get("Name")
    end = (now or dt.datetime.now(dt.timezone.utc)) if state in RUNNING_STATES else _when_stopped(instance)
    return None if end is None else max((end - launched).total_seconds(), 0.0)


def hourly_price(instance_type: str, spot: bool) -> tuple[float | None, str]:
    """The price catalog's $/hour for ``instance_type`` (the quote launch estimates use) and where it came from.

    Spot without a spot price in the catalog is on-demand x the catalog's spot ratio, said so in the basis.
    """
    from multitype.cloud import prices

    catalog = prices.load_catalog()
    if catalog.instance(instance_type) is None:
        return None, f"{instance_type} is not in the price catalog ({catalog.date})"
    quote = catalog.quote(instance_type, spot)
    return quote.usd_hour, f"{quote.basis}; catalog {catalog.date}"


def parse_metrics(lines: list[str]) -> dict[str, Any]:
    """The newest value of every ``METRIC name=value`` in ``lines`` (numbers as floats where they parse)."""
    latest: dict[str, Any] = {}
    for line in lines:
        for match in _METRIC.finditer(line):
            value: Any = match.group("value")
            try:
                value = float(value)
            except ValueError:
                pass
            latest[match.group("name")] = value
    return latest


def _reader(aws: AwsConfig, run_id: str, echo: Callable[[str], None], timestamps: bool = False) -> Any:
    """A reader of the run's one stream (``/multitype/ec2`` / ``<run id>``, every instance of the run appends to it)."""
    from multitype.cloud.sagemaker.logs import LogReader

    class RunStream(LogReader):
        def streams(self) -> list[str]:  # the prefix would also match a longer name; the stream is the run id
            return [name for name in super().streams() if name == run_id]

    return RunStream(aws, run_id, echo=echo, timestamps=timestamps, log_group=LOG_GROUP, stream_prefix=run_id)


def latest_metrics(aws: AwsConfig, run_id: str) -> dict[str, Any]:
    """The run's newest METRIC values, from its log stream(s) in ``/multitype/ec2`` (empty before any)."""
    lines: list[str] = []
    _reader(aws, run_id, lines.append).poll()
    return parse_metrics(lines)


def _iso(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None if value is None else str(value)


def row(instance: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """One instance as ``list`` shows it: id, run, model, type, market, state, launched, uptime, cost so far."""
    tags = _tags(instance)
    spot = instance.get("InstanceLifecycle") == "spot"
    uptime = uptime_seconds(instance, now)
    price, basis = hourly_price(str(instance.get("InstanceType")), spot)
    return {"instance_id": instance["InstanceId"], "run_id": tags.get(RUN_TAG), "model": tags.get(MODEL_TAG),
            "instance_type": instance.get("InstanceType"), "spot": spot,
            "state": instance.get("State", {}).get("Name"), "launched": _iso(instance.get("LaunchTime")),
            "uptime_seconds": uptime, "price_usd_hour": price, "price_basis": basis,
            "cost_usd": None if uptime is None or price is None else round(uptime / 3600 * price, 4)}


def summary(aws: AwsConfig, instance: dict[str, Any], record: dict[str, Any] | None = None,
            now: dt.datetime | None = None, metrics: bool = True) -> dict[str, Any]:
    """What ``status`` shows for ``instance``: :func:`row` plus its spot request, AMI, root and METRIC values."""
    info = row(instance, now)
    request = spot_request(aws, instance)
    info["run_id"] = info["run_id"] or (record or {}).get("run_id")
    info["spot_request"] = None if request is None else {
        "id": request.get("SpotInstanceRequestId"), "type": request.get("Type"), "state": request.get("State"),
        "status": (request.get("Status") or {}).get("Code"),
        "interruption_behavior": request.get("InstanceInterruptionBehavior")}
    info["market"] = "on-demand" if not info["spot"] else (
        f"spot {(request or {}).get('Type') or (record or {}).get('market', 'spot').removeprefix('spot ')}")
    info["image_id"] = instance.get("ImageId")
    info["state_reason"] = instance.get("StateTransitionReason") or None
    info["root"] = (record or {}).get("root")
    info["metrics"] = latest_metrics(aws, info["run_id"]) if metrics and info["run_id"] else {}
    return info


def list_instances(aws: AwsConfig, project_name: str, all_states: bool = False,
                   now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every instance tagged ``multitype:project=<project_name>`` in the region (not terminated unless ``all_states``), newest first."""
    filters = [{"Name": f"tag:{PROJECT_TAG}", "Values": [project_name]}]
    if not all_states:
        filters.append({"Name": "instance-state-name", "Values": list(LIVE_STATES)})
    with aws_errors(f"list the instances of project {project_name} in {aws.region}", aws):
        pages = client("ec2", aws).get_paginator("describe_instances").paginate(Filters=filters)
        found = [i for page in pages for r in page.get("Reservations", []) for i in r.get("Instances", [])]
    found.sort(key=lambda i: (i.get("LaunchTime") or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
                              i["InstanceId"]), reverse=True)
    return [row(i, now) for i in found]


def terminate(aws: AwsConfig, instance: dict[str, Any]) -> list[str]:
    """Cancel the instance's open spot request (a persistent one would start it again), then terminate it.

    Returns
    -------
    list of str
        What was done, one line each.
    """
    done = []
    instance_id = instance["InstanceId"]
    state = instance.get("State", {}).get("Name")
    request = spot_request(aws, instance)
    ec2 = client("ec2", aws, max_attempts=1)
    if request is not None and request.get("State") in OPEN_SPOT_STATES:
        request_id = request["SpotInstanceRequestId"]
        with aws_errors(f"cancel the spot request {request_id}", aws):
            ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=[request_id])
        done.append(f"cancelled spot request {request_id} ({request.get('Type')}), so no new instance starts")
    if state == "terminated":
        done.append(f"{instance_id} is already terminated")
        return done
    with aws_errors(f"terminate the instance {instance_id}", aws):
        changed = ec2.terminate_instances(InstanceIds=[instance_id]).get("TerminatingInstances", [])
    now = (changed[0].get("CurrentState") or {}).get("Name", "shutting-down") if changed else "shutting-down"
    done.append(f"terminating {instance_id} (was {state}, now {now})")
    return done


def show_logs(aws: AwsConfig, instance: dict[str, Any], run_id: str, follow: bool = False,
              poll_seconds: float = 10.0, echo: Callable[[str], None] = print,
              note: Callable[[str], None] | None = None, max_seconds: float = 24 * 3600.0,
              timestamps: bool = False) -> int:
    """Print the run's log lines; with ``follow``, keep polling until the instance is terminated (or ``max_seconds``).

    Returns
    -------
    int
        The number of lines printed.
    """
    note = note or echo
    reader = _reader(aws, run_id, echo, timestamps)
    if not follow:
        if reader.poll() == 0:
            note(f"no log lines yet for run {run_id} in {LOG_GROUP} (instance {instance['InstanceId']} "
                 f"{instance.get('State', {}).get('Name')}); the instance logs once its user data runs; try again "
                 "later or use --follow")
        return reader.lines
    deadline = time.monotonic() + max_seconds
    while True:
        ended = instance.get("State", {}).get("Name") == "terminated"
        reader.poll()
        if ended:
            return reader.lines
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AwsError(f"stopped following run {run_id} after {max_seconds:.0f} s: {instance['InstanceId']} is "
                           f"still {instance.get('State', {}).get('Name')}; run 'multitype ec2 logs {run_id} "
                           "--follow' again")
        time.sleep(max(min(poll_seconds, remaining), 0.0))
        instance = describe_instance(aws, instance["InstanceId"])
