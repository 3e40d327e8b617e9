"""Digest challenges to the engine's requests (RFC 3261 §22, RFC 7616): a
challenge is answered once at once, as a new transaction; the nonce is used
again for the next request; a refused answer is the final failure, named
with its realm; stale nonces earn one more try."""

from __future__ import annotations

import hashlib

import pytest

from pua.core import (
    PublicationFailed,
    PublicationRemoved,
    PublicationSucceeded,
    PublishInfo,
    SubscribeInfo,
    SubscriptionAccepted,
)
from pua.sip import Request
from pua.sip.auth import Credential, DigestChallenge, authorization, choose_challenge
from pua.sip.headers import Challenge

from .harness import Harness

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
BODY = (
    b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'entity="sip:alice@example.com"><tuple id="t1"><status><basic>open</basic>'
    b"</status></tuple></presence>"
)
REALM = "example.com"


def challenge(nonce: str, *, algorithm: str = "MD5", stale: bool = False,
              qop: str = "auth") -> str:
    value = f'Digest realm="{REALM}", nonce="{nonce}", qop="{qop}", algorithm={algorithm}'
    return value + (", stale=true" if stale else "") + ', opaque="op1"'


def params(request: Request, header: str = "Authorization") -> dict[str, str]:
    value = request.headers.get(header)
    assert value is not None, f"no {header}"
    return Challenge.parse(value).params


def expected(request: Request, password: str, header: str = "Authorization") -> str:
    """The response a server computes from the request it received."""
    got = params(request, header)
    digest = DigestChallenge(
        realm=got["realm"], nonce=got["nonce"], algorithm=got["algorithm"], qop=got.get("qop"),
        opaque=got.get("opaque"), stale=False, userhash=False, proxy=header != "Authorization",
    )
    value = authorization(digest, Credential(username="alice", password=password),
                          method=request.method, uri=request.uri_text, body=request.body,
                          nc=int(got["nc"], 16), cnonce=got["cnonce"])
    return Challenge.parse(value).params["response"]


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.agent.credentials.add(Credential(username="alice", password="secret", realm=REALM))
    return h


def test_a_401_is_answered_at_once_and_the_nonce_serves_the_refresh(h: Harness) -> None:
    """The challenged PUBLISH goes again at once (new branch, CSeq + 1, same
    Call-ID) with a correct answer; the refresh carries the same nonce with
    nc 2 and needs no challenge; the machine saw only the 200."""
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=BODY, expires=-1), h.now)
    first = h.one()
    assert first.headers.get("Authorization") is None
    h.answer(first, 401, [("WWW-Authenticate", challenge("n1"))])
    second = h.one()
    assert second.call_id == first.call_id and second.cseq.seq == first.cseq.seq + 1
    assert second.top_via.branch != first.top_via.branch
    got = params(second)
    assert (got["nonce"], got["nc"], got["qop"], got["opaque"]) == ("n1", "00000001", "auth", "op1")
    assert got["response"] == expected(second, "secret")
    assert second.body == first.body
    assert h.take_events(PublicationFailed) == []
    h.ok_publish(second, "e1", 600)
    assert [e.status for e in h.take_events(PublicationSucceeded)] == [200]  # type: ignore[attr-defined]

    refresh = h.next_request(600)
    got = params(refresh)
    assert (got["nonce"], got["nc"]) == ("n1", "00000002")
    assert got["response"] == expected(refresh, "secret")
    assert refresh.sip_if_match == "e1"
    h.ok_publish(refresh, "e2", 600)
    assert h.agent.counters()["nonces_reused"] == 1
    assert h.agent.counters()["challenges_answered"] == 1


def test_a_wrong_password_fails_after_two_requests_naming_the_realm(h: Harness) -> None:
    """The answer is refused with a new challenge: no third request; the
    failure carries 401 and the realm."""
    h.agent.credentials.add(Credential(username="alice", password="wrong", realm=REALM))
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=BODY, expires=600), h.now)
    h.answer(h.one(), 401, [("WWW-Authenticate", challenge("n1"))])
    h.answer(h.one(), 401, [("WWW-Authenticate", challenge("n2"))])
    h.none()
    [failed] = h.take_events(PublicationFailed)
    assert failed.status == 401 and f'realm "{REALM}"' in failed.reason  # type: ignore[attr-defined]


def test_a_stale_nonce_is_one_more_try_not_a_failure(h: Harness) -> None:
    """stale=true after our answer: answered again with the new nonce."""
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=BODY, expires=600), h.now)
    h.answer(h.one(), 401, [("WWW-Authenticate", challenge("n1"))])
    h.answer(h.one(), 401, [("WWW-Authenticate", challenge("n2", stale=True))])
    third = h.one()
    assert params(third)["nonce"] == "n2" and params(third)["nc"] == "00000001"
    h.ok_publish(third, "e1")
    assert h.take_events(PublicationFailed) == []
    assert len(h.take_events(PublicationSucceeded)) == 1


