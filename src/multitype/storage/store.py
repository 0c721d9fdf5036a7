""":class:`Storage`: relative keys under one root, a local folder or ``s3://bucket/prefix``.

The route through a call: the key is checked (:mod:`.keys`), the S3 root is
probed once (:mod:`.s3`), the operation runs (on the local disk, through a
botocore client and s3transfer for S3 (:mod:`.transfer`), through fsspec for
other URLs), and an S3 failure becomes a one-line :class:`StorageError`.

Writes are atomic: locally a temporary file is renamed into place, in S3 an
object is uploaded whole. Folder downloads check every listed key before
anything is created (:func:`.keys.local_target`) and fetch exactly the keys
that were listed, several at a time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import io
import json
import mimetypes
import os
import posixpath
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from multitype.errors import StorageError
from multitype.storage import transfer
from multitype.storage.keys import check_key, is_remote, local_target, split_s3_url
from multitype.storage.s3 import error_code, is_missing, probe, s3_client, s3_endpoint, s3_error

COMPLETE_MARKER = "_COMPLETE"
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


def _umask() -> int:
    """The process umask; read from /proc on Linux, since setting it to read it races other threads."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_file(target: Path) -> str:
    """A temp file beside ``target`` with the mode a plain ``open()`` would give (mkstemp makes 0600)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return tmp


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


_F = TypeVar("_F", bound=Callable[..., Any])


def _s3_errors(method: _F) -> _F:
    """For remote roots: probe the root once, and turn S3 failures into StorageError."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self: "Storage", *args: Any, **kwargs: Any) -> Any:
        if not self.remote:
            return method(self, *args, **kwargs)
        self.check()
        try:
            return method(self, *args, **kwargs)
        except StorageError:
            raise
        except Exception as exc:
            try:
                key = signature.bind(self, *args, **kwargs).arguments.get("key", "")
                where = self.url(key if isinstance(key, str) else "")
            except (StorageError, TypeError):
                where = self.root
            mapped = s3_error(exc, where, s3_endpoint(self.endpoint_url))
            if mapped is None:
                raise
            raise mapped from exc

    return wrapper  # type: ignore[return-value]


