"""The same bad input is refused the same way on every route: JSON-RPC,
REST, the CLI through the API, the CLI on its own and the Python library
say the same thing, and nothing is sent or kept."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pua

from .running import RunningService

ALICE = "sip:alice@example.com"
NOT_XML = "available, at my desk"

Start = Callable[..., RunningService]


@pytest.fixture
def silent_hop() -> Iterator[socket.socket]:
    """A UDP next hop that records what reaches it and answers nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(65535))
        except BlockingIOError:
            return out


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pua", *args], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(
    ("event", "body", "words"),
    [
        ("presence", NOT_XML, "malformed XML"),
        ("dialog", "<dialog-info", "malformed XML"),
        ("message-summary", "voicemail: 2 new", "message summary"),
        ("x-feature", "<on/>", "unknown event 'x-feature'"),
    ],
)
def test_a_bad_publication_is_refused_alike_everywhere(
    service: Start, silent_hop: socket.socket, tmp_path: Path,
    event: str, body: str, words: str,
) -> None:
    """A body that is not what its event needs, or an event with no
    package: refused before sending by JSON-RPC (-32602), REST (400), the
    CLI through the API and on its own (exit 1 and 2) and pua.Agent
    (ValueError), each naming the problem; no request leaves, no record stays."""
    hop = f"sip:127.0.0.1:{silent_hop.getsockname()[1]}"
    svc = service("--outbound-proxy", hop)

    answer = svc.rpc("pua.publish", {"pres_uri": ALICE, "event": event, "body": body})
    assert answer["error"]["code"] == -32602 and words in answer["error"]["message"], answer

    status, problem = svc.post_status("/publications", {"pres_uri": ALICE, "event": event,
                                                  "body": body})
    assert status == 400 and words in problem["error"]["message"], problem

    document = tmp_path / "body"
    document.write_text(body)
    through = cli("publish", "--api", svc.api_url, "--pres-uri", ALICE, "--event", event,
                  "--body-file", str(document))
    assert through.returncode == 1 and words in through.stderr, through.stderr
    alone = cli("publish", "--server", hop, "--pres-uri", ALICE, "--event", event,
                "--body-file", str(document))
    assert alone.returncode == 2 and words in alone.stderr, alone.stderr

    async def library() -> str:
        async with pua.Agent(server=hop, cleanup_on_exit=False) as agent:
            with pytest.raises(ValueError) as refused:
                await agent.publish(ALICE, body.encode(), event=event)
            assert agent.runtime.counts()["records"] == 0
            return str(refused.value)

    assert words in asyncio.run(library())
    assert svc.rpc("pua.list")["result"] == []
    assert received(silent_hop) == []
