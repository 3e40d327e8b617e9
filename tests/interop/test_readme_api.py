"""The README's API examples, run as written (curl and all) against a
`pua serve` whose next hop is a real Kamailio presence server."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.peers.kamailio import KamailioPresence
from tests.service.running import RunningService

pytestmark = pytest.mark.interop

README = Path(__file__).resolve().parents[2] / "README.md"
# One example: a curl line reading its JSON from a here-document.
EXAMPLE = re.compile(r"^(curl [^\n]*<<'JSON')\n(.*?)\nJSON$", re.MULTILINE | re.DOTALL)


def examples() -> list[tuple[str, str]]:
    return EXAMPLE.findall(README.read_text())


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., RunningService]]:
    started: list[RunningService] = []

    def start(*flags: str) -> RunningService:
        svc = RunningService(*flags, data_dir=tmp_path / "var")
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


def test_the_readme_has_its_examples() -> None:
    """JSON-RPC and REST, presence, MWI, dialog and a subscription."""
    found = examples()
    assert len(found) >= 5
    text = " ".join(command + body for command, body in found)
    for needed in ("/rpc", "/publications", "/subscriptions", "message-summary", '"dialog"'):
        assert needed in text


def test_every_readme_example_works(
    service: Callable[..., RunningService], kamailio: KamailioPresence
) -> None:
    """Each example, run by bash as the README shows it, succeeds: JSON-RPC
    answers a result, REST answers 2xx; and Kamailio holds what was published."""
    svc = service("--outbound-proxy", kamailio.uri)
    address = svc.api_url.removeprefix("http://")
    for command, body in examples():
        script = f"{command.replace('localhost:8765', address)}\n{body}\nJSON\n"
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        answer = json.loads(done.stdout)
        if "/rpc" in command:
            assert "result" in answer, (command, answer)
        else:
            assert answer.get("id"), (command, answer)
    assert kamailio.presentity_rows(username="alice", domain="example.com")
    assert kamailio.presentity_rows(username="bob", domain="example.com")
    summaries = kamailio.presentity_rows(username="alice", domain="example.com",
                                         event="message-summary")
    assert summaries and bytes(summaries[0]["body"]).startswith(b"Messages-Waiting: yes\r\n")
