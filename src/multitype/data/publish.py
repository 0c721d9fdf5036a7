"""Publishing a set of files so that readers see the old set or the new one, never a mix.

``prepare`` replaces several files that belong together (the splits, ``labels.json``,
``audit.json``, the raw copy). S3 has no rename and no multi-object transaction, and
a run can die between any two writes (a spot reclaim, a lost connection), so the
files keep their layout names (DESIGN.md section 1) and a commit record decides
which set is current:

1. finish or clean what an earlier, interrupted run left (:func:`recover`);
2. write the new files under ``data/processed/.pending/<run-id>/`` (staging);
3. write the commit record ``data/processed/.pending/commit.json``, naming each
   staged file and its sha256: from this single write on, the new set is current;
4. copy each file to its layout name;
5. delete the commit record: the layout names now hold the new set;
6. delete the staging copies.

A reader (:func:`read_current`) takes a file from the staging copy while a commit
record exists and from its layout name otherwise, so a crash before step 3
leaves the old set and a crash after it the new one. The next run rolls a committed
set forward and removes leftovers. The same steps run on a local root (each write
is itself a rename there) and in S3, through :class:`~multitype.storage.Storage`'s
public methods only.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from multitype import layout
from multitype.errors import DataError, StorageError
from multitype.storage import Storage

PENDING = layout.PROCESSED_PENDING
COMMIT = f"{PENDING}/commit.json"
FORMAT = "multitype-fileset-1"
# a reader that finds the staging copy gone (the writer finished meanwhile) looks again this often
_ATTEMPTS = 3


def staged_key(run_id: str, key: str) -> str:
    """Where ``key`` of run ``run_id`` is staged before its commit."""
    return f"{PENDING}/{run_id}/{key}"


def committed(storage: Storage) -> dict[str, Any] | None:
    """The commit record of a set that is current but not yet copied to its layout names, or None.

    Raises
    ------
    DataError
        A record that is not one (it is written in one piece, so this means
        someone edited it); rerunning ``prepare`` rewrites the set.
    """
    if not _has_record(storage):
        return None
    try:
        record = storage.read_json(COMMIT)
    except StorageError as exc:
        if not _has_record(storage):  # finished and removed between the two calls
            return None
        raise DataError(f"{exc}; rerun 'multitype prepare'") from None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(files, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
            and str(entry.get("staged", "")).startswith(f"{PENDING}/") for entry in files.values()):
        raise DataError(f"{storage.url(COMMIT)} is not a commit record of multitype prepare; "
                        "rerun 'multitype prepare'")
    return record


def _has_record(storage: Storage) -> bool:
    # a fresh listing, not exists(): a cached listing in this process may predate the writer's last step
    return any(key in (COMMIT, COMMIT.removeprefix(f"{PENDING}/")) for key in storage.walk_files(PENDING))


def _checked(storage: Storage, entry: Mapping[str, str], key: str) -> bytes:
    data = storage.read_bytes(entry["staged"])
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise DataError(f"{storage.url(entry['staged'])} (the new {key}) does not match its sha256 in "
                        f"{storage.url(COMMIT)}; rerun 'multitype prepare'")
    return data


def read_current(storage: Storage, key: str) -> bytes | None:
    """The bytes of ``key`` in the current set (a committed staging copy first), or None if absent.

    Parameters
    ----------
    storage : Storage
        The artifact root.
    key : str
        A layout key, such as ``data/processed/labels.json``.
    """
    for _ in range(_ATTEMPTS):
        record = committed(storage)
        entry = record["files"].get(key) if record else None
        if entry is None:
            return storage.read_bytes(key) if storage.exists(key) else None
        try:
            return _checked(storage, entry, key)
        except StorageError:
            continue  # the writer rolled forward and removed the staging copy: the layout name holds it now
    raise DataError(f"{storage.url(COMMIT)} names {storage.url(entry['staged'])}, which is missing; "
                    "rerun 'multitype prepare'")


def recover(storage: Storage) -> list[str]:
    """Finish an interrupted publish (copy a committed set to its layout names) and remove leftovers.

    Returns
    -------
    list of str
        The layout keys that were rolled forward (empty when nothing was committed).
    """
    record = committed(storage)
    rolled: list[str] = []
    if record is not None:
        for key, entry in record["files"].items():
            storage.write_bytes(key, _checked(storage, entry, key))
            rolled.append(key)
        storage.rm(COMMIT)
    storage.rm(PENDING, recursive=True)  # staging copies of this or of a run that died before its commit
    return rolled


def publish(storage: Storage, files: Mapping[str, bytes], run_id: str) -> None:
    """Replace ``files`` (layout key -> bytes) as one set: readers see all old or all new.

    Parameters
    ----------
    storage : Storage
        The artifact root (local or S3).
    files : mapping of str to bytes
        The new contents, by layout key.
    run_id : str
        Names the staging folder (one per run, so runs never share one).
    """
    recover(storage)
    entries: dict[str, dict[str, str]] = {}
    for key, data in files.items():
        staged = staged_key(run_id, key)
        storage.write_bytes(staged, data)
        entries[key] = {"staged": staged, "sha256": hashlib.sha256(data).hexdigest()}
    storage.write_json(COMMIT, {"format": FORMAT, "run_id": run_id, "files": entries})
    for key, data in files.items():
        storage.write_bytes(key, data)
    storage.rm(COMMIT)
    storage.rm(PENDING, recursive=True)
