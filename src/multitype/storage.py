"""The one module that knows a local root from an S3 root.

Every artifact read or write in multitype goes through a :class:`Storage` bound
to a root (a folder or ``s3://bucket/prefix``). Paths given to it are relative
keys such as ``data/processed/train_4class.csv``; keys that would escape the
root (``..``, absolute paths) are refused. Writes are atomic: locally a
temporary file is renamed into place, in S3 an object is uploaded whole, so a
reader never sees half a file.

S3 roots use the standard AWS sources for credentials and region (environment,
``AWS_PROFILE``, shared config files, instance roles), the endpoint from
``storage.endpoint_url`` or ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``,
botocore retries with backoff on 5xx, throttling and dropped connections
(``AWS_MAX_ATTEMPTS``, ``AWS_RETRY_MODE``; default 5 attempts, adaptive) and
bounded connect/read timeouts. The first operation on an S3 root probes it once
with a short timeout, so a missing bucket, wrong credentials or an endpoint that
does not answer fail within seconds. Every S3 failure becomes a one-line
:class:`StorageError` naming the URL and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import ipaddress
import json
import math
import mimetypes
import os
import posixpath
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import fsspec

from multitype.errors import StorageError

COMPLETE_MARKER = "_COMPLETE"

# Files of this size and more go up as multipart uploads with parts of this
# size, as `aws s3 sync` does (so both tools give the same ETags), with up to
# MULTIPART_CONCURRENCY parts in flight. The object appears only when the
# upload is completed; on any failure the upload is aborted.
MULTIPART_CHUNKSIZE = 8 * 2**20
MULTIPART_CONCURRENCY = 10
_MAX_PARTS = 10_000
S3_CONNECT_TIMEOUT = 10.0
S3_READ_TIMEOUT = 60.0
S3_PROBE_TIMEOUT = 3.0
S3_MAX_ATTEMPTS = 5

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


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


def s3_endpoint(endpoint_url: str | None = None) -> str | None:
    """The S3 endpoint in force: ``endpoint_url``, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``."""
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        raise StorageError(f"environment variable {name}={os.environ[name]!r} must be a number of seconds") from None


def _client_config(connect_timeout: float, read_timeout: float, max_attempts: int, mode: str) -> dict[str, Any]:
    return {"connect_timeout": connect_timeout, "read_timeout": read_timeout,
            "retries": {"max_attempts": max_attempts, "mode": mode}}


def storage_options(url: str, endpoint_url: str | None = None, profile: str | None = None) -> dict[str, Any]:
    """fsspec options for ``url``: endpoint, profile, retries and timeouts for S3.

    Retries are botocore's (``AWS_MAX_ATTEMPTS``, ``AWS_RETRY_MODE``); timeouts
    come from ``MULTITYPE_S3_CONNECT_TIMEOUT`` (10 s) and ``MULTITYPE_S3_READ_TIMEOUT`` (60 s).
    """
    if not url.startswith("s3://"):
        return {}
    try:
        attempts = int(os.environ.get("AWS_MAX_ATTEMPTS", S3_MAX_ATTEMPTS))
    except ValueError:
        raise StorageError(f"AWS_MAX_ATTEMPTS={os.environ['AWS_MAX_ATTEMPTS']!r} must be an integer") from None
    opts: dict[str, Any] = {
        "config_kwargs": _client_config(
            _env_float("MULTITYPE_S3_CONNECT_TIMEOUT", S3_CONNECT_TIMEOUT),
            _env_float("MULTITYPE_S3_READ_TIMEOUT", S3_READ_TIMEOUT),
            max(attempts, 1), os.environ.get("AWS_RETRY_MODE", "adaptive")),
    }
    endpoint = s3_endpoint(endpoint_url)
    if endpoint:
        opts["endpoint_url"] = endpoint
    if profile:
        opts["profile"] = profile
    return opts


# botocore sessions are costly to build (~0.4 s: service models, endpoints) and
# cache the credentials they resolve, so one is shared per set of AWS settings.
_CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                   "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_REGION",
                   "AWS_DEFAULT_REGION")
_SESSIONS: dict[tuple[str | None, ...], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def _aio_session(profile: str | None) -> Any:
    from aiobotocore.session import AioSession

    key = (profile, *(os.environ.get(name) for name in _CREDENTIAL_ENV))
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = AioSession(profile=profile)
        return _SESSIONS[key]


def _s3_filesystem(url: str, endpoint_url: str | None, profile: str | None, **config: Any) -> Any:
    """A fresh s3fs instance on the shared botocore session; ``config`` overrides the client config."""
    opts = storage_options(url, endpoint_url, profile)
    opts.pop("profile", None)
    opts["config_kwargs"].update(config)
    try:
        fs = fsspec.filesystem("s3", skip_instance_cache=True, session=_aio_session(profile), **opts)
    except ImportError as exc:
        raise StorageError(f"root '{url}' cannot be used: {exc}") from None
    return _single_pass(fs)


def _single_pass(fs: Any) -> Any:
    """Leave retries to botocore: s3fs's own retry loop (5 passes) would multiply them."""
    if hasattr(fs, "retries"):
        fs.retries = 1
    return fs