class Storage:
    """Reads and writes relative keys under one root, locally or in S3.

    Parameters
    ----------
    root : str
        A local folder or an ``s3://bucket/prefix`` URL (other fsspec URLs work
        through fsspec).
    endpoint_url : str, optional
        S3-compatible endpoint (``storage.endpoint_url`` in ``project.yaml``).
    profile : str, optional
        AWS profile (``aws.profile``); default: the standard AWS sources.

    Attributes
    ----------
    remote : bool
        False for a local folder.
    root : str
        The normalised root (``s3://bucket/prefix`` without a trailing ``/``).
    bucket, prefix : str
        For ``s3://`` roots only.
    """

    def __init__(self, root: str, endpoint_url: str | None = None, profile: str | None = None) -> None:
        self.remote = is_remote(root)
        self.root = root if self.remote and root.endswith("://") else (root.rstrip("/") or "/")
        self.endpoint_url = endpoint_url
        self.profile = profile
        self._checked = False
        self._check_lock = threading.Lock()
        self._fs: Any = None
        self.s3 = False
        if not self.remote:
            local = Path(self.root.removeprefix("file://")).expanduser()
            if local.exists() and not local.is_dir():
                raise StorageError(f"root '{root}' is a file; --root must be a folder or an s3:// URL")
            import fsspec

            self._fs = fsspec.filesystem("file")
            self.base = str(local.resolve())
        elif self.root.startswith("s3://"):
            self.s3 = True
            self.bucket, self.prefix = split_s3_url(self.root)
            self.root = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
            self.base = f"{self.bucket}/{self.prefix}".rstrip("/")
        else:
            import fsspec

            try:
                self._fs, base = fsspec.core.url_to_fs(self.root, skip_instance_cache=True)
            except (ImportError, ValueError) as exc:
                raise StorageError(f"root '{root}' cannot be used: {exc}") from None
            self.base = base.rstrip("/")

    # -- S3 plumbing -------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The botocore S3 client of an ``s3://`` root (shared, thread-safe)."""
        return s3_client(self.endpoint_url, self.profile)

    @property
    def fs(self) -> Any:
        """The fsspec filesystem of a local or non-S3 root (``s3://`` roots use botocore and s3transfer)."""
        if self._fs is None:
            raise StorageError(f"{self.root} is served through botocore, not fsspec")
        return self._fs

    def _object(self, key: str, exact: bool = False) -> str:
        """The S3 object key of a relative key (``exact``: as listed, only checked that it stays inside)."""
        norm = check_key(key)
        rel = key if exact and key else norm
        return f"{self.prefix}/{rel}" if self.prefix and rel else (rel or self.prefix)

    def _listing_prefix(self, key: str) -> str:
        obj = self._object(key)
        return f"{obj}/" if obj else ""

    def _list(self, prefix: str, delimiter: str = "") -> Iterator[dict[str, Any]]:
        """Every page of ``ListObjectsV2`` under ``prefix``."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        yield from self.client.get_paginator("list_objects_v2").paginate(**kwargs)

    def _rel(self, obj: str) -> str:
        """The key relative to the root of a listed object key, exactly as listed."""
        return obj[len(self.prefix) + 1:] if self.prefix else obj

    def check(self) -> None:
        """Probe an S3 root once (list one key, short timeout); no-op for other roots.

        Raises
        ------
        StorageError
            Endpoint unreachable or silent, missing bucket, wrong or missing
            credentials. A denied listing is left to the operation itself,
            since prefix-scoped policies may allow reads without listing.
        """
        if not self.s3 or self._checked:
            return
        with self._check_lock:
            if self._checked:
                return
            probe(self.root, self.bucket, self.prefix, self.endpoint_url, self.profile)
            self._checked = True

    # -- paths -------------------------------------------------------------------
    def path(self, key: str = "") -> str:
        """The filesystem path of a relative key (``bucket/prefix/key`` for S3, as fsspec names it)."""
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

    # -- queries -----------------------------------------------------------------
    @_s3_errors
    def exists(self, key: str) -> bool:
        """True if ``key`` is a file or a folder."""
        if not self.s3:
            return bool(self.fs.exists(self.path(key)))
        obj = self._object(key)
        if obj and not obj.endswith("/"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=obj)
                return True
            except Exception as exc:
                if not is_missing(exc):
                    raise
        return self.isdir(key)

    @_s3_errors
    def isdir(self, key: str) -> bool:
        """True if there is at least one object under ``key/``."""
        if not self.s3:
            return bool(self.fs.isdir(self.path(key)))
        out = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._listing_prefix(key), MaxKeys=1)
        return bool(out.get("Contents") or out.get("CommonPrefixes"))

    @_s3_errors
    def listdir(self, key: str = "") -> list[str]:
        """Names (not paths) directly under ``key``; empty if it does not exist."""
        if not self.s3:
            path = self.path(key)
            self.fs.invalidate_cache(path)
            if not self.fs.exists(path):
                return []
            return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(path, detail=False))
        prefix = self._listing_prefix(key)
        names: set[str] = set()
        for page in self._list(prefix, delimiter="/"):
            names.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(o["Key"][len(prefix):] for o in page.get("Contents", []))
        names.discard("")
        return sorted(names)

    @_s3_errors
    def walk_files(self, key: str = "") -> dict[str, dict[str, Any]]:
        """Every file under ``key`` (or ``key`` itself if it is a file): relative key -> info.

        For S3 this is one paginated listing; keys are exactly as listed (not
        normalised) and the info holds ``size``, ``ETag`` and ``LastModified``.
        Folder placeholder objects (keys ending in ``/``) are left out.
        """
        if not self.s3:
            path = self.path(key)
            if self.remote:
                self.fs.invalidate_cache(path)
                try:
                    found = self.fs.find(path, detail=True)
                except FileNotFoundError:
                    return {}
            else:
                if not self.fs.exists(path):
                    return {}
                found = self.fs.find(path, detail=True)
            base = self.path("").rstrip("/") + "/"
            return {p[len(base):] if p.startswith(base) else p: info for p, info in found.items()
                    if info.get("type", "file") == "file"}
        obj = self._object(key)
        files: dict[str, dict[str, Any]] = {}
        for page in self._list(obj):  # without the '/': the key itself, if it is an object, comes too
            for item in page.get("Contents", []):
                name = item["Key"]
                if name.endswith("/") or not (not obj or name == obj or name.startswith(f"{obj}/")):
                    continue
                files[self._rel(name)] = {"name": f"{self.bucket}/{name}", "type": "file", "size": item["Size"],
                                          "ETag": item.get("ETag", ""), "LastModified": item.get("LastModified"),
                                          "StorageClass": item.get("StorageClass")}
        return files

    # -- reads -------------------------------------------------------------------
    @_s3_errors
    def read_bytes(self, key: str) -> bytes:
        """The whole content of ``key``."""
        try:
            if self.s3:
                return self.client.get_object(Bucket=self.bucket, Key=self._object(key))["Body"].read()
            return self.fs.cat_file(self.path(key))
        except Exception as exc:
            if not is_missing(exc):
                raise
        raise StorageError(f"{self.url(key)} not found")

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def read_json(self, key: str) -> Any:
        try:
            return json.loads(self.read_text(key))
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.url(key)} line {exc.lineno}: not valid JSON ({exc.msg})") from None

    @_s3_errors
    def read_many(self, keys: list[str]) -> dict[str, bytes]:
        """Several files at once (concurrent GETs on S3): key -> bytes."""
        if not self.s3:
            return {key: self.read_bytes(key) for key in keys}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=transfer.MULTIPART_CONCURRENCY, thread_name_prefix="s3-read") as pool:
            return dict(zip(keys, pool.map(self.read_bytes, keys)))

    @_s3_errors
    def get_file(self, key: str, local: str | os.PathLike[str], *, size: int | None = None,
                 etag: str | None = None) -> Path:
        """Copy ``key`` to the local file ``local`` atomically (temp + rename) and return it.

        ``size`` and ``etag`` from a listing (S3) save a HeadObject request and
        pin a ranged download to that version of the object.
        """
        target = Path(local)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not self.s3:
            tmp = _temp_file(target)
            try:
                try:
                    self.fs.get_file(self.path(key), tmp)
                except FileNotFoundError:
                    raise StorageError(f"{self.url(key)} not found") from None
                os.replace(tmp, target)
            except BaseException:
                _unlink(tmp)
                raise
            return target
        if etag and not etag.startswith('"'):
            etag = f'"{etag}"'
        self._download([(self._object(key), target, size, etag)])
        return target

    def _download(self, items: list[tuple[str, Path, int | None, str | None]]) -> None:
        """(object key, local target, size, ETag) -> files, several at a time, each via a temp file.

        Targets' folders must exist. On the first failure the rest is cancelled
        and the temp files are removed; targets already in place stay.
        """
        pending: dict[int, tuple[_TempTarget, str]] = {}

        def start(finished: Any) -> list[Any]:
            futures = []
            for obj, target, size, etag in items:
                temp = _TempTarget(target)
                future = transfer.download(self.client, self.bucket, obj, temp, size, etag, finished)
                pending[id(future)] = (temp, obj)
                futures.append(future)
            return futures

        def place(future: Any) -> None:
            temp, _ = pending.pop(id(future))
            temp.commit()

        def gone(future: Any, exc: BaseException) -> BaseException | None:
            if not is_missing(exc):
                return None
            obj = pending[id(future)][1]
            return StorageError(f"s3://{self.bucket}/{obj} not found (listed, then gone: deleted while it was "
                                "being downloaded?); check the key, or try again")

        try:
            transfer.wait_all(start, place, gone)
        finally:
            for temp, _ in pending.values():
                temp.discard()

    # -- writes (atomic) ---------------------------------------------------------
    @_s3_errors
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write a whole file atomically (temp + rename locally, one whole object in S3)."""
        if self.s3:
            obj = self._object(key)
            if len(data) < transfer.MULTIPART_THRESHOLD:
                self.client.put_object(Bucket=self.bucket, Key=obj, Body=bytes(data), **_content_type(obj))
            else:
                transfer.wait_one(transfer.upload(self.client, io.BytesIO(data), self.bucket, obj, _content_type(obj)))
            return
        if self.remote:
            self.fs.pipe_file(self.path(key), data)
            return
        target = Path(self.path(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_file(target)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            _unlink(tmp)
            raise

    # -- conditional writes (compare-and-swap) -----------------------------------
    @_s3_errors
    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """``(content, token)`` of ``key``, or ``(None, None)`` when it does not exist.

        The token names this version of the file for :meth:`write_if`: the ETag
        in S3, the sha256 of the content locally.
        """
        if self.s3:
            try:
                out = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
            except Exception as exc:
                if is_missing(exc):
                    return None, None
                raise
            return out["Body"].read(), out["ETag"]
        if self.remote:
            raise StorageError(f"{self.url(key)}: conditional writes need a local folder or an s3:// root")
        try:
            data = Path(self.path(key)).read_bytes()
        except FileNotFoundError:
            return None, None
        return data, hashlib.sha256(data).hexdigest()

    @_s3_errors
    def write_if(self, key: str, data: bytes, token: str | None) -> bool:
        """Write ``key`` only if it is still the version ``token`` read (None: only if it does not exist).

        Returns False, writing nothing, when another writer changed (or made)
        the file since: two writers that read the same version cannot both
        win. In S3 this is ``PutObject`` with ``If-Match: <ETag>`` (or
        ``If-None-Match: *`` to create), decided by the server; locally an
        exclusive ``flock`` on the folder is held while the content is
        compared and the temp file renamed into place.
        """
        if self.s3:
            condition = {"IfMatch": token} if token is not None else {"IfNoneMatch": "*"}
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=bytes(data),
                                       **_content_type(key), **condition)
            except Exception as exc:
                # 412: the ETag no longer matches (or the object now exists); 409: a concurrent
                # conditional write to the same key was in flight (AWS asks to retry)
                if error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                    return False
                raise
            return True
        if self.remote:
            raise StorageError(f"{self.url(key)}: conditional writes need a local folder or an s3:// root")
        import fcntl

        target = Path(self.path(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _, current = self.read_versioned(key)
            if current != token:
                return False
            self.write_bytes(key, data)
            return True
        finally:
            os.close(fd)  # releases the lock

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def write_json(self, key: str, obj: Any) -> None:
        self.write_text(key, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")

    @_s3_errors
    def put_file(self, local: str | os.PathLike[str], key: str) -> None:
        """Copy one local file to ``key`` atomically.

        In S3, files of 8 MiB and more are multipart uploads (8 MiB parts, as
        ``aws s3 sync``); the object exists only once the upload is completed.
        """
        if self.s3:
            obj = self._object(key)
            transfer.wait_one(transfer.upload(self.client, str(local), self.bucket, obj, _content_type(obj)))
            return
        if self.remote:
            self.fs.put_file(str(local), self.path(key))
            return
        path = Path(self.path(key))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_file(path)
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise

    @_s3_errors
    def put_dir(self, local_dir: str | os.PathLike[str], key: str, marker: bool = True) -> None:
        """Publish a finished local folder as ``key``, replacing what was there.

        Locally the folder is copied beside the target and renamed into place.
        In S3 the old marker is removed first, the files are uploaded (several
        at a time), files of an older version that are not in the new one are
        removed (:meth:`rm_files`), and the ``_COMPLETE`` marker is written
        last (:meth:`write_bytes`): a reader that checks the marker never takes
        a partial upload as complete.
        """
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise StorageError(f"{local_dir} is not a folder; nothing to publish as {self.url(key)}")
        if not self.remote:
            self._put_dir_local(local_dir, key, marker)
            return
        key = check_key(key)
        if self.is_complete(key):
            self.rm(f"{key}/{COMPLETE_MARKER}")
        files = sorted(p for p in local_dir.rglob("*") if p.is_file())
        rels = [f.relative_to(local_dir).as_posix() for f in files]
        if self.s3:
            def start(finished: Any) -> list[Any]:
                return [transfer.upload(self.client, str(f), self.bucket, obj, _content_type(obj), finished)
                        for f, obj in ((f, self._object(f"{key}/{r}")) for f, r in zip(files, rels))]

            transfer.wait_all(start)
        else:
            for f, r in zip(files, rels):
                self.put_file(f, f"{key}/{r}")
        keep = set(rels) | {COMPLETE_MARKER}
        stale = [k for k in self.walk_files(key) if k[len(key) + 1:] not in keep]
        if stale:
            self.rm_files(stale)
        if marker:
            self.write_bytes(f"{key}/{COMPLETE_MARKER}", b"")

    def _put_dir_local(self, local_dir: Path, key: str, marker: bool) -> None:
        target = Path(self.path(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; published folders get the usual mode
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

    @_s3_errors
    def is_complete(self, key: str) -> bool:
        """True when a folder written by :meth:`put_dir` has its completion marker."""
        marker = f"{key}/{COMPLETE_MARKER}"
        if not self.s3:
            path = self.path(marker)
            self.fs.invalidate_cache(path)  # another process may have written or removed it
            return bool(self.fs.exists(path))
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(marker))
            return True
        except Exception as exc:
            if is_missing(exc):
                return False
            raise

    @_s3_errors
    def get_dir(self, key: str, local_dir: str | os.PathLike[str]) -> Path:
        """Copy the folder ``key`` to ``local_dir`` (several files at a time) and return it.

        Every listed key is checked before anything is created: a key that is
        not a plain relative path (``//``, ``..``, ``.``, a backslash, NUL, a
        drive letter) or would land outside ``local_dir`` is refused.

        Raises
        ------
        StorageError
            A refused key (named), an object gone between listing and download,
            or any S3 failure; one line each.
        """
        local_dir = Path(local_dir)
        prefix = check_key(key)
        listing = self.walk_files(key)
        plan: list[tuple[str, Path, int | None, str | None]] = []
        for rel, info in sorted(listing.items()):
            if prefix and rel == prefix:
                continue  # the key itself is an object, not a folder
            sub = rel[len(prefix) + 1:] if prefix else rel
            where = self.root + "/" + rel if self.remote else str(Path(self.base) / rel)
            target = local_target(local_dir, sub, source=where)
            plan.append((rel, target, info.get("size"), info.get("ETag") or None))
        for folder in sorted({target.parent for _, target, _, _ in plan} | {local_dir}):
            folder.mkdir(parents=True, exist_ok=True)
        if self.s3:
            self._download([(self._object(rel, exact=True), target, size, etag) for rel, target, size, etag in plan])
            return local_dir
        for rel, target, _, _ in plan:
            self.get_file(rel, target)
        return local_dir

    @contextlib.contextmanager
    def local_dir(self, key: str) -> Iterator[Path]:
        """A local folder with the contents of ``key`` (a temp copy for remote roots, removed afterwards)."""
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

    @_s3_errors
    def rm(self, key: str, recursive: bool = False) -> None:
        """Delete a file, or with ``recursive`` a folder and everything under it; missing is fine."""
        if self.s3:
            obj = self._object(key)
            if not recursive:
                self.client.delete_object(Bucket=self.bucket, Key=obj)
                return
            listed = [item["Key"] for page in self._list(f"{obj}/" if obj else "")
                      for item in page.get("Contents", [])]
            self._delete_objects([obj, *listed] if obj else listed)
            return
        path = self.path(key)
        if not self.fs.exists(path):
            return
        if self.remote:
            self.fs.rm(path, recursive=recursive)
        elif recursive and Path(path).is_dir():
            shutil.rmtree(path)
        else:
            os.unlink(path)

    @_s3_errors
    def rm_files(self, keys: Iterable[str]) -> None:
        """Delete several files (batched ``DeleteObjects`` in S3); missing ones are ignored.

        In S3 the keys are deleted exactly as given (as :meth:`walk_files` lists
        them), after checking that they stay inside the root.
        """
        keys = list(keys)
        if not keys:
            return
        if self.s3:
            self._delete_objects([self._object(k, exact=True) for k in keys])
            return
        paths = [self.path(k) for k in keys]
        if self.remote:
            self.fs.rm(paths)
            return
        for path in paths:
            _unlink(path)

    def _delete_objects(self, objects: list[str]) -> None:
        from botocore.exceptions import ClientError

        for start in range(0, len(objects), _DELETE_BATCH):
            batch = objects[start:start + _DELETE_BATCH]
            out = self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in batch], "Quiet": True})
            errors = [e for e in out.get("Errors", []) if e.get("Code") not in ("NoSuchKey",)]
            if errors:
                first = errors[0]
                raise ClientError({"Error": {"Code": first.get("Code", ""), "Message": first.get("Message", "")}},
                                  "DeleteObjects")



class _TempTarget:
    """A seekable file for s3transfer that becomes ``target`` on :meth:`commit`.

    The temp file beside ``target`` is made and opened only at the first write,
    so a folder of thousands of files never holds thousands of descriptors.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.tmp: str | None = None
        self._fh: Any = None
        self._lock = threading.Lock()

    def _file(self) -> Any:
        with self._lock:
            if self._fh is None:
                self.tmp = _temp_file(self.target)
                self._fh = open(self.tmp, "r+b")
            return self._fh

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file().seek(offset, whence)

    def tell(self) -> int:
        return self._file().tell()

    def write(self, data: bytes) -> int:
        return self._file().write(data)

    def commit(self) -> None:
        """Close the temp file (made now for an empty object) and rename it to the target."""
        fh = self._file()
        fh.close()
        os.replace(self.tmp, self.target)  # type: ignore[arg-type]

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            _unlink(self.tmp)  # type: ignore[arg-type]


def _content_type(key: str) -> dict[str, str]:
    """``ContentType`` guessed from the name, as ``aws s3 sync`` sets it."""
    guessed, _ = mimetypes.guess_type(key)
    return {"ContentType": guessed} if guessed else {}


def open_storage(root: str, endpoint_url: str | None = None, profile: str | None = None) -> Storage:
    """A :class:`Storage` for ``root``."""
    return Storage(root, endpoint_url=endpoint_url, profile=profile)
