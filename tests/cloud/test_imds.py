"""The IMDSv2 client against the loopback stub: tokens, 404 = no notice, notices, renewal, an absent service."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest

from multitype.cloud.imds import ImdsClient, ImdsError

TOKEN = "/latest/api/token"
ACTION = "/latest/meta-data/spot/instance-action"
REBALANCE = "/latest/meta-data/events/recommendations/rebalance"


def test_a_get_without_a_token_is_refused_by_the_stub(imds_stub) -> None:
    """The stub behaves like HttpTokens=required, so the tests below prove that the client sends one."""
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(imds_stub.url + ACTION, timeout=2)
    assert info.value.code == 401


def test_no_notice_is_404_and_every_get_carries_the_token(imds_stub) -> None:
    client = ImdsClient()  # MULTITYPE_IMDS_URL, set by the fixture
    assert client.base_url == imds_stub.url
    assert client.spot_interruption() is None
    assert client.rebalance_recommendation() is None
    assert client.notice() is None
    assert client.instance_id() == "i-0123456789abcdef0"
    # one token for all four GETs, each sent with it
    assert imds_stub.count("PUT", TOKEN) == 1
    gets = [r for r in imds_stub.requests if r[0] == "GET"]
    assert len(gets) == 5 and all(token == client.token() for _, _, token in gets)


def test_an_interruption_notice(imds_stub) -> None:
    client = ImdsClient()
    posted = imds_stub.interrupt("terminate")
    notice = client.notice()
    assert notice is not None and notice.kind == "spot-interruption"
    assert notice.action == "terminate" and notice.time == posted["time"]
    assert notice.describe() == f"spot interruption notice: terminate at {posted['time']}"
    imds_stub.clear()
    assert client.notice() is None


def test_a_rebalance_recommendation_and_the_interruption_first(imds_stub) -> None:
    client = ImdsClient()
    posted = imds_stub.rebalance()
    notice = client.notice()
    assert notice is not None and notice.kind == "rebalance-recommendation" and notice.action is None
    assert notice.time == posted["noticeTime"]
    assert "rebalance recommendation" in notice.describe()
    imds_stub.interrupt("stop")
    notice = client.notice()
    assert notice is not None and notice.kind == "spot-interruption" and notice.action == "stop"


def test_the_token_is_renewed_before_it_expires(imds_stub) -> None:
    client = ImdsClient(token_ttl=1)
    assert client.notice() is None
    first = client.token()
    time.sleep(1.05)  # the stub would refuse the first token now; the client must not send it
    assert client.notice() is None
    assert client.token() != first
    assert imds_stub.count("PUT", TOKEN) == 2
    assert all(token != first for m, p, token in imds_stub.requests[-2:])


def test_a_refused_token_is_replaced_and_the_get_repeated(imds_stub) -> None:
    client = ImdsClient()
    assert client.notice() is None
    imds_stub.expire_tokens()  # e.g. the service restarted
    imds_stub.interrupt()
    notice = client.notice()
    assert notice is not None and notice.action == "terminate"
    assert imds_stub.count("PUT", TOKEN) == 2
    assert [r[0] for r in imds_stub.requests[-3:]] == ["GET", "PUT", "GET"]


def test_a_service_that_does_not_answer_is_an_error_within_the_timeout() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ImdsClient(f"http://127.0.0.1:{port}", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ImdsError, match=f"PUT http://127.0.0.1:{port}/latest/api/token failed"):
        client.notice()
    assert time.monotonic() - started < 2


def test_the_default_url_is_the_link_local_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MULTITYPE_IMDS_URL", raising=False)
    assert ImdsClient().base_url == "http://169.254.169.254"
    assert ImdsClient("http://127.0.0.1:9/").base_url == "http://127.0.0.1:9"