async def _put_object(fs: Any, local: str, path: str, window: asyncio.Semaphore) -> None:
    """One local file to ``path`` (``bucket/key``): a single PUT, or a multipart upload
    whose parts share ``window`` with every other request in flight (s3fs sends parts
    in batches and waits for the slowest of each; a sliding window is ~15 % faster)."""
    bucket, key, _ = fs.split_path(path)
    size = os.path.getsize(local)
    extra = {}
    content_type, _ = mimetypes.guess_type(local)
    if content_type:
        extra["ContentType"] = content_type
    if size < MULTIPART_CHUNKSIZE:
        async with window:
            with open(local, "rb") as fh:
                data = fh.read()
            await fs._call_s3("put_object", Bucket=bucket, Key=key, Body=data, **extra)
        return
    chunk = max(MULTIPART_CHUNKSIZE, math.ceil(size / _MAX_PARTS))
    upload = await fs._call_s3("create_multipart_upload", Bucket=bucket, Key=key, **extra)
    ids = {"Bucket": bucket, "Key": key, "UploadId": upload["UploadId"]}

    async def part(number: int) -> dict[str, Any]:
        async with window:
            with open(local, "rb") as fh:
                fh.seek((number - 1) * chunk)
                data = fh.read(chunk)
            out = await fs._call_s3("upload_part", PartNumber=number, Body=data, **ids)
            return {"PartNumber": number, "ETag": out["ETag"]}

    tasks = [asyncio.ensure_future(part(n)) for n in range(1, math.ceil(size / chunk) + 1)]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [task.exception() for task in done if task.exception() is not None]
        if failed:
            raise failed[0]
        parts = [task.result() for task in tasks]
        await fs._call_s3("complete_multipart_upload", MultipartUpload={"Parts": parts}, **ids)
    except BaseException:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await fs._call_s3("abort_multipart_upload", **ids)
        raise


