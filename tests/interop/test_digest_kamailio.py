"""Digest authentication against real servers: a Kamailio presence server
that challenges every PUBLISH and SUBSCRIBE (auth + auth_db, 407, qop=auth,
MD5), and a SIPp server that offers SHA-256 (RFC 8760)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pua
from pua.core import (
    EngineConfig,
    EngineEvent,
    PublicationFailed,
    PublicationSucceeded,
    PublishInfo,
    SourceFlag,
    SubscribeInfo,
)
from pua.runtime import Listen, PresenceRuntime
from tests.conftest import peer_or_skip
from tests.peers.kamailio import KamailioPresence
from tests.peers.sipp import SippUAS
from tests.service.running import RunningService

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
USERS = {"alice@example.com": "alice-secret", "bob@example.com": "bob-secret"}


def pidf(note: str) -> bytes:
    return (
        '<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
        f'entity="{ALICE}"><tuple id="t1"><status><basic>open</basic></status>'
        f"<note>{note}</note></tuple></presence>"
    ).encode()


@pytest.fixture
def guarded() -> Iterator[KamailioPresence]:
    """A presence server that challenges every PUBLISH and SUBSCRIBE."""
    with peer_or_skip(lambda: KamailioPresence(auth_users=USERS)) as kam:
        yield kam


def agent(kam: KamailioPresence, **kw: object) -> pua.Agent:
    credentials = kw.pop("credentials", [pua.Credential(username="alice", password="alice-secret",
                                                        uri=ALICE),
                                         pua.Credential(username="bob", password="bob-secret",
                                                        uri=BOB)])
    return pua.Agent(kam.uri, credentials=credentials, cleanup_on_exit=False, **kw)  # type: ignore[arg-type]


async def test_every_request_is_answered_and_lands(guarded: KamailioPresence) -> None:
    """Initial, modify, refresh and remove PUBLISH; initial, refresh and
    terminating SUBSCRIBE: all challenged, all accepted, all seen in
    Kamailio's tables; nonces are used again so most requests go once."""
    async with agent(guarded) as a:
        pub = await a.publish(ALICE, pidf("first"), expires=600)
        rows = guarded.presentity_rows(username="alice", domain="example.com")
        assert len(rows) == 1 and b"first" in bytes(rows[0]["body"])
        await pub.update(pidf("second"))
        rows = guarded.presentity_rows(username="alice", domain="example.com")
        assert len(rows) == 1 and b"second" in bytes(rows[0]["body"])
        etag = pub.etag
        refreshed = await a.runtime.publish(PublishInfo(pres_uri=ALICE, expires=600,
                                                        source_flag=SourceFlag.MI_PUBLISH))
        assert isinstance(refreshed, PublicationSucceeded) and refreshed.kind == "refresh"
        assert pub.etag != etag
        assert guarded.presentity_rows(username="alice", domain="example.com")[0]["etag"] == pub.etag

        sub = a.subscribe(ALICE, watcher=BOB, expires=600)
        await sub.wait_active()
        assert len(guarded.active_watchers_rows(presentity_uri=ALICE)) == 1
        again = await a.runtime.subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB,
                                                        expires=600,
                                                        source_flag=SourceFlag.MI_SUBSCRIBE))
        assert getattr(again, "state", None) == "active"
        await sub.unsubscribe()
        assert guarded.active_watchers_rows(presentity_uri=ALICE) == []
        await pub.remove()
        assert guarded.presentity_rows(username="alice", domain="example.com") == []

        counters = a.runtime.counters()
        sent = counters["publish_sent"] + counters["subscribe_sent"]
        assert counters["challenges_answered"] >= 1
        assert counters["nonces_reused"] >= 1
        # Every request went once, plus one answer per challenge.
        assert a.runtime.sip_counters()["requests_sent"] == sent + counters["challenges_answered"]


async def test_stale_nonces_are_answered_not_failed() -> None:
    """With nonces that expire after a second, requests made later are
    challenged with stale=true and succeed at once."""
    with peer_or_skip(lambda: KamailioPresence(auth_users=USERS, nonce_expire=1)) as kam:
        async with agent(kam) as a:
            failures: list[EngineEvent] = []
            a.runtime.add_listener(
                lambda e: failures.append(e) if isinstance(e, PublicationFailed) else None
            )
            await a.publish(ALICE, pidf("stale"), expires=600)
            first = a.runtime.counters()["challenges_answered"]
            deadline = time.monotonic() + 20
            refresh = PublishInfo(pres_uri=ALICE, expires=600, source_flag=SourceFlag.MI_PUBLISH)
            # Refresh until the server has let the nonce go and said so.
            while a.runtime.counters()["challenges_answered"] == first:
                assert time.monotonic() < deadline, "the nonce never went stale"
                ok = await a.runtime.publish(refresh)
                assert isinstance(ok, PublicationSucceeded)
            assert failures == []


async def test_a_wrong_password_fails_after_two_requests() -> None:
    """The answer is refused: a clear 407 with the realm, two requests in all."""
    with peer_or_skip(lambda: KamailioPresence(auth_users=USERS)) as kam:
        wrong = [pua.Credential(username="alice", password="not-it")]
        async with agent(kam, credentials=wrong) as a:
            with pytest.raises(pua.PublishError) as failed:
                await a.publish(ALICE, pidf("x"), expires=600)
            assert failed.value.status == 407 and 'realm "example.com"' in failed.value.reason
            assert not failed.value.retrying
            assert a.runtime.sip_counters()["requests_sent"] == 2


