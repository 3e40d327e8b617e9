"""`pua publish` as a user meets it: answers, failures, timeouts, bad arguments.

Scripted error answers come from SIPp; the retransmission check uses a
small UDP peer in this test that stays silent until the third copy.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pua.sip import make_response, parse_message
from tests.peers.sipp import SippUAS

ALICE = "sip:alice@example.com"


def pua(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "pua", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


@pytest.mark.interop
@pytest.mark.parametrize(
    ("scenario", "status", "header"),
    [
        ("publish_412", "412", None),
        ("publish_423", "423", "Min-Expires: 1800"),
        ("publish_503", "503", "Retry-After: 5"),
    ],
)
def test_error_answer_is_printed_and_exits_1(
    sipp_uas: Callable[[str], SippUAS], scenario: str, status: str, header: str | None
) -> None:
    """A 4xx/5xx answer is printed with its useful headers, and the exit
    status is 1 with a one-line message naming the status."""
    uas = sipp_uas(scenario)
    result = pua("publish", "--server", uas.uri, "--pres-uri", ALICE, "--basic", "open")
    assert result.returncode == 1
    assert result.stdout.startswith(f"SIP/2.0 {status} ")
    if header is not None:
        assert header in result.stdout.splitlines()
    assert result.stderr.startswith(f"pua: error: {status} ")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.interop
def test_success_from_sipp(sipp_uas: Callable[[str], SippUAS]) -> None:
    """A 200 with SIP-ETag and Expires prints both and exits 0."""
    uas = sipp_uas("publish_200")
    result = pua("publish", "--server", uas.uri, "--pres-uri", ALICE, "--basic", "closed")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "SIP/2.0 200 OK"
    assert any(line.startswith("SIP-ETag: ") for line in lines)
    assert "Expires: 3600" in lines


@pytest.mark.interop
def test_no_answer_times_out_after_timer_f(sipp_uas: Callable[[str], SippUAS]) -> None:
    """With nobody answering, the command gives up after 64*T1 and says so."""
    uas = sipp_uas("no_answer")
    result = pua("publish", "--server", uas.uri, "--pres-uri", ALICE, "--basic", "open", "--t1", "0.02")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no final response to PUBLISH" in result.stderr
    assert "1.28 s" in result.stderr


@pytest.fixture
def slow_peer() -> Iterator[tuple[int, list[bytes]]]:
    """A UDP peer that ignores the first two copies of a request and answers
    200 (with SIP-ETag and Expires) to the third."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10.0)
    seen: list[bytes] = []

    def serve() -> None:
        try:
            while len(seen) < 3:
                data, addr = sock.recvfrom(65535)
                seen.append(data)
            response = make_response(parse_message(seen[-1]), 200, to_tag="t1")  # type: ignore[arg-type]
            response.headers.add("SIP-ETag", "e1")
            response.headers.add("Expires", "60")
            sock.sendto(bytes(response), addr)
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1], seen
    sock.close()
    thread.join(timeout=5)


