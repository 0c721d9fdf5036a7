"""S3 sessions, clients, the one-time probe, and the table that turns S3 failures into one line.

Credentials and region come from the standard AWS sources (environment,
``AWS_PROFILE``, shared config files, instance roles); the endpoint from
``storage.endpoint_url`` or ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``.
Clients retry with botocore's backoff on 5xx, throttling and dropped
connections (``AWS_MAX_ATTEMPTS``, ``AWS_RETRY_MODE``; default 5 attempts,
adaptive) and have bounded connect/read timeouts
(``MULTITYPE_S3_CONNECT_TIMEOUT``, ``MULTITYPE_S3_READ_TIMEOUT``).

botocore sessions are costly to build (~0.4 s: service models, endpoints) and
cache the credentials they resolve, so one is shared per set of AWS settings,
and one client per session, endpoint and client settings (botocore clients are
thread-safe). Both are rebuilt in a forked child.

:func:`s3_error` is the error table; the cloud code (``multitype.cloud``) uses
it too. Nothing here imports from ``multitype.cloud``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Iterator

from multitype.errors import StorageError

S3_CONNECT_TIMEOUT = 10.0
S3_READ_TIMEOUT = 60.0
S3_PROBE_TIMEOUT = 3.0
S3_MAX_ATTEMPTS = 5
# enough connections for the transfer manager's requests plus listings and small reads
MAX_POOL_CONNECTIONS = 32

_CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                   "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_REGION",
                   "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED")
_SESSIONS: dict[tuple[Any, ...], Any] = {}
_CLIENTS: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


def s3_endpoint(endpoint_url: str | None = None) -> str | None:
    """The S3 endpoint in force: ``endpoint_url``, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``."""
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        raise StorageError(f"environment variable {name}={os.environ[name]!r} must be a number of seconds") from None


def _max_attempts() -> int:
    try:
        return max(int(os.environ.get("AWS_MAX_ATTEMPTS", S3_MAX_ATTEMPTS)), 1)
    except ValueError:
        raise StorageError(f"AWS_MAX_ATTEMPTS={os.environ['AWS_MAX_ATTEMPTS']!r} must be an integer") from None


def client_settings(probe: bool = False) -> dict[str, Any]:
    """Timeouts and retries for S3 clients, from the environment.

    Parameters
    ----------
    probe : bool, default=False
        The settings of the one-time probe instead: ``MULTITYPE_S3_PROBE_TIMEOUT``
        (3 s) for connect and read, 2 attempts.
    """
    if probe:
        timeout = _env_float("MULTITYPE_S3_PROBE_TIMEOUT", S3_PROBE_TIMEOUT)
        return {"connect_timeout": timeout, "read_timeout": timeout,
                "retries": {"max_attempts": 2, "mode": "standard"}}
    return {"connect_timeout": _env_float("MULTITYPE_S3_CONNECT_TIMEOUT", S3_CONNECT_TIMEOUT),
            "read_timeout": _env_float("MULTITYPE_S3_READ_TIMEOUT", S3_READ_TIMEOUT),
            "retries": {"max_attempts": _max_attempts(), "mode": os.environ.get("AWS_RETRY_MODE", "adaptive")}}


def storage_options(url: str, endpoint_url: str | None = None, profile: str | None = None) -> dict[str, Any]:
    """fsspec (s3fs) options for ``url``: endpoint, profile, retries and timeouts; ``{}`` for other URLs.

    For code that reads through fsspec directly (config folders on S3); the
    same settings as :func:`s3_client`.
    """
    if not url.startswith("s3://"):
        return {}
    opts: dict[str, Any] = {"config_kwargs": client_settings()}
    endpoint = s3_endpoint(endpoint_url)
    if endpoint:
        opts["endpoint_url"] = endpoint
    if profile:
        opts["profile"] = profile
    return opts


def session(profile: str | None = None) -> Any:
    """The botocore session shared by every client with these AWS settings (``profile`` and ``AWS_*``)."""
    import botocore.session

    key = (os.getpid(), profile, *(os.environ.get(name) for name in _CREDENTIAL_ENV))
    with _LOCK:
        if key not in _SESSIONS:
            made = botocore.session.Session(profile=profile)
            made.user_agent_extra = "multitype"
            _SESSIONS[key] = made
        return _SESSIONS[key]


def s3_client(endpoint_url: str | None = None, profile: str | None = None, probe: bool = False) -> Any:
    """A (shared, thread-safe) botocore S3 client with the settings of :func:`client_settings`.

    Raises
    ------
    StorageError
        An unknown profile, or a bad setting in the environment.
    """
    from botocore import exceptions as bx
    from botocore.config import Config

    settings = client_settings(probe)
    endpoint = s3_endpoint(endpoint_url)
    try:
        sess = session(profile)
        key = (id(sess), endpoint, repr(sorted(settings.items())))
        with _LOCK:
            if key not in _CLIENTS:
                config = Config(**settings, max_pool_connections=MAX_POOL_CONNECTIONS)
                _CLIENTS[key] = sess.create_client("s3", endpoint_url=endpoint, config=config)
            return _CLIENTS[key]
    except bx.ProfileNotFound as exc:
        raise StorageError(f"AWS profile not found ({exc}); fix aws.profile in project.yaml or AWS_PROFILE") from None
    except ValueError as exc:  # e.g. an endpoint URL that is not a URL
        raise StorageError(f"cannot make an S3 client for endpoint {endpoint!r}: {exc}") from None


def probe(url: str, bucket: str, prefix: str, endpoint_url: str | None = None, profile: str | None = None) -> None:
    """List one key under ``prefix`` with short timeouts, so a bad root fails within seconds.

    A denied listing passes: prefix-scoped policies may allow reads and
    writes without ``s3:ListBucket``; the operation itself will say.

    Raises
    ------
    StorageError
        Endpoint unreachable or silent, missing bucket, wrong or missing credentials.
    """
    client = s3_client(endpoint_url, profile, probe=True)
    timeout = client_settings(probe=True)["read_timeout"]
    outcome: list[BaseException | None] = []

    def list_one() -> None:
        try:
            client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome.append(exc)

    # botocore's timeouts bound each read, not the call (a silent server costs
    # several of them); the whole probe gets a deadline of its own.
    worker = threading.Thread(target=list_one, name="s3-probe", daemon=True)
    worker.start()
    worker.join(2 * timeout + 1)
    try:
        if not outcome:
            raise TimeoutError(f"no answer within {2 * timeout + 1:.0f} s")
        if outcome[0] is not None:
            raise outcome[0]
    except Exception as exc:
        if error_code(exc) in _DENIED_CODES:
            return
        mapped = s3_error(exc, url, s3_endpoint(endpoint_url))
        if mapped is None:
            raise
        raise mapped from exc


# --- S3 errors -> one line ---------------------------------------------------------
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                     "TokenRefreshRequired", "InvalidClientTokenId"}
_DENIED_CODES = {"AccessDenied", "403", "AllAccessDisabled", "AccountProblem", "Forbidden"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
# the IAM action an S3 API call needs, for "access denied" messages
_ACTIONS = {"ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket", "HeadObject": "s3:GetObject",
            "GetObject": "s3:GetObject", "PutObject": "s3:PutObject", "CreateMultipartUpload": "s3:PutObject",
            "UploadPart": "s3:PutObject", "CompleteMultipartUpload": "s3:PutObject",
            "AbortMultipartUpload": "s3:AbortMultipartUpload",
            "DeleteObject": "s3:DeleteObject", "DeleteObjects": "s3:DeleteObject",
            "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
            "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration"}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and what s3transfer wrapped (``last_exception``)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        for nxt in (getattr(cur, "last_exception", None), cur.__cause__, cur.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def error_code(exc: BaseException) -> str | None:
    """The S3 error code (``NoSuchBucket``, ``AccessDenied``...) behind ``exc``, if any."""
    from botocore.exceptions import ClientError

    for err in _chain(exc):
        if isinstance(err, ClientError):
            return str(err.response.get("Error", {}).get("Code", ""))
    return None


def is_missing(exc: BaseException) -> bool:
    """True when ``exc`` says the object does not exist (404)."""
    return error_code(exc) in _MISSING_CODES or isinstance(exc, FileNotFoundError)


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
        if isinstance(err, (bx.HTTPClientError, bx.ResponseStreamingError, ConnectionError)):
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
            if code in _MISSING_CODES:
                return None
            if code in ("PreconditionFailed", "412"):
                return StorageError(f"{url} changed while it was being read ({op}: {code}); try again")
            if code in ("PermanentRedirect", "301", "AuthorizationHeaderMalformed",
                        "IllegalLocationConstraintException"):
                return StorageError(f"bucket '{bucket}' is in another region ({code}); set AWS_DEFAULT_REGION "
                                    "to the bucket's region")
            message = " ".join(str(error.get("Message") or err).split())
            return StorageError(f"S3 {op} failed for {url}: {code} {message}".strip())
    return None
