"""S3 lifecycle rules: read and replace a bucket's rules, and the archive rule of ``sync archive``.

The archive rule moves old checkpoints and raw data of a root to a cheaper
storage class after some days. A bucket's other rules are always kept: the new
configuration is the old one with multitype's rules for the same prefix
replaced (:func:`merge_rules`), since ``PutBucketLifecycleConfiguration``
replaces the whole configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from multitype import layout
from multitype.errors import StorageError, UserError
from multitype.storage import Storage, s3_endpoint, s3_error, split_s3_url
from multitype.storage.s3 import error_code

STORAGE_CLASSES = ("GLACIER_IR", "GLACIER", "DEEP_ARCHIVE", "STANDARD_IA")
ARCHIVED_FOLDERS = (layout.CHECKPOINTS, "data/raw")
_MIN_DAYS = {"STANDARD_IA": 30}  # S3 refuses earlier transitions to STANDARD_IA


def _s3_root(storage: Storage, what: str) -> None:
    if not storage.s3:
        raise StorageError(f"{what} needs an s3:// root, got '{storage.root}'")
    storage.check()


def _mapped(exc: Exception, storage: Storage) -> Exception:
    return s3_error(exc, storage.root, s3_endpoint(storage.endpoint_url)) or exc


def get_rules(storage: Storage) -> list[dict[str, Any]]:
    """The lifecycle rules of the bucket of ``storage`` (empty when it has none).

    Raises
    ------
    StorageError
        Not an S3 root, or S3 refused (one line, as for any S3 failure).
    """
    _s3_root(storage, "a lifecycle rule")
    try:
        out = storage.client.get_bucket_lifecycle_configuration(Bucket=storage.bucket)
    except Exception as exc:
        if error_code(exc) == "NoSuchLifecycleConfiguration":
            return []
        raise _mapped(exc, storage) from exc
    return list(out.get("Rules", []))


def put_rules(storage: Storage, rules: list[dict[str, Any]]) -> None:
    """Replace the lifecycle configuration of the bucket of ``storage`` with ``rules``."""
    _s3_root(storage, "a lifecycle rule")
    try:
        storage.client.put_bucket_lifecycle_configuration(Bucket=storage.bucket,
                                                          LifecycleConfiguration={"Rules": rules})
    except Exception as exc:
        raise _mapped(exc, storage) from exc


@dataclass
class ArchivePlan:
    """The rules ``sync archive`` adds, and the bucket's whole configuration after merging."""

    bucket: str
    rules: list[dict[str, Any]]
    merged: list[dict[str, Any]]
    applied: bool = False


def parse_days(value: str | int) -> int:
    """``"30d"``, ``"30"`` or ``30`` -> 30 (whole days, at least 1)."""
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)\s*d?", text)
    if not match or int(match.group(1)) < 1:
        raise UserError(f"--older-than must be a whole number of days such as 30d, got {value!r}")
    return int(match.group(1))


def archive_rules(remote: str, days: int, storage_class: str) -> list[dict[str, Any]]:
    """One lifecycle rule per archived folder of the root ``remote`` (``s3://bucket/prefix``)."""
    if storage_class not in STORAGE_CLASSES:
        raise UserError(f"--storage-class must be one of {', '.join(STORAGE_CLASSES)}, got {storage_class!r}")
    if days < _MIN_DAYS.get(storage_class, 1):
        raise UserError(f"--older-than {days}d: S3 moves objects to {storage_class} only after "
                        f"{_MIN_DAYS[storage_class]} days or more")
    _, prefix = split_s3_url(remote)
    rules = []
    for folder in ARCHIVED_FOLDERS:
        key_prefix = f"{prefix}/{folder}/" if prefix else f"{folder}/"
        rules.append({
            "ID": f"multitype-archive:{key_prefix}"[:255],
            "Filter": {"Prefix": key_prefix},
            "Status": "Enabled",
            "Transitions": [{"Days": days, "StorageClass": storage_class}],
        })
    return rules


def merge_rules(existing: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``existing`` with rules of the same ID replaced by ``new`` ones; the rest kept, in order."""
    ids = {rule["ID"] for rule in new}
    return [rule for rule in existing if rule.get("ID") not in ids] + new


def archive(remote: str, older_than: str | int = 30, storage_class: str = "GLACIER_IR", apply: bool = False,
            endpoint_url: str | None = None, profile: str | None = None) -> ArchivePlan:
    """Plan (and with ``apply``, put) lifecycle rules archiving old checkpoints and raw data.

    The bucket's existing rules are read and kept; a rule of an earlier
    ``sync archive`` for the same prefix is replaced.
    """
    if not remote:
        raise UserError("no remote to archive; pass --remote s3://bucket/prefix or set storage.remote in project.yaml")
    rules = archive_rules(remote, parse_days(older_than), storage_class)
    storage = Storage(remote, endpoint_url=endpoint_url, profile=profile)
    merged = merge_rules(get_rules(storage), rules)
    plan = ArchivePlan(storage.bucket, rules, merged)
    if apply:
        put_rules(storage, merged)
        plan.applied = True
    return plan
