"""AWS control-plane clients (SageMaker, CloudWatch Logs, IAM, STS, EC2, ...) and their one-line errors.

Clients come from the same botocore session as the S3 storage
(:func:`multitype.storage.s3.session`: standard credential sources and
``aws.profile``), in the project's ``aws.region``, with bounded timeouts and
botocore's retries (``AWS_MAX_ATTEMPTS``, default 5, standard mode). Endpoints
follow botocore's own settings, so tests point a service at a local server with
``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_<SERVICE>`` (e.g.
``AWS_ENDPOINT_URL_SAGEMAKER``) and S3 elsewhere with ``AWS_ENDPOINT_URL_S3``.

:func:`aws_errors` turns what the user can fix (no or expired credentials,
access denied, a rejected or invalid request, an endpoint that does not answer)
into :class:`~multitype.errors.AwsError` (one line, exit 2), naming the action
and what to do.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

from multitype.config import AwsConfig
from multitype.errors import AwsError
from multitype.storage.s3 import session

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 70.0
MAX_ATTEMPTS = 5
_CLIENTS: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()

_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
_INVALID = {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
            "InvalidAccessKeyId", "AuthFailure", "IncompleteSignature"}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden"}
_MISSING = {"ResourceNotFound", "ResourceNotFoundException", "NoSuchEntity", "ValidationException"}


def _max_attempts() -> int:
    try:
        return max(int(os.environ.get("AWS_MAX_ATTEMPTS", MAX_ATTEMPTS)), 1)
    except ValueError:
        raise AwsError(f"AWS_MAX_ATTEMPTS={os.environ['AWS_MAX_ATTEMPTS']!r} must be an integer") from None


def client(service: str, aws: AwsConfig, max_attempts: int | None = None) -> Any:
    """A shared, thread-safe botocore client for ``service`` in ``aws.region``.

    Parameters
    ----------
    service : str
        A botocore service name: ``sagemaker``, ``logs``, ``iam``, ``sts``, ``ec2``...
    aws : AwsConfig
        The ``aws`` section of project.yaml (region, profile).
    max_attempts : int, optional
        Total attempts per call (botocore's standard retry mode); default
        ``AWS_MAX_ATTEMPTS`` or 5. Calls that must not be repeated blindly pass 1.

    Raises
    ------
    AwsError
        An unknown profile or a bad setting.
    """
    from botocore import exceptions as bx
    from botocore.config import Config

    attempts = max_attempts or _max_attempts()
    endpoints = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_ENDPOINT_URL")))
    try:
        sess = session(aws.profile)
        key = (id(sess), service, aws.region, attempts, endpoints)
        with _LOCK:
            if key not in _CLIENTS:
                config = Config(region_name=aws.region, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                                # botocore reads retries["max_attempts"] as retries, not attempts
                                retries={"total_max_attempts": attempts, "mode": "standard"},
                                user_agent_extra="multitype")
                _CLIENTS[key] = sess.create_client(service, config=config)
            return _CLIENTS[key]
    except bx.ProfileNotFound as exc:
        raise AwsError(f"AWS profile not found ({exc}); fix aws.profile in project.yaml or AWS_PROFILE") from None
    except bx.UnknownServiceError as exc:
        raise AwsError(f"botocore does not know the AWS service {service!r} ({exc}); upgrade botocore") from None
    except ValueError as exc:  # e.g. an AWS_ENDPOINT_URL that is not a URL
        raise AwsError(f"cannot make an AWS {service} client in {aws.region}: {exc}") from None


def credential_sources(aws: AwsConfig) -> list[str]:
    """The names of the credential providers botocore tries, in order (``env``, ``shared-credentials-file``, ...)."""
    try:
        resolver = session(aws.profile).get_component("credential_provider")
        return [getattr(p, "METHOD", type(p).__name__) for p in getattr(resolver, "providers", [])]
    except Exception:  # noqa: BLE001 - only used to word a message
        return ["env", "shared-credentials-file", "config-file", "container-role", "iam-role"]


def _no_credentials(aws: AwsConfig) -> AwsError:
    tried = ", ".join(credential_sources(aws))
    profile = f" (profile {aws.profile!r})" if aws.profile else ""
    return AwsError(f"no AWS credentials found{profile}; tried: {tried}. Set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or aws.profile in project.yaml, or run 'aws configure'")


def check_credentials(aws: AwsConfig) -> str:
    """Resolve credentials now (before anything is uploaded or launched); returns their source.

    Raises
    ------
    AwsError
        None found (the message names the sources tried), or a profile that does not exist.
    """
    from botocore import exceptions as bx

    try:
        creds = session(aws.profile).get_credentials()
    except (bx.ProfileNotFound, bx.PartialCredentialsError, bx.CredentialRetrievalError) as exc:
        raise AwsError(f"AWS credentials cannot be loaded ({exc}); fix aws.profile / AWS_PROFILE or "
                       "the credential files") from None
    if creds is None:
        raise _no_credentials(aws)
    return str(getattr(creds, "method", "unknown"))


def caller_account(aws: AwsConfig) -> str | None:
    """The account the credentials belong to, asked of STS: expired or revoked keys fail here, before
    anything is uploaded or launched (resolving them is not enough).

    Raises
    ------
    AwsError
        No credentials, or STS refuses them.
    """
    check_credentials(aws)
    with aws_errors("check the AWS credentials", aws):
        return client("sts", aws).get_caller_identity().get("Account")


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def translate(exc: BaseException, action: str, aws: AwsConfig) -> AwsError | None:
    """A one-line :class:`AwsError` for a failure of ``action`` that the user can fix, or None.

    Parameters
    ----------
    exc : BaseException
        What botocore raised.
    action : str
        What was being done, for the message: ``"start the training job multitype-..."``.
    aws : AwsConfig
        Region and profile, for the message.
    """
    from botocore import exceptions as bx

    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, bx.NoCredentialsError):
        return _no_credentials(aws)
    if isinstance(exc, (bx.PartialCredentialsError, bx.CredentialRetrievalError, bx.ProfileNotFound)):
        return AwsError(f"cannot {action}: AWS credentials cannot be loaded ({exc}); fix them and retry")
    if isinstance(exc, bx.ParamValidationError):
        return AwsError(f"cannot {action}: the request is invalid: {' '.join(str(exc).split())}")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return AwsError(f"cannot {action}: the AWS endpoint did not answer ({exc}); check the network, "
                        f"aws.region ({aws.region}) and AWS_ENDPOINT_URL")
    if isinstance(exc, bx.ClientError):
        code = error_code(exc)
        message = " ".join(str(exc.response.get("Error", {}).get("Message", "")).split())
        if code in _EXPIRED:
            return AwsError(f"cannot {action}: the AWS credentials have expired ({code}); refresh them "
                            "(aws sso login, a new session token) and retry")
        if code in _INVALID:
            return AwsError(f"cannot {action}: AWS rejected the credentials ({code}); check AWS_ACCESS_KEY_ID/"
                            "AWS_SECRET_ACCESS_KEY or the profile")
        if code in _DENIED:
            return AwsError(f"cannot {action}: access denied ({message or code}); grant the permission to "
                            "this identity (see 'multitype iam policy')")
        if code in _MISSING or code.endswith("NotFound") or code.startswith("Invalid") or code in (
                "ResourceLimitExceeded", "ResourceInUse", "ConflictException"):
            return AwsError(f"cannot {action}: {code}: {message}")
    return None


@contextlib.contextmanager
def aws_errors(action: str, aws: AwsConfig) -> Iterator[None]:
    """Run AWS calls; failures the user can fix become one-line :class:`AwsError` (exit 2)."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc, action, aws)
        if mapped is None or mapped is exc:
            raise
        raise mapped from None
