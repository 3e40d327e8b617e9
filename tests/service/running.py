"""`pua serve` as a real process for the service tests."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.peers import find_free_port


class EventStream:
    """The service's /events, read in a thread; wait_for() blocks on a
    condition until a matching event arrives (or the timeout), wait_until()
    until a condition holds, tested again at each event."""

    def __init__(self, url: str, *, token: str | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(url + "/events", headers=headers)
        self._reply = urllib.request.urlopen(request, timeout=60)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._reply:
                line = raw.decode()
                if line.startswith("data: "):
                    with self._cond:
                        self.events.append(json.loads(line[6:]))
                        self._cond.notify_all()
        except OSError:
            pass

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        with self._cond:
            found = self._cond.wait_for(lambda: next((e for e in self.events if match(e)), None),
                                        timeout=timeout)
        assert found, f"no matching event; saw {self.events}"
        return next(e for e in self.events if match(e))

    def wait_until(self, check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
        """``check()``'s first true value, tested now and again after each
        event the service reports (what pua does to the outside world, a
        PUBLISH answered, a NOTIFY, comes with an event); AssertionError
        naming ``what`` when none comes within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = -1
            while True:
                if len(self.events) != seen:
                    seen = len(self.events)
                    value = check()
                    if value:
                        return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not within {timeout} s: {what}")
                self._cond.wait(timeout=left)


class RunningService:
    """A `pua serve` child process on free loopback ports.

    ``sip_port`` takes UDP and TCP; ``api_url`` is the management API.
    Extra flags are passed through; environment variables PUA_* can be given.
    ``host`` is the address to listen on (SIP and API), ``command_prefix``
    what runs the command (e.g. ``ip netns exec NAME``): where the host is
    not this namespace's, give ``sip_port`` and ``api_port`` (free ports
    cannot be looked up from here), and a ``token`` beyond loopback.
    """

    def __init__(self, *flags: str, data_dir: Path, env: dict[str, str] | None = None,
                 token: str | None = None, sip_port: int | None = None,
                 host: str = "127.0.0.1", api_port: int | None = None,
                 command_prefix: Sequence[str] = ()) -> None:
        self.host = host
        self.sip_port = sip_port or find_free_port(host)
        self.api_port = api_port or find_free_port(host, udp=False)
        self.token = token
        args = [
            *command_prefix, sys.executable, "-m", "pua", "serve",
            "--listen", f"udp:{host}:{self.sip_port}",
            "--listen", f"tcp:{host}:{self.sip_port}",
            "--api", f"{host}:{self.api_port}",
            "--data-dir", str(data_dir), *flags,
        ]
        if token:
            args += ["--api-token", token]
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        self.api_url = f"http://{host}:{self.api_port}"
        self._wait_ready()
        # What pua writes is read as it comes: a pipe nobody reads fills
        # up and then stops pua at its next log line.
        self._err: list[str] = []
        self._err_taken = 0
        self._err_lock = threading.Lock()
        self._drains = [
            threading.Thread(target=self._drain, args=(self.process.stderr, self._err),
                             daemon=True),
            threading.Thread(target=self._drain, args=(self.process.stdout, None), daemon=True),
        ]
        for thread in self._drains:
            thread.start()
        self._events: EventStream | None = None

    def event_stream(self) -> EventStream:
        """The service's /events, opened at the first call."""
        if self._events is None:
            self._events = EventStream(self.api_url, token=self.token)
        return self._events

    def _drain(self, stream: Any, into: list[str] | None) -> None:
        for line in stream:
            if into is not None:
                with self._err_lock:
                    into.append(line)

    def _wait_ready(self, timeout: float = 20.0) -> None:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(timeout=left):
                line = self.process.stdout.readline()
                if not line:
                    break
                if line.startswith("pua serve: API"):
                    return
        self.process.kill()
        raise AssertionError(f"pua serve did not start: {self.process.stderr.read() if self.process.stderr else ''}")

    def rpc(self, method: str, params: Any = None, *, ident: int = 1) -> dict[str, Any]:
        """One JSON-RPC call; the whole response object."""
        body = {"jsonrpc": "2.0", "method": method, "id": ident}
        if params is not None:
            body["params"] = params
        return self.post("/rpc", body)

    def post(self, path: str, data: Any, *, raw: bytes | None = None) -> Any:
        request = urllib.request.Request(
            self.api_url + path, data=raw if raw is not None else json.dumps(data).encode(),
            headers=self._headers(), method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            text = reply.read()
            return json.loads(text) if text else None

    def post_status(self, path: str, data: Any) -> tuple[int, Any]:
        """A REST POST: the HTTP status and the decoded answer, errors included."""
        request = urllib.request.Request(
            self.api_url + path, data=json.dumps(data).encode(),
            headers=self._headers(), method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get_status(self, path: str) -> tuple[int, Any]:
        """A REST GET: the HTTP status and the decoded answer, errors included."""
        request = urllib.request.Request(self.api_url + path, headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.api_url + path, headers=self._headers())
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.read()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise

    def stderr(self) -> str:
        """Everything pua wrote on stderr after it started (all of it once
        it has exited)."""
        if self.process.poll() is not None:
            self._drains[0].join(timeout=10)
        with self._err_lock:
            return "".join(self._err)

    def new_stderr(self) -> str:
        """What pua wrote on stderr since the last call."""
        with self._err_lock:
            text = "".join(self._err[self._err_taken:])
            self._err_taken = len(self._err)
        return text