# --- S3 errors -> one line ---------------------------------------------------
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                     "TokenRefreshRequired", "InvalidClientTokenId"}
_DENIED_CODES = {"AccessDenied", "403", "AllAccessDisabled", "AccountProblem", "Forbidden"}
# the IAM action an S3 API call needs, for "access denied" messages
_ACTIONS = {"ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket", "HeadObject": "s3:GetObject",
            "GetObject": "s3:GetObject", "PutObject": "s3:PutObject", "CreateMultipartUpload": "s3:PutObject",
            "UploadPart": "s3:PutObject", "CompleteMultipartUpload": "s3:PutObject",
            "DeleteObject": "s3:DeleteObject", "DeleteObjects": "s3:DeleteObject",
            "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
            "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration"}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def s3_error(exc: BaseException, url: str, endpoint: str | None = None) -> StorageError | None:
    """Translate an S3/botocore failure about ``url`` into a one-line :class:`StorageError`.

    Returns ``None`` for what is not an S3 problem, and for a missing key
    (the caller knows how to say "not found").
    """
    from botocore import exceptions as bx

    where = f"the S3 endpoint {endpoint}" if endpoint else "S3"
    for err in _chain(exc):
        if isinstance(err, StorageError):
            return err
        if isinstance(err, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.ProfileNotFound)):
            return StorageError(f"no usable AWS credentials for {url} ({err}); set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run 'aws configure'")
        if isinstance(err, (bx.ConnectTimeoutError, bx.ReadTimeoutError, asyncio.TimeoutError, TimeoutError)) or \
                type(err).__name__ == "FSTimeoutError":
            return StorageError(f"{where} did not answer in time for {url}; check that it is up and that "
                                "storage.endpoint_url / AWS_ENDPOINT_URL is right")
        if isinstance(err, (bx.EndpointConnectionError, bx.ConnectionClosedError, ConnectionError)):
            return StorageError(f"cannot reach {where} for {url} ({type(err).__name__}); check that it is up "
                                "and that storage.endpoint_url / AWS_ENDPOINT_URL is right")
        if isinstance(err, bx.ClientError):
            error = err.response.get("Error", {})
            code = str(error.get("Code", ""))
            op = getattr(err, "operation_name", "") or "request"
            bucket = url[len("s3://"):].split("/", 1)[0] if url.startswith("s3://") else url
            if code == "NoSuchBucket":
                return StorageError(f"bucket '{bucket}' does not exist ({url}); create it (aws s3 mb "
                                    f"s3://{bucket}) or fix --root / storage.remote")
            if code in _CREDENTIAL_CODES:
                return StorageError(f"S3 rejected the credentials for {url} ({code}); check AWS_ACCESS_KEY_ID/"
                                    "AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
            if code in _DENIED_CODES:
                action = _ACTIONS.get(op, f"the permission for {op}")
                return StorageError(f"access denied to {url} ({op}); grant {action} on that prefix "
                                    "or use credentials that have it")
            if code == "InvalidBucketName":
                return StorageError(f"'{bucket}' is not a valid S3 bucket name ({url})")
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            if code in ("PermanentRedirect", "301", "AuthorizationHeaderMalformed",
                        "IllegalLocationConstraintException"):
                return StorageError(f"bucket '{bucket}' is in another region ({code}); set AWS_DEFAULT_REGION "
                                    "to the bucket's region")
            message = error.get("Message") or str(err)
            return StorageError(f"S3 {op} failed for {url}: {code} {message}".strip())
    return None


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code (``NoSuchBucket``, ``AccessDenied``...) behind ``exc``, if any."""
    from botocore.exceptions import ClientError

    for err in _chain(exc):
        if isinstance(err, ClientError):
            return str(err.response.get("Error", {}).get("Code", ""))
    return None


_F = TypeVar("_F", bound=Callable[..., Any])


def _s3_errors(method: _F) -> _F:
    """For S3 roots: probe the root once, and turn S3 failures into StorageError."""
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
        A local folder or an ``s3://bucket/prefix`` URL.
    endpoint_url : str, optional
        S3-compatible endpoint (``storage.endpoint_url`` in ``project.yaml``).
    profile : str, optional
        AWS profile (``aws.profile``); default: the standard AWS sources.
    """

    def __init__(self, root: str, endpoint_url: str | None = None, profile: str | None = None) -> None:
        self.remote = is_remote(root)
        self.root = root if self.remote and root.endswith("://") else (root.rstrip("/") or "/")
        self.endpoint_url = endpoint_url
        self.profile = profile
        self._checked = False
        self._check_lock = threading.Lock()
        if not self.remote:
            local = Path(self.root.removeprefix("file://")).expanduser()
            if local.exists() and not local.is_dir():
                raise StorageError(f"root '{root}' is a file; --root must be a folder or an s3:// URL")
            self.fs = fsspec.filesystem("file")
            self.base = str(local.resolve())
        else:
            if self.root.startswith("s3://"):
                self.bucket, self.prefix = split_s3_url(self.root)
                self.root = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
            self.fs, self.base = self._remote_fs(self.root, endpoint_url, profile)

    @staticmethod
    def _remote_fs(url: str, endpoint_url: str | None, profile: str | None = None) -> tuple[Any, str]:
        if url.startswith("s3://"):
            return _s3_filesystem(url, endpoint_url, profile), url[len("s3://"):].rstrip("/")
        try:
            fs, base = fsspec.core.url_to_fs(url, skip_instance_cache=True,
                                             **storage_options(url, endpoint_url, profile))
        except (ImportError, ValueError) as exc:
            raise StorageError(f"root '{url}' cannot be used: {exc}") from None
        _single_pass(fs)
        return fs, base.rstrip("/")

    def check(self) -> None:
        """Probe an S3 root once (list one key, short timeout); no-op for local roots.

        Raises
        ------
        StorageError
            Endpoint unreachable or silent, missing bucket, wrong or missing
            credentials. A denied listing is left to the operation itself,
            since prefix-scoped policies may allow reads without listing.
        """
        if not self.remote or self._checked or not self.root.startswith("s3://"):
            return
        with self._check_lock:
            if self._checked:
                return
            self._probe()
            self._checked = True

    def _probe(self) -> None:
        from fsspec.asyn import sync

        timeout = _env_float("MULTITYPE_S3_PROBE_TIMEOUT", S3_PROBE_TIMEOUT)
        probe = _s3_filesystem(self.root, self.endpoint_url, self.profile,
                               **_client_config(timeout, timeout, 2, "standard"))
        prefix = f"{self.prefix}/" if self.prefix else ""

        async def _list() -> Any:
            return await asyncio.wait_for(
                probe._call_s3("list_objects_v2", Bucket=self.bucket, Prefix=prefix, MaxKeys=1),
                timeout=2 * timeout + 1)

        try:
            sync(probe.loop, _list)
        except Exception as exc:
            if _error_code(exc) in _DENIED_CODES:
                return
            mapped = s3_error(exc, self.root, s3_endpoint(self.endpoint_url))
            if mapped is None:
                raise
            raise mapped from exc

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
    @_s3_errors
    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    @_s3_errors
    def isdir(self, key: str) -> bool:
        return bool(self.fs.isdir(self.path(key)))

    @_s3_errors
    def listdir(self, key: str = "") -> list[str]:
        """Names (not paths) directly under ``key``; empty if it does not exist."""
        path = self.path(key)
        self.fs.invalidate_cache(path)
        if not self.fs.exists(path):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(path, detail=False))

    @_s3_errors
    def walk_files(self, key: str = "") -> dict[str, dict[str, Any]]:
        """Every file under ``key``: relative key -> fsspec info (size, mtime/ETag...).

        For S3 this is one paginated listing (size, ``ETag``, ``LastModified``).
        """
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

    # -- reads -----------------------------------------------------------------
    @_s3_errors
    def read_bytes(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError as exc:
            if self.remote:
                mapped = s3_error(exc, self.url(key), s3_endpoint(self.endpoint_url))
                if mapped is not None:
                    raise mapped from exc
            raise StorageError(f"{self.url(key)} not found") from None

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def read_json(self, key: str) -> Any:
        try:
            return json.loads(self.read_text(key))
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.url(key)} line {exc.lineno}: not valid JSON ({exc.msg})") from None

    @_s3_errors
    def get_file(self, key: str, local: str | os.PathLike[str]) -> Path:
        """Copy ``key`` to the local file ``local`` atomically (temp + rename) and return it."""
        target = Path(local)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_file(target)
        try:
            try:
                self.fs.get_file(self.path(key), tmp)
            except FileNotFoundError as exc:
                mapped = s3_error(exc, self.url(key), s3_endpoint(self.endpoint_url)) if self.remote else None
                raise (mapped or StorageError(f"{self.url(key)} not found")) from None
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return target

    # -- writes (atomic) -------------------------------------------------------
    @_s3_errors
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write a whole file atomically (temp + rename locally, one PUT in S3)."""
        path = self.path(key)
        if self.remote:
            self.fs.pipe_file(path, data, chunksize=MULTIPART_CHUNKSIZE)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_file(target)
        try:
            with open(tmp, "wb") as fh:
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

    @_s3_errors
    def put_file(self, local: str | os.PathLike[str], key: str) -> None:
        """Copy one local file to ``key`` atomically.

        In S3, files of 8 MiB and more are multipart uploads (8 MiB parts, up
        to 10 in flight); the object exists only once the upload is completed.
        """
        if self.remote:
            self._put_files([(str(local), self.path(key))])
            return
        path = Path(self.path(key))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_file(path)
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @_s3_errors
    def put_dir(self, local_dir: str | os.PathLike[str], key: str, marker: bool = True) -> None:
        """Publish a finished local folder as ``key``, replacing what was there.

        Locally the folder is copied beside the target and renamed into place. In
        S3 the old marker is removed first, the files are uploaded (several at a
        time), files of an older version that are not in the new one are removed,
        and the ``_COMPLETE`` marker is written last: a reader that checks the
        marker never takes a partial upload as complete.
        """
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise StorageError(f"{local_dir} is not a folder; nothing to publish as {self.url(key)}")
        if self.remote:
            dest = self.path(key)
            self.fs.invalidate_cache(dest)
            if self.fs.exists(f"{dest}/{COMPLETE_MARKER}"):
                self.fs.rm_file(f"{dest}/{COMPLETE_MARKER}")
            files = sorted(p for p in local_dir.rglob("*") if p.is_file())
            rels = [f.relative_to(local_dir).as_posix() for f in files]
            self._put_files([(str(f), f"{dest}/{r}") for f, r in zip(files, rels)])
            keep = set(rels) | {COMPLETE_MARKER}
            old = self.walk_files(key)
            prefix = check_key(key) + "/"
            stale = [self.path(k) for k in old if k[len(prefix):] not in keep]
            if stale:
                self.fs.rm(stale)
            if marker:
                self.fs.pipe_file(f"{dest}/{COMPLETE_MARKER}", b"")
            return
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

    def _put_files(self, pairs: list[tuple[str, str]]) -> None:
        """Upload (local file, S3 path) pairs at once, on s3fs's event loop."""
        if not pairs:
            return
        from fsspec.asyn import sync

        async def upload() -> None:
            window = asyncio.Semaphore(MULTIPART_CONCURRENCY)
            await asyncio.gather(*(_put_object(self.fs, local, path, window) for local, path in pairs))

        try:
            sync(self.fs.loop, upload)
        finally:
            for _, path in pairs:
                self.fs.invalidate_cache(path)

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
        path = self.path(f"{key}/{COMPLETE_MARKER}")
        self.fs.invalidate_cache(path)  # another process may have written or removed it
        return bool(self.fs.exists(path))

    @_s3_errors
    def get_dir(self, key: str, local_dir: str | os.PathLike[str]) -> Path:
        """Copy the folder ``key`` to ``local_dir`` and return it."""
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        prefix = check_key(key)
        for rel in self.walk_files(key):
            sub = rel[len(prefix) + 1:] if prefix else rel
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

    @_s3_errors
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

    @_s3_errors
    def rm_files(self, keys: Iterable[str]) -> None:
        """Delete several files (batched ``DeleteObjects`` in S3); missing ones are ignored."""
        paths = [self.path(k) for k in keys]
        if not paths:
            return
        if self.remote:
            self.fs.rm(paths)
            return
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # -- bucket settings (S3 only) ---------------------------------------------
    def _require_s3(self, what: str) -> None:
        if not (self.remote and self.root.startswith("s3://")):
            raise StorageError(f"{what} needs an s3:// root, got '{self.root}'")

    @_s3_errors
    def lifecycle_rules(self) -> list[dict[str, Any]]:
        """The bucket's lifecycle rules (empty when it has none)."""
        self._require_s3("a lifecycle rule")
        try:
            out = self.fs.call_s3("get_bucket_lifecycle_configuration", Bucket=self.bucket)
        except Exception as exc:
            if _error_code(exc) == "NoSuchLifecycleConfiguration":
                return []
            raise
        return list(out.get("Rules", []))

    @_s3_errors
    def put_lifecycle_rules(self, rules: list[dict[str, Any]]) -> None:
        """Replace the bucket's lifecycle configuration with ``rules``."""
        self._require_s3("a lifecycle rule")
        self.fs.call_s3("put_bucket_lifecycle_configuration", Bucket=self.bucket,
                        LifecycleConfiguration={"Rules": rules})


def open_storage(root: str, endpoint_url: str | None = None, profile: str | None = None) -> Storage:
    """A :class:`Storage` for ``root``."""
    return Storage(root, endpoint_url=endpoint_url, profile=profile)
