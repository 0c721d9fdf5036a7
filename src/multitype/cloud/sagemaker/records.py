"""What this project launched: one JSON record per training job under ``runs/sagemaker/``.

``launch`` writes ``runs/sagemaker/<job-name>.json`` in the project's root (the job
itself writes ``runs/sagemaker/<job-name>/result.json`` in its results root); commands
that take an optional JOB (``status``, ``logs``, ``stop``, ``collect``) default to
the newest of these. Job names end in a UTC timestamp, but the record's
``launched_at`` decides which is newest.
"""

from __future__ import annotations

from typing import Any

from multitype.cloud.records import LaunchRecords
from multitype.storage import Storage

JOBS = LaunchRecords("sagemaker", "job_name", "SageMaker job", "name the job (see 'multitype sagemaker list')")
FOLDER = JOBS.folder
# `sagemaker prepare` (processing jobs) keeps its own folder, so `sagemaker status` without a JOB stays on training
PROCESSING_JOBS = LaunchRecords("sagemaker-processing", "job_name", "SageMaker processing job",
                                "name the job (see 'aws sagemaker list-processing-jobs')")


def save_job(storage: Storage, job_name: str, record: dict[str, Any]) -> dict[str, Any]:
    """Write the record of ``job_name`` (adds ``job_name`` and ``launched_at`` when missing); returns it."""
    return JOBS.save(storage, job_name, record)


def load_job(storage: Storage, job_name: str) -> dict[str, Any] | None:
    """The record of ``job_name``, or None if this root did not launch it."""
    return JOBS.load(storage, job_name)


def list_jobs(storage: Storage) -> list[dict[str, Any]]:
    """Every record in this root, oldest first."""
    return JOBS.all(storage)


def latest_job(storage: Storage) -> str:
    """The name of the newest job launched from this root (AwsError when none was: name the job instead)."""
    return str(JOBS.newest(storage)["job_name"])
