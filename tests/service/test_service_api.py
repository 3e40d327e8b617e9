"""`pua serve` driven through its API, against a real Kamailio presence server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers import find_free_port
from tests.peers.kamailio import KamailioPresence

from .running import RunningService

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    "<tuple><status><basic>open</basic></status><note>via the API</note></tuple></presence>"
)

Start = Callable[..., RunningService]


@pytest.mark.interop
def test_json_rpc_publish_reaches_kamailio(service: Start, kamailio: KamailioPresence) -> None:
    """pua.publish (Kamailio's parameter order) waits for the 200 and returns
    its ETag; Kamailio's presentity table holds that ETag; pua.unpublish removes it."""
    svc = service("--outbound-proxy", kamailio.uri)
    answer = svc.rpc("pua.publish", [ALICE, 3600, "presence", "application/pidf+xml", ".", ".", ".", ".", PIDF])
    assert "result" in answer, answer
    etag = answer["result"]["SIP-ETag"]
    assert answer["result"]["Expires"] == 3600
    rows = kamailio.presentity_rows(username="alice", domain="example.com")
    assert [r["etag"] for r in rows] == [etag]
    assert b"via the API" in rows[0]["body"]
    listed = svc.rpc("pua.list", ["publication"])["result"]
    assert [r["pres_uri"] for r in listed] == [ALICE] and listed[0]["etag"] == etag
    assert svc.rpc("pua.unpublish", [ALICE])["result"] == {"removed": True}
    assert kamailio.presentity_rows(username="alice", domain="example.com") == []


@pytest.mark.interop
def test_subscribe_over_the_api_and_see_the_notify_on_the_stream(
    service: Start, kamailio: KamailioPresence,
) -> None:
    """pua.subscribe starts a subscription; its NOTIFY (with the published
    PIDF) arrives on /events as JSON."""
    svc = service("--outbound-proxy", kamailio.uri)
    svc.rpc("pua.publish", {"pres_uri": ALICE, "expires": 600, "content_type": "application/pidf+xml", "body": PIDF})
    events: list[dict[str, object]] = []
    seen = threading.Event()

    def read_stream() -> None:
        with urllib.request.urlopen(svc.api_url + "/events", timeout=30) as stream:
            for raw in stream:
                line = raw.decode()
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    events.append(event)
                    if event["type"] == "notify" and "via the API" in str(event.get("body")):
                        seen.set()
                        return

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    # The stream must be open before the subscription starts.
    ready = threading.Event()
    for _ in range(50):
        if svc.rpc("pua.stats")["result"] is not None:
            ready.set()
            break
    assert ready.is_set()
    result = svc.rpc("pua.subscribe", [ALICE, BOB, "presence", 600])["result"]
    assert result["record"]["watcher_uri"] == BOB
    assert seen.wait(20), events
    notify = next(e for e in events if e["type"] == "notify" and "via the API" in str(e.get("body")))
    assert notify["state"] == "active" and notify["record"]["pres_uri"] == ALICE
    assert "open" in str(notify["summary"])


def rpc_raw(svc: RunningService, raw: bytes) -> tuple[int, object]:
    request = urllib.request.Request(svc.api_url + "/rpc", data=raw, method="POST")
    with urllib.request.urlopen(request, timeout=30) as reply:
        text = reply.read()
        return reply.status, json.loads(text) if text else None


def test_json_rpc_errors(service: Start) -> None:
    """Malformed JSON, invalid requests, unknown methods and bad params get
    the JSON-RPC 2.0 error codes; notifications get no answer; batches work."""
    svc = service()
    assert rpc_raw(svc, b"{not json")[1]["error"]["code"] == -32700  # type: ignore[index]
    assert rpc_raw(svc, b"[]")[1]["error"]["code"] == -32600  # type: ignore[index]
    assert rpc_raw(svc, b'{"jsonrpc": "1.0", "method": "pua.list", "id": 1}')[1]["error"]["code"] == -32600  # type: ignore[index]
    assert rpc_raw(svc, b'"just a string"')[1]["error"]["code"] == -32600  # type: ignore[index]
    assert svc.rpc("pua.nothing")["error"]["code"] == -32601
    assert svc.rpc("pua.publish", [])["error"]["code"] == -32602
    assert svc.rpc("pua.publish", {"pres_uri": ALICE, "expires": "soon"})["error"]["code"] == -32602
    assert svc.rpc("pua.publish", [ALICE, 60, "no-such-event"])["error"]["code"] == -32602
    assert svc.rpc("pua.publish", [ALICE, 60, "presence", ".", ".", ".", ".", ".", "<not-pidf"])["error"]["code"] == -32602
    assert svc.rpc("pua.list", {"kind": "other"})["error"]["code"] == -32602
    status, body = rpc_raw(svc, b'{"jsonrpc": "2.0", "method": "pua.stats"}')
    assert status == 204 and body is None
    status, batch = rpc_raw(svc, json.dumps([
        {"jsonrpc": "2.0", "method": "pua.stats", "id": "a"},
        {"jsonrpc": "2.0", "method": "pua.list"},
        {"jsonrpc": "2.0", "method": "nope", "id": "b"},
        42,
    ]).encode())
    assert status == 200 and isinstance(batch, list) and len(batch) == 3
    by_id = {item["id"]: item for item in batch}
    assert "result" in by_id["a"] and by_id["b"]["error"]["code"] == -32601
    assert by_id[None]["error"]["code"] == -32600


def test_sip_failure_is_a_json_rpc_error_with_the_status(service: Start, sipp_uas: Callable[[str], object]) -> None:
    """A 412 from the server comes back as an error whose code is 412."""
    uas = sipp_uas("publish_412")
    svc = service("--outbound-proxy", uas.uri)  # type: ignore[attr-defined]
    # An ETag we do not hold: the PUBLISH goes out with SIP-If-Match and fails.
    answer = svc.rpc("pua.publish", [ALICE, 60, "presence", ".", ".", "stale-etag"])
    assert answer["error"]["code"] == 412, answer


def test_rest_mirror_and_openapi(service: Start, sipp_uas: Callable[[str], object]) -> None:
    """POST /publications waits for the 2xx and returns the record; GET and
    DELETE work by record id; /openapi.json describes the paths."""
    uas = sipp_uas("publish_200")
    svc = service("--outbound-proxy", uas.uri)  # type: ignore[attr-defined]
    created = svc.post("/publications", {"pres_uri": ALICE, "body": PIDF, "expires": 600})
    assert created["state"] == "published" and created["etag"]
    again = json.loads(svc.get(f"/publications/{created['id']}"))
    assert again["etag"] == created["etag"]
    listed = json.loads(svc.get("/publications"))["records"]
    assert [r["id"] for r in listed] == [created["id"]]
    request = urllib.request.Request(svc.api_url + f"/publications/{created['id']}", method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert json.loads(reply.read()) == {"removed": True}
    with pytest.raises(urllib.error.HTTPError) as info:
        svc.get(f"/publications/{created['id']}")
    assert info.value.code == 404
    spec = json.loads(svc.get("/openapi.json"))
    assert {"/publications", "/publications/{id}", "/subscriptions", "/events"} <= set(spec["paths"])
    metrics = svc.get("/metrics").decode()
    assert "pua_sip_responses_total{code=\"200\"}" in metrics
    assert "pua_publish_sent_total" in metrics
    # pua serve times its collector's passes (those since it began to, of
    # all it made since start-up).
    passes = re.search(r'^pua_gc_collections_total\{generation="0"\} (\S+)$', metrics, re.M)
    timed = re.search(r'^pua_gc_pause_seconds_count\{generation="0"\} (\S+)$', metrics, re.M)
    assert passes is not None and timed is not None, metrics[-2000:]
    assert float(passes.group(1)) > 0 and float(timed.group(1)) <= float(passes.group(1))


def test_token_is_required_beyond_loopback(tmp_path: Path) -> None:
    """Binding the API beyond loopback without a token stops the start with
    a message naming api_token; with a token, requests need it."""
    port = find_free_port(udp=False)
    result = subprocess.run(
        [sys.executable, "-m", "pua", "serve", "--api", f"0.0.0.0:{port}",
         "--listen", f"udp:127.0.0.1:{find_free_port()}", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert "api_token" in result.stderr


def test_token_checked_when_configured(service: Start) -> None:
    """With a token, a request without it is 401 and one with it works."""
    svc = service(token="s3cret")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(svc.api_url + "/records", timeout=10)
    assert info.value.code == 401
    assert json.loads(svc.get("/records")) == {"records": []}
    with urllib.request.urlopen(svc.api_url + "/records?token=s3cret", timeout=10) as reply:
        assert reply.status == 200


@pytest.mark.parametrize(("args", "env", "named"), [
    (["--hash-size", "99"], {}, "hash_size"),
    ([], {"PUA_MIN_EXPIRES": "-1"}, "PUA_MIN_EXPIRES"),
    (["--db-url", "oracle://x"], {}, "db_url"),
    (["--listen", "udp:nowhere:5060"], {}, "listen"),
    (["--outbound-proxy", "tel:123"], {}, "outbound_proxy"),
    (["--update-period", "3"], {}, "update_period"),
])
def test_bad_settings_stop_the_start(tmp_path: Path, args: list[str], env: dict[str, str], named: str) -> None:
    """A bad value stops `pua serve` at once (exit 2) naming the setting."""
    import os

    result = subprocess.run(
        [sys.executable, "-m", "pua", "serve", "--data-dir", str(tmp_path), *args],
        capture_output=True, text=True, timeout=30, check=False, env={**os.environ, **env},
    )
    assert result.returncode == 2, result.stderr
    assert named in result.stderr


def test_config_file_and_precedence(tmp_path: Path, service: Start) -> None:
    """Settings come from TOML, then PUA_* variables, then flags; an unknown
    key in the file is an error naming it."""
    from pua.config import ConfigError, load_settings

    config = tmp_path / "pua.toml"
    config.write_text('[pua]\nmin_expires = 60\ndefault_expires = 1800\nhash_size = 10\n')
    settings = load_settings(config_file=config, environ={"PUA_DEFAULT_EXPIRES": "900"},
                             flags={"hash_size": 11})
    assert (settings.min_expires, settings.default_expires, settings.hash_size) == (60, 900, 11)
    config.write_text("min_expirez = 1\n")
    with pytest.raises(ConfigError, match="min_expirez"):
        load_settings(config_file=config, environ={})
    config.write_text("min_expires = [\n")
    with pytest.raises(ConfigError, match=r"pua\.toml"):
        load_settings(config_file=config, environ={})


def test_sigterm_stops_cleanly(service: Start) -> None:
    """SIGTERM ends the service with status 0."""
    svc = service()
    assert svc.stop() == 0


@pytest.mark.interop
def test_cli_as_a_client_of_the_service(service: Start, kamailio: KamailioPresence) -> None:
    """pua publish/list/show/unpublish --api drive a running service."""
    svc = service("--outbound-proxy", kamailio.uri)

    def pua(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pua", *args, "--api", svc.api_url],
                              capture_output=True, text=True, timeout=60, check=False)

    published = pua("publish", "--pres-uri", ALICE, "--basic", "open")
    assert published.returncode == 0, published.stderr
    assert published.stdout.startswith("SIP-ETag: ")
    listed = pua("list").stdout.splitlines()
    assert listed[0].split() == ["KIND", "SOURCE", "STATE", "EVENT", "PRESENTITY", "WATCHER",
                                 "EXPIRES", "ETAG", "ID"]
    kind, source, state, event, uri, watcher, expires, etag, record_id = listed[1].split()
    assert (kind, source, state, event, uri, watcher) == ("publication", "MI_PUBLISH", "published",
                                                          "presence", ALICE, "-")
    assert len(pua("list", "--source", "mi_publish").stdout.splitlines()) == 2
    assert len(pua("list", "--source", "XMPP_PUBLISH").stdout.splitlines()) == 1  # the header
    assert expires.endswith("s") and etag != "-"
    shown = subprocess.run([sys.executable, "-m", "pua", "show", ALICE, "--api", svc.api_url,
                            "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert json.loads(shown.stdout)[0]["id"] == record_id
    # The id that list prints is the one show and unpublish take; --api
    # also takes IP:PORT, as `pua serve --api` does.
    address = svc.api_url.removeprefix("http://")
    shown = subprocess.run([sys.executable, "-m", "pua", "show", record_id, "--api", address],
                           capture_output=True, text=True, timeout=60, check=False)
    assert f"etag: {etag}" in shown.stdout.splitlines(), shown.stdout
    assert "body (application/pidf+xml):" in shown.stdout and "<basic>open</basic>" in shown.stdout
    assert pua("unpublish", record_id).stdout.strip() == "removed"
    assert kamailio.presentity_rows(username="alice", domain="example.com") == []


def test_json_log_lines(service: Start) -> None:
    """--log-format json writes one JSON object per log line."""
    svc = service("--log-format", "json")
    assert svc.stop() == 0
    lines = [line for line in svc.stderr().splitlines() if line.strip()]
    assert lines, "no log lines"
    entries = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["message"] == "stopped" for e in entries)


@pytest.mark.interop
def test_watch_prints_the_event_stream(service: Start, sipp_uas: Callable[[str], object]) -> None:
    """`pua watch --api` prints one line per event as they happen."""
    import selectors

    uas = sipp_uas("publish_200")
    svc = service("--outbound-proxy", uas.uri)  # type: ignore[attr-defined]
    watcher = subprocess.Popen([sys.executable, "-m", "pua", "watch", "--api", svc.api_url],
                               stdout=subprocess.PIPE, text=True)
    try:
        # The stream is open once pua.stats sees a client: publish until the line shows.
        selector = selectors.DefaultSelector()
        assert watcher.stdout is not None
        selector.register(watcher.stdout, selectors.EVENT_READ)
        line = ""
        for attempt in range(20):
            svc.rpc("pua.publish", [f"sip:w{attempt}@example.com", 60, "presence",
                                    "application/pidf+xml", ".", ".", ".", ".", PIDF.replace("alice", f"w{attempt}")])
            if selector.select(timeout=1.0):
                line = watcher.stdout.readline()
                break
        _stamp, kind, uri, *rest = line.split()
        assert kind == "publication.succeeded" and uri.startswith("sip:w"), line
        assert "event=presence" in rest and "state=published" in rest, line
        # A removal still names its record, although the record is gone.
        assert "result" in svc.rpc("pua.unpublish", [uri, "presence"])
        removed = ""
        while selector.select(timeout=10.0):
            removed = watcher.stdout.readline()
            if "publication.removed" in removed or not removed:
                break
        assert f"publication.removed {uri} event=presence" in removed, removed
        assert "reason=removed" in removed, removed
    finally:
        watcher.kill()
        watcher.wait(timeout=10)
