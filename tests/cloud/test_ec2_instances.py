"""``multitype ec2 status|list|logs|terminate`` against moto (EC2, CloudWatch Logs).

moto's RunInstances with ``InstanceMarketOptions`` makes a spot instance but no
spot request, so the spot run here comes from RequestSpotInstances (a
persistent request, as ``--restart-on-interruption`` makes) with the run's tags
put on its instance; the on-demand run from RunInstances. The run's log lines
are put into moto's CloudWatch Logs as the instance's log shipper would.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from multitype.cloud import aws
from multitype.cloud.ec2 import instances
from multitype.config import AwsConfig
from tests.cloud import ec2_helpers as h

IMAGE = "ami-12c6146b"  # one of moto's built-in images
SPOT_RUN, DEMAND_RUN = "multitype-minilm-20261201-100000", "multitype-roberta-base-20261201-090000"


def _tags(run_id: str, project: str = h.PROJECT, model: str = "minilm") -> list[dict[str, str]]:
    return [{"Key": "multitype:project", "Value": project}, {"Key": "multitype:run", "Value": run_id},
            {"Key": "multitype:model", "Value": model}, {"Key": "Name", "Value": run_id}]


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.root, self.configs = h.make_project(tmp_path, None, prepared=False)
        ec2 = h.ec2()
        made = ec2.request_spot_instances(InstanceCount=1, Type="persistent", LaunchSpecification={
            "ImageId": IMAGE, "InstanceType": "g5.xlarge"})["SpotInstanceRequests"][0]
        self.request = made["SpotInstanceRequestId"]
        self.spot = ec2.describe_spot_instance_requests(
            SpotInstanceRequestIds=[self.request])["SpotInstanceRequests"][0]["InstanceId"]
        ec2.create_tags(Resources=[self.spot], Tags=_tags(SPOT_RUN))
        self.demand = self._run(_tags(DEMAND_RUN, model="roberta-base"))
        self.other = self._run(_tags("multitype-x-20261201-080000", project="another-project"))
        self.gone = self._run(_tags("multitype-minilm-20261130-080000"))
        ec2.terminate_instances(InstanceIds=[self.gone])
        record = {"run_id": SPOT_RUN, "instance_id": self.spot, "root": "s3://bucket/proj",
                  "market": "spot persistent", "launched_at": "2026-12-01T10:00:00Z"}
        (self.root / "runs" / "ec2").mkdir(parents=True)
        (self.root / "runs" / "ec2" / f"{SPOT_RUN}.json").write_text(json.dumps(record))

    @staticmethod
    def _run(tags: list[dict[str, str]]) -> str:
        return h.ec2().run_instances(ImageId=IMAGE, InstanceType="g5.xlarge", MinCount=1, MaxCount=1,
                                     TagSpecifications=[{"ResourceType": "instance", "Tags": tags}]
                                     )["Instances"][0]["InstanceId"]

    def args(self, command: str, *extra: str) -> list[str]:
        return ["ec2", command, *extra, "--root", str(self.root), "--config-dir", str(self.configs)]

    def state(self, instance_id: str) -> str:
        return h.ec2().describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0][
            "State"]["Name"]

    def requests(self) -> dict[str, str]:
        """Spot request id -> state (moto forgets a cancelled request; AWS shows it as cancelled)."""
        return {r["SpotInstanceRequestId"]: r["State"]
                for r in h.ec2().describe_spot_instance_requests()["SpotInstanceRequests"]}


@pytest.fixture
def env(aws_env, tmp_path: Path) -> Env:
    return Env(tmp_path)


SPOT_LINES = ["multitype-ec2 2026-12-01T10:00:05Z: run started", "METRIC epoch=1", "METRIC val_macro_f1=0.5",
              "METRIC epoch=2", "METRIC val_macro_f1=0.75 ", "multitype-ec2 2026-12-01T10:09:00Z: finished"]


def test_status_shows_state_spot_request_uptime_cost_and_latest_metrics(env: Env, cli) -> None:
    h.put_logs(SPOT_RUN, SPOT_LINES)
    h.put_logs(SPOT_RUN + "-other", ["METRIC val_macro_f1=0.1", "METRIC other=1"])  # a longer name: not this run
    result = cli(*env.args("status", "--json"))  # no target: the newest run launched from this root
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["instance_id"] == env.spot and info["run_id"] == SPOT_RUN and info["state"] == "running"
    assert info["spot_request"]["id"] == env.request and info["spot_request"]["type"] == "persistent"
    assert info["spot_request"]["state"] == "active" and info["market"] == "spot persistent"
    assert info["metrics"] == {"epoch": 2.0, "val_macro_f1": 0.75}
    from multitype.cloud.prices import load_catalog

    price = load_catalog().quote("g5.xlarge", spot=True).usd_hour
    assert info["price_usd_hour"] == price and "spot" in info["price_basis"]
    assert 0 <= info["uptime_seconds"] < 600
    assert info["cost_usd"] == round(info["uptime_seconds"] / 3600 * price, 4)
    assert info["root"] == "s3://bucket/proj"

    table = cli(*env.args("status", env.spot))
    assert table.exit_code == 0, table.stderr
    for text in ("spot request", f"{env.request} persistent, active", "cost so far", "metric val_macro_f1",
                 "0.75", "uptime"):
        assert text in table.stdout, text


def test_status_by_run_tag_on_demand_without_metrics(env: Env, cli) -> None:
    result = cli(*env.args("status", DEMAND_RUN, "--json"))  # no record: found by its multitype:run tag
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["instance_id"] == env.demand and info["spot_request"] is None and info["market"] == "on-demand"
    assert info["metrics"] == {} and info["price_usd_hour"] == 1.006


def test_status_of_unknown_instance_or_run(env: Env, cli) -> None:
    for target, message in (("i-0123456789abcdef0", "error: no instance i-0123456789abcdef0 in us-east-1"),
                            ("multitype-nope-20261201-000000", "error: no instance or run "
                                                               "'multitype-nope-20261201-000000'")):
        result = cli(*env.args("status", target))
        assert result.exit_code == 2 and result.stderr.strip().startswith(message), result.stderr


def test_list_shows_every_instance_of_this_project(env: Env, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the table's full ids
    result = cli(*env.args("list", "--json"))
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert sorted(r["instance_id"] for r in rows) == sorted([env.spot, env.demand])
    assert {r["instance_id"]: r["run_id"] for r in rows} == {env.spot: SPOT_RUN, env.demand: DEMAND_RUN}
    every = json.loads(cli(*env.args("list", "--all", "--json")).stdout)
    assert sorted(r["instance_id"] for r in every) == sorted([env.spot, env.demand, env.gone])
    table = cli(*env.args("list"))
    assert env.spot in table.stdout and env.demand in table.stdout and env.other not in table.stdout
    assert "2 instance(s) of bbc-news still running" in table.stderr


def test_logs_reads_the_run_stream(env: Env, cli) -> None:
    h.put_logs(SPOT_RUN, SPOT_LINES)
    result = cli(*env.args("logs", SPOT_RUN))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == SPOT_LINES  # as they came, in order
    empty = cli(*env.args("logs", env.demand))
    assert empty.exit_code == 0 and empty.stdout == ""
    assert f"no log lines yet for run {DEMAND_RUN} in /multitype/ec2" in empty.stderr


def test_logs_follow_is_bounded(env: Env, cli) -> None:
    h.put_logs(SPOT_RUN, SPOT_LINES)
    started = time.monotonic()
    result = cli(*env.args("logs", SPOT_RUN, "--follow", "--poll-seconds", "0.1", "--max-seconds", "0.3"))
    assert time.monotonic() - started < 10
    assert result.exit_code == 2 and len(result.stdout.splitlines()) == len(SPOT_LINES)  # printed once each
    assert "error: stopped following run multitype-minilm-20261201-100000 after 0 s" in result.stderr
    h.ec2().terminate_instances(InstanceIds=[env.spot])  # a terminated instance: read once more and stop
    done = cli(*env.args("logs", SPOT_RUN, "--follow", "--poll-seconds", "0.1"))
    assert done.exit_code == 0 and len(done.stdout.splitlines()) == len(SPOT_LINES)


@pytest.fixture
def calls(env: Env):
    """The EC2 operations terminate sends, in order (on the client it uses)."""
    sent: list[str] = []
    client = aws.client("ec2", AwsConfig(region=h.REGION), max_attempts=1)

    def record(model: Any, **_: Any) -> None:
        sent.append(model.name)

    client.meta.events.register("before-call.ec2", record, unique_id="t-calls")
    yield sent
    client.meta.events.unregister("before-call.ec2", unique_id="t-calls")


def test_terminate_asks_first(env: Env, cli, calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    declined = cli(*env.args("terminate", SPOT_RUN))
    assert declined.exit_code == 1 and f"not terminated: {env.spot}" in declined.stderr
    assert f"terminate {env.spot} (run {SPOT_RUN}, g5.xlarge, running" in declined.stderr
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no answer at all: never a yes
    closed = cli(*env.args("terminate", SPOT_RUN))
    assert closed.exit_code == 2
    assert closed.stderr.strip().splitlines()[-1] == f"error: terminate {env.spot} needs a 'y' answer or --yes"
    assert calls == [] and env.state(env.spot) == "running" and env.requests() == {env.request: "active"}

    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    agreed = cli(*env.args("terminate", env.demand))
    assert agreed.exit_code == 0, agreed.stderr
    assert calls == ["TerminateInstances"] and env.state(env.demand) in ("shutting-down", "terminated")


def test_terminate_yes_cancels_the_spot_request_first(env: Env, cli, calls: list[str]) -> None:
    result = cli(*env.args("terminate", SPOT_RUN, "--yes"))
    assert result.exit_code == 0, result.stderr
    assert calls == ["CancelSpotInstanceRequests", "TerminateInstances"]
    assert env.request not in env.requests()
    assert env.state(env.spot) in ("shutting-down", "terminated")
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"cancelled spot request {env.request} (persistent), so no new instance starts"
    assert lines[1].startswith(f"terminating {env.spot} (was running, now ")
    assert env.state(env.demand) == "running"


def test_uptime_of_a_stopped_instance_and_metric_parsing() -> None:
    launched = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)
    stopped = {"LaunchTime": launched, "State": {"Name": "stopped"},
               "StateTransitionReason": "User initiated (2026-12-01 10:30:00 GMT)"}
    assert instances.uptime_seconds(stopped) == 1800.0
    running = {"LaunchTime": launched, "State": {"Name": "running"}}
    assert instances.uptime_seconds(running, now=launched + dt.timedelta(hours=2)) == 7200.0
    assert instances.uptime_seconds({"LaunchTime": launched, "State": {"Name": "terminated"}}) is None
    assert instances.parse_metrics(["x METRIC a=1 METRIC b=nan", "METRIC a=2.5", "METRIC c=text"]) == \
        {"a": 2.5, "b": pytest.approx(float("nan"), nan_ok=True), "c": "text"}