def test_request_is_retransmitted_until_answered(slow_peer: tuple[int, list[bytes]]) -> None:
    """Over UDP the same PUBLISH (same branch, same bytes) is resent per
    timer E until an answer comes."""
    port, seen = slow_peer
    result = pua("publish", "--server", f"sip:127.0.0.1:{port}", "--pres-uri", ALICE,
                 "--basic", "open", "--t1", "0.05")
    assert result.returncode == 0, result.stderr
    assert "SIP-ETag: e1" in result.stdout.splitlines()
    assert len(seen) == 3
    assert seen[0] == seen[1] == seen[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "sip:127.0.0.1:5070", "--pres-uri", ALICE], "needs a body"),
        (["--server", "http://x", "--pres-uri", ALICE, "--basic", "open"], "--server"),
        (["--server", "sip:127.0.0.1:99999", "--pres-uri", ALICE, "--basic", "open"], "--server"),
        (["--server", "sip:127.0.0.1;transport=sctp", "--pres-uri", ALICE, "--basic", "open"], "sctp"),
        (["--server", "sip:127.0.0.1", "--pres-uri", "alice", "--basic", "open"], "--pres-uri"),
        (["--server", "sip:127.0.0.1", "--pres-uri", ALICE, "--remove"], "--remove needs --etag"),
        (["--server", "sip:127.0.0.1", "--pres-uri", ALICE, "--basic", "open", "--expires", "-5"], "--expires"),
        (["--server", "sip:127.0.0.1", "--pres-uri", ALICE, "--basic", "open", "--header", "NoColon"], "--header"),
        (["--server", "sip:127.0.0.1", "--pres-uri", ALICE, "--basic", "maybe"], "--basic"),
        # An event with no package is refused as the service refuses it.
        (["--server", "sip:127.0.0.1", "--pres-uri", ALICE, "--event", "x-custom", "--body-file", "/etc/hostname"], "--event-package NAME=TYPE/SUBTYPE"),
        # A presence body that is not XML is refused before sending, as by the API.
        (["--server", "sip:127.0.0.1", "--pres-uri", ALICE, "--body-file", "/etc/hostname"], "malformed XML"),
        (["--server", "sip:127.0.0.1", "--pres-uri", ALICE, "--event", "message-summary", "--body-file", "/etc/hostname"], "message summary"),
        (["--server", "sip:127.0.0.1", "--pres-uri", ALICE, "--basic", "open", "--event-package", "bad name=x/y"], "--event-package"),
        (["--dns-server", "dns.example", "--pres-uri", ALICE, "--basic", "open"], "--dns-server"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    """Bad arguments stop before anything is sent, with exit status 2 and a
    message that names the problem."""
    result = pua("publish", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_unresolvable_server_is_a_one_line_error() -> None:
    """A host name that does not resolve fails with exit 1 and one line."""
    result = pua("publish", "--server", "sip:no-such-host.invalid", "--pres-uri", ALICE, "--basic", "open")
    assert result.returncode == 1
    assert result.stderr.startswith("pua: error: cannot locate no-such-host.invalid: NXDOMAIN")


def test_a_summary_written_in_an_editor_goes_out_with_crlf(
    slow_peer: tuple[int, list[bytes]], tmp_path: Path
) -> None:
    """A message-summary body written with LF line ends is sent with CRLF
    (RFC 3842 §5.2), and --server takes host:port without sip:."""
    port, seen = slow_peer
    summary = tmp_path / "mwi.txt"
    summary.write_bytes(b"Messages-Waiting: yes\nMessage-Account: sip:alice@example.com\n"
                        b"Voice-Message: 2/8 (0/2)\n")
    result = pua("publish", "--server", f"127.0.0.1:{port}", "--pres-uri", ALICE,
                 "--event", "message-summary", "--body-file", str(summary), "--t1", "0.05")
    assert result.returncode == 0, result.stderr
    body = seen[-1].split(b"\r\n\r\n", 1)[1]
    assert body == (b"Messages-Waiting: yes\r\nMessage-Account: sip:alice@example.com\r\n"
                    b"Voice-Message: 2/8 (0/2)\r\n")


def test_a_declared_event_goes_out_with_its_content_type(
    slow_peer: tuple[int, list[bytes]], tmp_path: Path
) -> None:
    """--event-package NAME=TYPE lets an event pua has no package for
    through, with that Content-Type; its XML body is checked first."""
    port, seen = slow_peer
    document = tmp_path / "feature.xml"
    document.write_bytes(b'<?xml version="1.0"?><feature xmlns="urn:x">on</feature>')
    result = pua("publish", "--server", f"sip:127.0.0.1:{port}", "--pres-uri", ALICE,
                 "--event", "as-feature-event", "--body-file", str(document), "--t1", "0.05",
                 "--event-package", "as-feature-event=application/x-as-feature-event+xml")
    assert result.returncode == 0, result.stderr
    head = seen[-1].split(b"\r\n\r\n", 1)[0].decode()
    assert "Event: as-feature-event" in head
    assert "Content-Type: application/x-as-feature-event+xml" in head
