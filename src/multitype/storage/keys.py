"""Keys and URLs: what a relative key may be, and where a downloaded key may land.

Two kinds of keys meet here. Keys the program builds (``data/raw/raw_data.json``)
go through :func:`check_key`, which normalises them and refuses any that would
leave the root. Keys read from a bucket are data from outside: S3 stores
``m//tmp/x``, ``m/a/../../x`` or ``m/a\\x`` as distinct objects, so before any
of them becomes a local path :func:`local_target` checks it segment by segment
and refuses what is not a plain relative path, before anything is created.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from multitype.errors import StorageError

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def is_remote(url: str) -> bool:
    """True for ``scheme://`` URLs other than ``file://``."""
    return "://" in url and not url.startswith("file://")


def check_key(key: str) -> str:
    """Normalise a relative key built by the program and refuse one that leaves the root.

    ``./a//b/`` becomes ``a/b``; absolute paths, URLs, drive letters and ``..``
    are refused.

    Raises
    ------
    StorageError
        The key is absolute, a URL, or contains ``..``.
    """
    if key in ("", "."):
        return ""
    raw = key.replace("\\", "/")
    if raw.startswith("/") or "://" in raw or _DRIVE_RE.match(raw):
        raise StorageError(f"path '{key}' must be relative to the root (no absolute paths or URLs)")
    if "\x00" in raw:
        raise StorageError(f"path {key!r} contains a NUL character")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StorageError(f"path '{key}' contains '..'; keys must stay inside the root")
    return "/".join(parts)


def unsafe_reason(rel: str) -> str | None:
    """Why the relative key ``rel`` cannot name a file under a local folder, or ``None`` if it can.

    Only plain relative paths pass: segments separated by single ``/``, none
    of them empty, ``.`` or ``..``, with no backslash, NUL or drive letter.
    """
    if not rel:
        return "the key is empty"
    if "\x00" in rel:
        return "it contains a NUL character"
    if "\\" in rel:
        return "it contains a backslash"
    if rel.startswith("/"):
        return "it is absolute (starts with '/', or has an empty segment '//')"
    if _DRIVE_RE.match(rel):
        return "it starts with a drive letter"
    parts = rel.split("/")
    if "" in parts:
        return "it has an empty segment ('//')"
    if "." in parts or ".." in parts:
        return "it has a '.' or '..' segment"
    return None


def local_target(dest: str | os.PathLike[str], rel: str, source: str = "") -> Path:
    """The local path of the downloaded key ``rel`` under ``dest``, refusing any that leaves it.

    Checks the key itself (see :func:`unsafe_reason`) and then that the joined,
    normalised path is inside ``dest``; creates nothing.

    Parameters
    ----------
    dest : path
        The destination folder.
    rel : str
        The object key relative to the folder being downloaded, exactly as listed.
    source : str, optional
        The object's URL, for the message.

    Raises
    ------
    StorageError
        One line naming the key and why it was refused.
    """
    reason = unsafe_reason(rel)
    base = os.path.abspath(dest)
    target = os.path.normpath(os.path.join(base, rel)) if reason is None else ""
    if reason is None and os.path.commonpath([base, target]) != base:
        reason = "it resolves outside the destination"
    if reason is not None:
        where = f" ({source!r})" if source else ""
        raise StorageError(f"refusing to download the object key {rel!r}{where} into {base}: {reason}; "
                           "keys must be plain relative paths: remove or rename that object, and check who "
                           "else can write to the bucket")
    return Path(target)


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``, checking the bucket name and the prefix.

    Raises
    ------
    StorageError
        No bucket, an invalid bucket name (S3 rules: 3-63 characters of
        lowercase letters, digits, ``-`` and ``.``), or ``..`` in the prefix.
    """
    if not url.startswith("s3://"):
        raise StorageError(f"'{url}' is not an s3:// URL; use s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise StorageError(f"'{url}' has no bucket; use s3://bucket/prefix")
    if not _BUCKET_RE.match(bucket) or ".." in bucket or ".-" in bucket or "-." in bucket or _is_ip(bucket):
        raise StorageError(
            f"'{bucket}' in '{url}' is not a valid S3 bucket name; use 3-63 lowercase letters, digits, "
            "'-' or '.', starting and ending with a letter or digit")
    if prefix:
        try:
            prefix = check_key(prefix)
        except StorageError:
            raise StorageError(f"'{url}': the prefix must stay inside the bucket (no '..')") from None
    return bucket, prefix


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
