"""Limits of the management API, tried on a running `pua serve`: the size
of a request body, the number of records a client can make, and the token
(compared in constant time)."""

from __future__ import annotations

import ast
import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pua.api.http

from .running import RunningService

Start = Callable[..., RunningService]
PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    '<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A UDP port that takes every request and answers none: records made
    toward it stay, waiting."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def post_raw(svc: RunningService, path: str, body: bytes,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST ``body``; the status and the JSON answer, errors included."""
    request = urllib.request.Request(svc.api_url + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            text = reply.read()
            return reply.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def rpc_call(method: str, params: Any, ident: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": ident}).encode()


def padded(body: bytes, spaces: int) -> bytes:
    """The same JSON, made longer with white space."""
    return body[:-1] + b" " * spaces + b"}"


def test_request_body_over_api_max_body_is_413(service: Start) -> None:
    """With api_max_body 4096 a larger body is answered 413 naming the
    limit, on JSON-RPC and REST alike; a body under it is read as usual."""
    svc = service("--api-max-body", "4096")
    big = padded(rpc_call("pua.list", []), 5000)
    for path in ("/rpc", "/publications", "/subscriptions"):
        status, answer = post_raw(svc, path, big)
        assert status == 413, path
        assert answer["error"]["status"] == 413
        assert "4096" in answer["error"]["message"]
        assert "api_max_body" in answer["error"]["message"]
    status, answer = post_raw(svc, "/rpc", padded(rpc_call("pua.list", []), 3000))
    assert status == 200 and answer["result"] == []


def test_chunked_body_over_the_limit_is_413(service: Start) -> None:
    """A body sent without Content-Length (chunked) is cut off at the
    limit as it is read, and answered 413 the same way."""
    svc = service("--api-max-body", "4096")
    connection = http.client.HTTPConnection("127.0.0.1", svc.api_port, timeout=30)
    chunks = [padded(rpc_call("pua.list", []), 10_000)]
    connection.request("POST", "/rpc", body=iter(chunks), encode_chunked=True,
                       headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    reply = connection.getresponse()
    assert reply.status == 413
    assert "api_max_body" in json.loads(reply.read())["error"]["message"]
    connection.close()


def held_body(svc: RunningService, length: int) -> socket.socket:
    """A connection that announced a JSON-RPC body of ``length`` bytes and
    sent only its first bytes: pua holds its room until it is answered."""
    sock = socket.create_connection(("127.0.0.1", svc.api_port), timeout=30)
    sock.sendall(b"POST /rpc HTTP/1.1\r\nHost: pua\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % length + rpc_call("pua.stats", [])[:-1])
    return sock


def test_bodies_held_beyond_api_max_buffered_are_refused_before_reading(
        service: Start) -> None:
    """With api_max_buffered 100000, while one client holds a body of 60000
    bytes half sent, another body of 60000 is refused at once and unread:
    503 with Retry-After, on JSON-RPC error -32003 with data.retry_after,
    on REST a 503 naming the limit; a small call still goes through, and
    once the held body is answered, the large one goes through too."""
    svc = service("--api-max-body", "60000", "--api-max-buffered", "100000")
    large = padded(rpc_call("pua.stats", []), 60_000 - len(rpc_call("pua.stats", [])))
    assert len(large) == 60_000
    holder = held_body(svc, 60_000)
    # The holder's room is taken once pua has read its head; until then a
    # large call passes (and changes nothing).
    deadline = time.monotonic() + 20
    status, answer = post_raw(svc, "/rpc", large)
    while status == 200 and time.monotonic() < deadline:
        status, answer = post_raw(svc, "/rpc", large)
    assert status == 503, answer
    assert answer["id"] is None
    assert answer["error"]["code"] == -32003
    assert answer["error"]["data"]["retry_after"] == 1
    assert "api_max_buffered" in answer["error"]["message"]
    request = urllib.request.Request(svc.api_url + "/publications", data=large, method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 503
    assert refused.value.headers["Retry-After"] == "1"
    problem = json.loads(refused.value.read())["error"]
    assert problem["retry_after"] == 1 and problem["max_buffered"] == 100_000
    status, answer = post_raw(svc, "/rpc", rpc_call("pua.stats", []))
    assert status == 200 and "result" in answer
    # The holder sends the rest of its body and is answered: its room is free.
    sent = len(rpc_call("pua.stats", [])) - 1
    holder.sendall(b" " * (60_000 - sent - 1) + b"}")
    assert b"200 OK" in holder.recv(65_536).split(b"\r\n", 1)[0]
    holder.close()
    status, answer = post_raw(svc, "/rpc", large)
    assert status == 200 and "result" in answer


def test_a_client_leaving_mid_body_is_no_error(service: Start) -> None:
    """A client that announces a body, sends part of it and closes is no
    fault of pua's: no 500 and no traceback in its log, and the API goes on
    answering."""
    svc = service("--api-max-body", "60000", "--api-max-buffered", "60000")
    holder = held_body(svc, 60_000)
    # Its body is being read once a second body finds no room (503).
    deadline = time.monotonic() + 20
    status, _ = post_raw(svc, "/rpc", padded(rpc_call("pua.stats", []), 50_000))
    while status == 200 and time.monotonic() < deadline:
        status, _ = post_raw(svc, "/rpc", padded(rpc_call("pua.stats", []), 50_000))
    assert status == 503
    holder.close()
    # Its room comes back once pua has seen it leave.
    status, answer = post_raw(svc, "/rpc", padded(rpc_call("pua.stats", []), 50_000))
    while status == 503 and time.monotonic() < deadline:
        status, answer = post_raw(svc, "/rpc", padded(rpc_call("pua.stats", []), 50_000))
    assert status == 200 and "result" in answer
    assert svc.stop() == 0
    log = svc.stderr()
    assert "Traceback" not in log and "Error handling request" not in log, log


def test_records_beyond_max_records_are_refused(service: Start, black_hole: int) -> None:
    """With max_records 2, a third publication or subscription is refused
    (JSON-RPC error -32002, REST 503) naming the limit, and nothing is
    made; a change to a record held still goes through."""
    svc = service("--max-records", "2")
    target = f"sip:alice@127.0.0.1:{black_hole}"
    for n in (1, 2):
        answer = svc.rpc("pua.send_publish", {"pres_uri": target, "id": f"p{n}", "body": PIDF})
        assert "result" in answer, answer
    refused = svc.rpc("pua.send_publish", {"pres_uri": target, "id": "p3", "body": PIDF})
    assert refused["error"]["code"] == -32002
    assert "max_records" in refused["error"]["message"]
    assert refused["error"]["data"] == {"max_records": 2, "records": 2}
    status, problem = post_raw(svc, "/subscriptions", json.dumps(
        {"pres_uri": target, "watcher_uri": "sip:bob@example.com", "wait": False}).encode())
    assert status == 503
    assert "max_records" in problem["error"]["message"] and problem["error"]["max_records"] == 2
    held = svc.rpc("pua.list", ["."])["result"]
    assert [r["kind"] for r in held] == ["publication", "publication"]
    again = svc.rpc("pua.send_publish", {"pres_uri": target, "id": "p1", "body": PIDF})
    assert "result" in again, again


def test_a_batch_cannot_pass_max_records(service: Start, black_hole: int) -> None:
    """The calls of one JSON-RPC batch run together, yet make no more
    records than max_records allows: each is counted before the next."""
    svc = service("--max-records", "3")
    target = f"sip:alice@127.0.0.1:{black_hole}"
    batch = json.dumps([
        {"jsonrpc": "2.0", "method": "pua.send_publish", "id": n,
         "params": {"pres_uri": target, "id": f"p{n}", "body": PIDF}}
        for n in range(5)
    ]).encode()
    status, answers = post_raw(svc, "/rpc", batch)
    assert status == 200
    codes = sorted(a["error"]["code"] for a in answers if "error" in a)
    assert codes == [-32002, -32002]
    assert len(svc.rpc("pua.list", ["."])["result"]) == 3


def test_wrong_tokens_are_refused(service: Start) -> None:
    """A token of the right length, a prefix of it, and one longer are all
    401; the right one in the header or the query works."""
    svc = service(token="s3cret-token")
    for wrong in ("s3cret-tokeX", "s3cret", "s3cret-token-and-more", ""):
        status, _ = post_raw(svc, "/rpc", rpc_call("pua.stats", []),
                             headers={"Authorization": f"Bearer {wrong}"})
        assert status == 401, wrong
    status, answer = post_raw(svc, "/rpc", rpc_call("pua.stats", []),
                              headers={"Authorization": "Bearer s3cret-token"})
    assert status == 200 and "result" in answer


def test_token_is_compared_in_constant_time() -> None:
    """The API compares the token only with hmac.compare_digest, whose
    time does not depend on where the first difference is: no ==, !=,
    startswith or in on it anywhere in the module."""
    tree = ast.parse(Path(pua.api.http.__file__).read_text())
    digest_calls = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr == "compare_digest"
    ]
    assert digest_calls, "the token is not compared with hmac.compare_digest"
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            if "token" in names or "given" in names:
                assert all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops), ast.unparse(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id in ("token", "given"):
                assert node.func.attr in ("encode",), ast.unparse(node)


def _read_response(reader: Any) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from a socket file."""
    status = int(reader.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline().decode().rstrip("\r\n")):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, reader.read(int(headers.get("content-length", "0")))


def test_one_connection_carries_pipelined_calls_then_other_routes(service: Start) -> None:
    """Two JSON-RPC calls sent in one write on a keep-alive connection are
    answered in order, and a GET of another route on the same connection
    after them is answered too (by the general HTTP server)."""
    svc = service()
    sock = socket.create_connection(("127.0.0.1", svc.api_port), timeout=30)
    reader = sock.makefile("rb")
    try:
        calls = [rpc_call("pua.stats", [], ident=7), rpc_call("pua.list", [], ident=8)]
        sock.sendall(b"".join(
            b"POST /rpc HTTP/1.1\r\nHost: pua\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body for body in calls))
        first = _read_response(reader)
        second = _read_response(reader)
        assert first[0] == 200 and json.loads(first[2])["id"] == 7
        assert "records" in json.loads(first[2])["result"]
        assert second[0] == 200 and json.loads(second[2]) == {"jsonrpc": "2.0", "result": [],
                                                             "id": 8}
        sock.sendall(b"GET /records HTTP/1.1\r\nHost: pua\r\n\r\n")
        status, _, body = _read_response(reader)
        assert status == 200 and json.loads(body) == {"records": []}
    finally:
        reader.close()
        sock.close()
