"""The EC2 instance metadata service (IMDSv2): a session token, then the spot notices.

IMDSv2 (what ``HttpTokens=required`` enforces) answers only requests that carry
a session token: ``PUT /latest/api/token`` with
``X-aws-ec2-metadata-token-ttl-seconds`` returns one, and every ``GET`` sends it
in ``X-aws-ec2-metadata-token``. A token that has expired (or a restarted
service) gives 401; the client then fetches a new token and asks once more.

The two paths that matter for spot training (AWS, "Spot Instance interruption
notices" and "EC2 instance rebalance recommendations"):

- ``/latest/meta-data/spot/instance-action``: 404 until the instance is about
  to be interrupted, then ``{"action": "terminate"|"stop"|"hibernate", "time": ...}``
  about two minutes before it happens;
- ``/latest/meta-data/events/recommendations/rebalance``: 404 until EC2 sees an
  elevated risk of interruption, then ``{"noticeTime": ...}``.

Why not the ``ec2-metadata`` package: its base URL is fixed in the constructor
(tests point ours at a loopback stub through ``MULTITYPE_IMDS_URL``), it has no
rebalance recommendation, caches properties that a poller must keep clearing,
and a rejected token raises instead of being refreshed. The flow is a few lines
of ``urllib`` from the standard library, with short timeouts: off EC2 the
link-local address does not answer and the watcher must not hang on it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

DEFAULT_URL = "http://169.254.169.254"
URL_ENV = "MULTITYPE_IMDS_URL"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
SPOT_ACTION = "meta-data/spot/instance-action"
REBALANCE = "meta-data/events/recommendations/rebalance"
INSTANCE_ID = "meta-data/instance-id"


class ImdsError(Exception):
    """The metadata service did not answer, or answered with an unexpected status."""


@dataclass(frozen=True)
class Notice:
    """A spot interruption notice or a rebalance recommendation.

    Attributes
    ----------
    kind : {"spot-interruption", "rebalance-recommendation"}
    action : str or None
        ``terminate``, ``stop`` or ``hibernate`` for an interruption; None for a recommendation.
    time : str or None
        When the interruption happens (ISO 8601, UTC), or when the recommendation was made.
    document : dict
        The JSON the service returned.
    """

    kind: str
    action: str | None
    time: str | None
    document: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the log: ``spot interruption notice: terminate at 2026-...``."""
        if self.kind == "spot-interruption":
            return f"spot interruption notice: {self.action or 'interruption'} at {self.time or 'an unknown time'}"
        return f"spot rebalance recommendation (noticed at {self.time or 'an unknown time'})"


class ImdsClient:
    """An IMDSv2 client: token handling and the spot paths.

    Parameters
    ----------
    base_url : str, optional
        Where the service is; default env ``MULTITYPE_IMDS_URL``, else
        ``http://169.254.169.254``.
    token_ttl : int, default=21600
        Seconds a token lives (the service allows 1 to 21600); it is renewed
        30 s (or a tenth of the TTL, if shorter) before it expires.
    timeout : float, default=1.0
        Seconds per request.
    clock : callable, default=time.monotonic
        Source of the time the token's age is measured with.
    """

    def __init__(self, base_url: str | None = None, *, token_ttl: int = 21600, timeout: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.token_ttl = token_ttl
        self.timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        # the standard library's proxy handling would send the link-local request to an HTTP proxy
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _url(self, path: str) -> str:
        return f"{self.base_url}/latest/{path}"

    def token(self) -> str:
        """A valid session token (fetched with ``PUT /latest/api/token`` when none is fresh)."""
        if self._token is None or self._clock() >= self._renew_at:
            request = urllib.request.Request(self._url("api/token"), method="PUT",
                                             headers={TOKEN_TTL_HEADER: str(self.token_ttl)})
            status, body = self._send(request)
            if status != 200 or not body:
                raise ImdsError(f"PUT {self._url('api/token')} answered {status}")
            self._token = body.decode("utf-8").strip()
            self._renew_at = self._clock() + self.token_ttl - min(30.0, self.token_ttl / 10)
        return self._token

    def get(self, path: str) -> str | None:
        """The text at ``/latest/<path>``, or None for 404 (a 401 renews the token and retries once)."""
        for attempt in range(2):
            request = urllib.request.Request(self._url(path), headers={TOKEN_HEADER: self.token()})
            status, body = self._send(request)
            if status == 200:
                return body.decode("utf-8")
            if status == 404:
                return None
            if status == 401 and attempt == 0:
                self._token = None
                continue
            raise ImdsError(f"GET {self._url(path)} answered {status}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read() if exc.fp is not None else b""
        except (OSError, ValueError) as exc:  # refused, timed out, unreachable
            raise ImdsError(f"{request.get_method()} {request.full_url} failed: {exc}") from None

    def _json(self, path: str) -> dict[str, Any] | None:
        text = self.get(path)
        if text is None:
            return None
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise ImdsError(f"{self._url(path)} is not JSON: {text[:100]!r}") from None
        return document if isinstance(document, dict) else {"value": document}

    def spot_interruption(self) -> Notice | None:
        """The spot interruption notice, or None while there is none."""
        document = self._json(SPOT_ACTION)
        if document is None:
            return None
        return Notice("spot-interruption", document.get("action"), document.get("time"), document)

    def rebalance_recommendation(self) -> Notice | None:
        """The rebalance recommendation, or None while there is none."""
        document = self._json(REBALANCE)
        if document is None:
            return None
        return Notice("rebalance-recommendation", None, document.get("noticeTime"), document)

    def notice(self) -> Notice | None:
        """An interruption notice if there is one, else a rebalance recommendation, else None."""
        return self.spot_interruption() or self.rebalance_recommendation()

    def instance_id(self) -> str | None:
        """This instance's id (``i-...``), or None where the service has none."""
        text = self.get(INSTANCE_ID)
        return text.strip() if text else None