def test_a_407_gets_proxy_authorization_and_the_strongest_algorithm(h: Harness) -> None:
    """Several challenges: SHA-256 is chosen over MD5; a 407 is answered in
    Proxy-Authorization."""
    h.agent.send_subscribe(SubscribeInfo(pres_uri=BOB, watcher_uri=ALICE, expires=600), h.now)
    first = h.one()
    h.answer(first, 407, [("Proxy-Authenticate", challenge("m1")),
                          ("Proxy-Authenticate", challenge("s1", algorithm="SHA-256"))],
             to_tag=None)
    second = h.one()
    got = params(second, "Proxy-Authorization")
    assert got["algorithm"] == "SHA-256" and got["nonce"] == "s1"
    assert got["response"] == expected(second, "secret", "Proxy-Authorization")
    assert second.headers.get("Authorization") is None
    assert second.cseq.seq == first.cseq.seq + 1 and second.call_id == first.call_id
    h.answer(second, 200, [("Expires", "600")])
    assert len(h.take_events(SubscriptionAccepted)) == 1


def test_in_dialog_refresh_and_unsubscribe_keep_the_dialogs_cseq(h: Harness) -> None:
    """A challenged refresh goes again in the dialog with the next CSeq; the
    unsubscribe after it counts on from there."""
    h.agent.send_subscribe(SubscribeInfo(pres_uri=BOB, watcher_uri=ALICE, expires=-1), h.now)
    first = h.one()
    h.answer(first, 200, [("Expires", "600"), ("Contact", "<sip:ps@192.0.2.1>")])
    h.notify(first, "active;expires=600")
    refresh = h.next_request(600)
    h.answer(refresh, 401, [("WWW-Authenticate", challenge("d1"))])
    again = h.one()
    assert again.to.tag == "srv1" and again.cseq.seq == refresh.cseq.seq + 1
    h.answer(again, 200, [("Expires", "600")])
    h.agent.send_subscribe(SubscribeInfo(pres_uri=BOB, watcher_uri=ALICE, expires=0), h.now)
    end = h.one()
    assert end.cseq.seq == again.cseq.seq + 1 and end.expires == 0
    assert params(end)["nonce"] == "d1" and params(end)["nc"] == "00000002"


def test_without_credentials_a_401_is_a_failure() -> None:
    """No credential for the realm: the 401 is reported, nothing is resent."""
    h = Harness()
    h.agent.credentials.add(Credential(username="alice", password="x", realm="other.org"))
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=BODY, expires=600), h.now)
    h.answer(h.one(), 401, [("WWW-Authenticate", challenge("n1"))])
    h.none()
    [failed] = h.take_events(PublicationFailed)
    assert failed.status == 401  # type: ignore[attr-defined]


def test_a_removal_is_answered_too(h: Harness) -> None:
    """The remove PUBLISH challenged with a fresh nonce is answered and the
    publication is removed."""
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=BODY, expires=600), h.now)
    h.ok_publish(h.one(), "e1")
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, expires=0), h.now)
    remove = h.one()
    h.answer(remove, 401, [("WWW-Authenticate", challenge("r1"))])
    again = h.one()
    assert again.expires == 0 and again.sip_if_match == "e1"
    assert params(again)["nonce"] == "r1"
    h.ok_publish(again, "e1", 0)
    assert len(h.take_events(PublicationRemoved)) == 1


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess",
                                       "SHA-512-256", "SHA-512-256-sess"])
def test_each_algorithm_computes_as_a_server_does(algorithm: str) -> None:
    """An independent computation of RFC 7616's formulas agrees with ours."""
    name = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}[
        algorithm.removesuffix("-sess")]

    def hh(text: str) -> str:
        return hashlib.new(name, text.encode()).hexdigest()

    digest = choose_challenge([Challenge.parse(challenge("abc", algorithm=algorithm))],
                              proxy=False)
    assert digest is not None and digest.algorithm == algorithm
    value = authorization(digest, Credential(username="alice", password="pw"),
                          method="PUBLISH", uri=ALICE, body=b"", nc=3, cnonce="cn")
    ha1 = hh(f"alice:{REALM}:pw")
    if algorithm.endswith("-sess"):
        ha1 = hh(f"{ha1}:abc:cn")
    want = hh(f"{ha1}:abc:00000003:cn:auth:{hh(f'PUBLISH:{ALICE}')}")
    assert Challenge.parse(value).params["response"] == want


def test_rfc_7616_example_and_stored_ha1() -> None:
    """RFC 7616 §3.9.1's example for MD5 and SHA-256; a stored HA1 answers
    MD5 and is not offered for SHA-256; userhash hides the username."""
    example = {"realm": "http-auth@example.org",
               "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
               "qop": "auth", "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
               "stale": False, "userhash": False, "proxy": False}
    mufasa = Credential(username="Mufasa", password="Circle of Life")
    for algorithm, response in (("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
                                ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")):
        value = authorization(DigestChallenge(algorithm=algorithm, **example), mufasa,  # type: ignore[arg-type]
                              method="GET", uri="/dir/index.html", body=b"", nc=1,
                              cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
        assert f'response="{response}"' in value
    ha1 = hashlib.md5(b"Mufasa:http-auth@example.org:Circle of Life").hexdigest()
    stored = Credential(username="Mufasa", ha1=ha1)
    assert not stored.answers("SHA-256") and stored.answers("MD5")
    assert "Circle" not in repr(mufasa) and ha1 not in repr(stored)
    hidden = authorization(DigestChallenge(algorithm="MD5", **{**example, "userhash": True}),  # type: ignore[arg-type]
                           mufasa, method="GET", uri="/", body=b"", nc=1, cnonce="c")
    assert "Mufasa" not in hidden and "userhash=true" in hidden
