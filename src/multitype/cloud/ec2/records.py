"""What this project launched on EC2: one JSON record per run under ``runs/ec2/<run-id>.json`` in the project's root.

A record holds the run id, the instance id, region, instance type, market
(spot one-time, spot persistent or on-demand), the spot request id where EC2
returned one, the AMI, the S3 root, the request sent (user data included: it
holds no credentials) and ``launched_at``. Commands that take an optional
INSTANCE or RUN default to the newest record.
"""

from __future__ import annotations

from typing import Any

from multitype.cloud.records import LaunchRecords
from multitype.storage import Storage

RUNS = LaunchRecords("ec2", "run_id", "EC2 run", "name the instance or run (see 'multitype ec2 list')")
FOLDER = RUNS.folder


def save(storage: Storage, run_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """Write the record of ``run_id`` (adds ``run_id`` and ``launched_at`` when missing); returns it."""
    return RUNS.save(storage, run_id, record)


def list_runs(storage: Storage) -> list[dict[str, Any]]:
    """Every EC2 record in this root, oldest first."""
    return RUNS.all(storage)


def find(storage: Storage, target: str | None) -> dict[str, Any] | None:
    """The record of a run id or an instance id (None: the newest); None if this root has none for it.

    Raises
    ------
    AwsError
        ``target`` is None and nothing was launched from this root.
    """
    if target is None:
        return RUNS.newest(storage)
    for record in reversed(RUNS.all(storage)):
        if target in (record.get("run_id"), record.get("instance_id")):
            return record
    return None
