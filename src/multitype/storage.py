"""The one module that knows a local root from an S3 root.

Every artifact read or write in multitype goes through a :class:`Storage` bound
to a root (a folder or ``s3://bucket/prefix``). Paths given to it are relative
keys such as ``data/processed/train_4class.csv``; keys that would escape the
root (``..``, absolute paths) are refused. Writes are atomic: locally a
temporary file is renamed into place, in S3 an object is uploaded whole, so a
reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import fsspec

from multitype.errors import StorageError

COMPLETE_MARKER = "_COMPLETE"


def is_remote(url: str) -> bool:
    """True for ``scheme://`` URLs other than ``file://``."""
    return "://" in url and not url.startswith("file://")


def check_key(key: str) -> str:
    """Normalise a relative key and refuse one that leaves the root."""
    if key in ("", "."):
        return ""
    raw = key.replace("\\", "/")
    if raw.startswith("/") or "://" in raw or (len(raw) > 1 and raw[1] == ":"):
        raise StorageError(f"path '{key}' must be relative to the root (no absolute paths or URLs)")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StorageError(f"path '{key}' contains '..'; keys must stay inside the root")
    return "/".join(parts)


def storage_options(url: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """fsspec options for ``url``: the S3 endpoint from config or ``AWS_ENDPOINT_URL``."""
    if not url.startswith("s3://"):
        return {}
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    opts: dict[str, Any] = {}
    if endpoint:
        opts["endpoint_url"] = endpoint
    return opts


class Storage:
    """Reads and writes relative keys under one root, locally or in S3.

    Parameters
    ----------
    root : str
        A local folder or an ``s3://bucket/prefix`` URL.
    endpoint_url : str, optional
        S3-compatible endpoint (``storage.endpoint_url`` in ``project.yaml``).
    """

    def __init__(self, root: str, endpoint_url: str | None = None) -> None:
        self.root = root.rstrip("/") or "/"
        self.remote = is_remote(self.root)
        self.endpoint_url = endpoint_url
        if not self.remote:
            local = Path(self.root.removeprefix("file://")).expanduser()
            if local.exists() and not local.is_dir():
                raise StorageError(f"root '{root}' is a file; --root must be a folder or an s3:// URL")
            self.fs = fsspec.filesystem("file")
            self.base = str(local.resolve())
        else:
            self.fs, self.base = self._remote_fs(self.root, endpoint_url)

    @staticmethod
    def _remote_fs(url: str, endpoint_url: str | None) -> tuple[Any, str]:
        try:
            fs, base = fsspec.core.url_to_fs(url, **storage_options(url, endpoint_url))
        except (ImportError, ValueError) as exc:
            raise StorageError(f"root '{url}' cannot be used: {exc}") from None
        return fs, base.rstrip("/")

    # -- paths -----------------------------------------------------------------
    def path(self, key: str = "") -> str:
        """The filesystem path (for ``self.fs``) of a relative key."""
        key = check_key(key)
        return f"{self.base}/{key}" if key else self.base

    def url(self, key: str = "") -> str:
        """The user-visible location of a key (shown in messages and manifests)."""
        key = check_key(key)
        return f"{self.root}/{key}" if key else self.root

    def local_path(self, key: str = "") -> Path:
        """The local path of a key; only for local roots."""
        if self.remote:
            raise StorageError(f"{self.url(key)} is not on the local disk")
        return Path(self.path(key))

    # -- queries ---------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def isdir(self, key: str) -> bool:
        return bool(self.fs.isdir(self.path(key)))

    def listdir(self, key: str = "") -> list[str]:
        """Names (not paths) directly under ``key``; empty if it does not exist."""
        path = self.path(key)
        if not self.fs.exists(path):
            return []
        self.fs.invalidate_cache(path)
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(path, detail=False))

    def walk_files(self, key: str = "") -> dict[str, dict[str, Any]]:
        """Every file under ``key``: relative key -> fsspec info (size, mtime/ETag...)."""
        path = self.path(key)
        if not self.fs.exists(path):
            return {}
        found = self.fs.find(path, detail=True)
        base = self.path("").rstrip("/") + "/"
        return {p[len(base):] if p.startswith(base) else p: info for p, info in found.items()}

    # -- reads -----------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            raise StorageError(f"{self.url(key)} not found") from None

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def read_json(self, key: str) -> Any:
        try:
            return json.loads(self.read_text(key))
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.url(key)} line {exc.lineno}: not valid JSON ({exc.msg})") from None

    # -- writes (atomic) -------------------------------------------------------
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write a whole file atomically (temp + rename locally, one PUT in S3)."""
        path = self.path(key)
        if self.remote:
            self.fs.pipe_file(path, data)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def write_json(self, key: str, obj: Any) -> None:
        self.write_text(key, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")

    def put_file(self, local: str | os.PathLike[str], key: str) -> None:
        """Copy one local file to ``key`` atomically."""
        if self.remote:
            self.fs.put_file(str(local), self.path(key))
            return
        self.write_bytes(key, Path(local).read_bytes())

    def put_dir(self, local_dir: str | os.PathLike[str], key: str, marker: bool = True) -> None:
        """Publish a finished local folder as ``key``, replacing what was there.

        Locally the folder is copied beside the target and renamed into place. In
        S3 the files are uploaded first and a ``_COMPLETE`` marker last, so a
        reader that checks the marker never takes a partial upload as complete.
        """
        local_dir = Path(local_dir)
        if self.remote:
            dest = self.path(key)
            if self.fs.exists(dest):
                self.fs.rm(dest, recursive=True)
            for file in sorted(p for p in local_dir.rglob("*") if p.is_file()):
                self.fs.put_file(str(file), f"{dest}/{file.relative_to(local_dir).as_posix()}")
            if marker:
                self.fs.pipe_file(f"{dest}/{COMPLETE_MARKER}", b"")
            return
        target = Path(self.path(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
        try:
            shutil.copytree(local_dir, staging, dirs_exist_ok=True)
            if marker:
                (staging / COMPLETE_MARKER).touch()
            self._swap_into_place(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @staticmethod
    def _swap_into_place(staging: Path, target: Path) -> None:
        """Rename ``staging`` to ``target``; the old folder is removed only afterwards."""
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def is_complete(self, key: str) -> bool:
        """True when a folder written by :meth:`put_dir` has its completion marker."""
        return self.exists(f"{key}/{COMPLETE_MARKER}")

    def get_dir(self, key: str, local_dir: str | os.PathLike[str]) -> Path:
        """Copy the folder ``key`` to ``local_dir`` and return it."""
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        for rel in self.walk_files(key):
            sub = rel[len(check_key(key)) + 1:]
            dest = local_dir / sub
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(self.path(rel), str(dest))
        return local_dir

    @contextlib.contextmanager
    def local_dir(self, key: str) -> Iterator[Path]:
        """A local folder with the contents of ``key`` (a temp copy for S3 roots)."""
        if not self.remote:
            path = self.local_path(key)
            if not path.is_dir():
                raise StorageError(f"{self.url(key)} not found")
            yield path
            return
        if not self.isdir(key):
            raise StorageError(f"{self.url(key)} not found")
        with tempfile.TemporaryDirectory(prefix="multitype-") as tmp:
            yield self.get_dir(key, tmp)

    def rm(self, key: str, recursive: bool = False) -> None:
        path = self.path(key)
        if not self.fs.exists(path):
            return
        if self.remote:
            self.fs.rm(path, recursive=recursive)
        elif recursive and Path(path).is_dir():
            shutil.rmtree(path)
        else:
            os.unlink(path)


def open_storage(root: str, endpoint_url: str | None = None) -> Storage:
    """A :class:`Storage` for ``root``."""
    return Storage(root, endpoint_url=endpoint_url)
