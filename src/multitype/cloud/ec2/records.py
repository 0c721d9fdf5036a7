"""What this project launched on EC2: one JSON record per run under ``runs/ec2/<run-id>.json`` in the project's root.

A record holds the run id, the instance id, region, instance type, market
(spot one-time, spot persistent or on-demand), the spot request id where EC2
returned one, the AMI, the S3 root, the request sent (user data included: it
holds no credentials) and ``launched_at``. Commands that take an optional
INSTANCE or RUN default to the newest record.
"""

from __future__ import annotations

import time
from typing import Any

from multitype import layout
from multitype.errors import AwsError
from multitype.storage import Storage

FOLDER = f"{layout.RUNS}/ec2"


def record_key(run_id: str) -> str:
    return f"{FOLDER}/{run_id}.json"


def save(storage: Storage, run_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """Write the record of ``run_id`` (adds ``run_id`` and ``launched_at`` when missing); returns it."""
    full = {"run_id": run_id, "launched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
    storage.write_json(record_key(run_id), full)
    return full


def list_runs(storage: Storage) -> list[dict[str, Any]]:
    """Every EC2 record in this root, oldest first."""
    if not storage.exists(FOLDER):
        return []
    records = [storage.read_json(f"{FOLDER}/{name}") for name in storage.listdir(FOLDER) if name.endswith(".json")]
    return sorted((r for r in records if isinstance(r, dict) and r.get("run_id")),
                  key=lambda r: (str(r.get("launched_at", "")), str(r["run_id"])))


def find(storage: Storage, target: str | None) -> dict[str, Any] | None:
    """The record of a run id or an instance id (None: the newest); None if this root has none for it.

    Raises
    ------
    AwsError
        ``target`` is None and nothing was launched from this root.
    """
    runs = list_runs(storage)
    if target is None:
        if not runs:
            raise AwsError(f"no EC2 run was launched from {storage.url(FOLDER)}; name the instance or run "
                           "(see 'multitype ec2 list')")
        return runs[-1]
    for record in reversed(runs):
        if target in (record.get("run_id"), record.get("instance_id")):
            return record
    return None