async def test_sha256_is_chosen_when_offered(sipp_uas: Callable[[str], SippUAS]) -> None:
    """A server offering MD5 and SHA-256 gets a SHA-256 answer (the SIPp
    scenario refuses anything else)."""
    uas = sipp_uas("publish_401_sha256")
    runtime = PresenceRuntime(EngineConfig(outbound_proxy=uas.uri),
                              listen=[Listen("udp", "127.0.0.1", 0)])
    runtime.credentials.add(pua.Credential(username="alice", password="pw", realm="example.com"))
    async with runtime:
        ok = await runtime.publish(PublishInfo(pres_uri=ALICE, body=pidf("sha"), expires=60))
        assert isinstance(ok, PublicationSucceeded) and ok.etag.startswith("sha")
    stats = uas.stop(timeout=5)
    assert stats.failed == 0 and stats.successful == 1, stats.errors


def test_the_service_logs_in_and_never_shows_the_password(
    guarded: KamailioPresence, tmp_path: Path
) -> None:
    """`pua serve` with PUA_AUTH_USERNAME/PUA_AUTH_PASSWORD publishes to the
    guarded server; the password is in no answer, no log line, no stored
    row and not in --print-config."""
    env = {"PUA_AUTH_USERNAME": "alice", "PUA_AUTH_PASSWORD": "alice-secret"}
    svc = RunningService("--outbound-proxy", guarded.uri, data_dir=tmp_path / "var", env=env)
    try:
        answer = svc.rpc("pua.publish", [ALICE, 600, "presence", ".", ".", ".", ".", ".",
                                         pidf("svc").decode()])
        assert "result" in answer, answer
        assert guarded.presentity_rows(username="alice", domain="example.com")
        listed = json.dumps(svc.rpc("pua.list")) + json.dumps(svc.rpc("pua.stats"))
        assert "alice-secret" not in listed
        svc.rpc("pua.cleanup", [])  # written to the store
    finally:
        svc.stop()
    assert "alice-secret" not in svc.stderr()
    store = (tmp_path / "var" / "pua.db").read_bytes()
    assert b"alice-secret" not in store
    printed = subprocess.run([sys.executable, "-m", "pua", "serve", "--print-config"],
                             capture_output=True, text=True, timeout=30, check=False,
                             env={**os.environ, **env})
    assert printed.returncode == 0 and "alice-secret" not in printed.stdout
    assert 'auth_password = "****"' in printed.stdout


def test_the_command_line_logs_in(guarded: KamailioPresence, tmp_path: Path) -> None:
    """`pua publish --auth-user --auth-password-file` answers the challenge."""
    secret = tmp_path / "password"
    secret.write_text("alice-secret\n")
    done = subprocess.run(
        [sys.executable, "-m", "pua", "publish", "--server", guarded.uri, "--pres-uri", ALICE,
         "--basic", "open", "--auth-user", "alice", "--auth-password-file", str(secret)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SIP/2.0 200")
    assert guarded.presentity_rows(username="alice", domain="example.com")
    refused = subprocess.run(
        [sys.executable, "-m", "pua", "publish", "--server", guarded.uri, "--pres-uri", ALICE,
         "--basic", "open"], capture_output=True, text=True, timeout=60, check=False,
    )
    assert refused.returncode == 1 and "407" in refused.stderr


def test_a_kamailio_with_auth_needs_credentials(guarded: KamailioPresence) -> None:
    """The guarded server is really guarded: without credentials, 407."""
    async def run() -> int:
        async with pua.Agent(guarded.uri, cleanup_on_exit=False) as a:
            with pytest.raises(pua.PublishError) as failed:
                await a.publish(ALICE, pidf("none"), expires=60)
            return failed.value.status

    assert asyncio.run(run()) == 407


def test_a_restarted_service_answers_the_challenge_to_its_refresh(
    guarded: KamailioPresence, tmp_path: Path
) -> None:
    """Killed and started again, the service takes its publication back
    (its ETag, no credentials stored) and the refresh, challenged anew, is
    answered with the credentials of the settings."""
    env = {"PUA_AUTH_USERNAME": "alice", "PUA_AUTH_PASSWORD": "alice-secret"}
    flags = ("--outbound-proxy", guarded.uri, "--db-mode", "write-through")
    first = RunningService(*flags, data_dir=tmp_path / "var", env=env)
    try:
        answer = first.rpc("pua.publish", [ALICE, 600, "presence", ".", ".", ".", ".", ".",
                                           pidf("before").decode()])
        etag = answer["result"]["SIP-ETag"]
    finally:
        first.process.kill()
        first.process.wait(timeout=10)
    second = RunningService(*flags, data_dir=tmp_path / "var", env=env,
                            sip_port=first.sip_port)
    try:
        refreshed = second.rpc("pua.publish", {"pres_uri": ALICE, "expires": 600})
        assert "result" in refreshed, refreshed
        assert refreshed["result"]["SIP-ETag"] != etag
        stats = second.rpc("pua.stats")["result"]
        assert stats["engine"]["challenges_answered"] == 1
        rows = guarded.presentity_rows(username="alice", domain="example.com")
        assert len(rows) == 1 and rows[0]["etag"] == refreshed["result"]["SIP-ETag"]
    finally:
        second.stop()
