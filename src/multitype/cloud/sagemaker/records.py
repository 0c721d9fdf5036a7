"""What this project launched: one JSON record per training job under ``runs/sagemaker/``.

``launch`` writes ``runs/sagemaker/<job-name>.json`` in the project's root (the job
itself writes ``runs/sagemaker/<job-name>/result.json`` in its results root); commands
that take an optional JOB (``status``, ``logs``, ``stop``, ``collect``) default to
the newest of these. Job names end in a UTC timestamp, but the record's
``launched_at`` decides which is newest.
"""

from __future__ import annotations

import time
from typing import Any

from multitype import layout
from multitype.errors import AwsError
from multitype.storage import Storage

FOLDER = f"{layout.RUNS}/sagemaker"


def record_key(job_name: str) -> str:
    return f"{FOLDER}/{job_name}.json"


def save_job(storage: Storage, job_name: str, record: dict[str, Any]) -> dict[str, Any]:
    """Write the record of ``job_name`` (adds ``job_name`` and ``launched_at`` when missing); returns it."""
    full = {"job_name": job_name, "launched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
    storage.write_json(record_key(job_name), full)
    return full


def load_job(storage: Storage, job_name: str) -> dict[str, Any] | None:
    """The record of ``job_name``, or None if this root did not launch it."""
    key = record_key(job_name)
    return storage.read_json(key) if storage.exists(key) else None


def list_jobs(storage: Storage) -> list[dict[str, Any]]:
    """Every record in this root, oldest first."""
    records = [storage.read_json(f"{FOLDER}/{name}") for name in storage.listdir(FOLDER)
               if name.endswith(".json")]  # names directly under it: not runs/sagemaker/<job>/result.json
    return sorted((r for r in records if isinstance(r, dict) and r.get("job_name")),
                  key=lambda r: (str(r.get("launched_at", "")), str(r["job_name"])))


def latest_job(storage: Storage) -> str:
    """The name of the newest job launched from this root.

    Raises
    ------
    AwsError
        None was launched from here (name the job instead).
    """
    records = list_jobs(storage)
    if not records:
        raise AwsError(f"no SageMaker job was launched from {storage.url(FOLDER)}; name the job "
                       "(see 'multitype sagemaker list')")
    return str(records[-1]["job_name"])
