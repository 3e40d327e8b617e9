"""`pua serve` starting: extra event packages, ports already taken, nothing
left on disk by a failed start, where requests go."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pua.sip import Request, parse_message
from tests.peers import find_free_port

from .running import RunningService

Start = Callable[..., RunningService]
FEATURE = "as-feature-event=application/x-as-feature-event+xml"
BODY = '<?xml version="1.0"?><SetDoNotDisturb xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3"><doNotDisturbOn>true</doNotDisturbOn></SetDoNotDisturb>'


@pytest.fixture
def udp_peer() -> Iterator[socket.socket]:
    """A UDP socket on loopback that receives what pua sends (and never answers)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(20)
    yield sock
    sock.close()


def _serve(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUA_")}
    return subprocess.run(
        [sys.executable, "-m", "pua", "serve", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )


def test_extra_event_is_published_through_json_rpc(service: Start, udp_peer: socket.socket) -> None:
    """With events = [name=type], pua.send_publish of that event sends a
    PUBLISH with that Event and (by default) that Content-Type; an event no
    package has is refused naming the known ones."""
    proxy = f"sip:127.0.0.1:{udp_peer.getsockname()[1]}"
    svc = service("--event", FEATURE, "--outbound-proxy", proxy)
    answer = svc.rpc("pua.send_publish", {"pres_uri": "sip:alice@example.com", "expires": 600,
                                          "event": "as-feature-event", "body": BODY})
    assert "result" in answer, answer
    assert answer["result"]["record"]["event"] == "as-feature-event"
    data, _ = udp_peer.recvfrom(65536)
    request = parse_message(data)
    assert isinstance(request, Request) and request.method == "PUBLISH"
    assert request.headers.get("Event") == "as-feature-event"
    assert request.headers.get("Content-Type") == "application/x-as-feature-event+xml"
    assert request.body == BODY.encode()
    refused = svc.rpc("pua.send_publish", {"pres_uri": "sip:alice@example.com", "expires": 600,
                                           "event": "x-unknown-event", "body": BODY}, ident=2)
    assert refused["error"]["code"] == -32602
    assert "x-unknown-event" in refused["error"]["message"]
    assert "as-feature-event" in refused["error"]["message"]


def test_without_the_setting_the_event_is_refused(service: Start) -> None:
    """The same publish to a service without the setting is refused."""
    svc = service()
    refused = svc.rpc("pua.send_publish", {"pres_uri": "sip:alice@example.com", "expires": 600,
                                           "event": "as-feature-event", "body": BODY})
    assert refused["error"]["code"] == -32602
    assert "as-feature-event" in refused["error"]["message"]


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_sip_port_in_use_is_named_and_nothing_is_created(tmp_path: Path, kind: str) -> None:
    """A SIP listen address held by another socket stops the start with a
    message naming it and --listen, exit 1, no traceback; the data
    directory is not created."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    if kind == "tcp":
        holder.listen()
    port = holder.getsockname()[1]
    data_dir = tmp_path / "var"
    try:
        result = _serve("--listen", f"{kind}:127.0.0.1:{port}",
                        "--api", f"127.0.0.1:{find_free_port(udp=False)}", data_dir=data_dir)
    finally:
        holder.close()
    assert result.returncode == 1, result.stderr
    assert (f"{kind} 127.0.0.1:{port} is already in use (another pua or SIP server?); "
            "choose another with --listen") in result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()


def test_api_port_in_use_is_named_and_nothing_is_created(tmp_path: Path) -> None:
    """An API port held by another socket stops the start naming it and
    --api; the SIP ports are let go, and nothing is created on disk."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    api_port = holder.getsockname()[1]
    sip_port = find_free_port()
    data_dir = tmp_path / "var"
    try:
        result = _serve("--listen", f"udp:127.0.0.1:{sip_port}", "--api", f"127.0.0.1:{api_port}",
                        data_dir=data_dir)
    finally:
        holder.close()
    assert result.returncode == 1, result.stderr
    assert (f"api 127.0.0.1:{api_port} is already in use (another pua?); "
            "choose another with --api") in result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()
    again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    again.bind(("127.0.0.1", sip_port))  # the failed start did not keep it
    again.close()


def test_unreachable_database_leaves_no_data_dir(tmp_path: Path) -> None:
    """A store that cannot be opened stops the start, and the data directory
    the start would have used is not left behind."""
    data_dir = tmp_path / "var"
    result = _serve("--listen", f"udp:127.0.0.1:{find_free_port()}",
                    "--api", f"127.0.0.1:{find_free_port(udp=False)}",
                    "--db-url", f"sqlite:///{tmp_path}/missing/dir/pua.db", data_dir=data_dir)
    assert result.returncode == 1, result.stderr
    assert "cannot open database" in result.stderr
    assert not data_dir.exists()


def test_start_up_log_names_the_outbound_proxy(service: Start) -> None:
    """The start-up log says where requests go: the outbound proxy when one
    is set, DNS of each URI otherwise."""
    with_proxy = service("--outbound-proxy", "sip:127.0.0.1:5999")
    without = service()
    assert with_proxy.stop() == 0 and without.stop() == 0
    assert "INFO pua: requests go to the outbound proxy sip:127.0.0.1:5999" in with_proxy.stderr()
    log = without.stderr()
    assert "INFO pua: no outbound proxy: requests go to each URI's host by DNS" in log
    assert "outbound proxy sip:" not in log
