"""A small client of the management API, for the command line (blocking)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from pua.errors import PuaError

__all__ = ["ApiClient", "ApiError", "api_url"]


# How long a call waits for the API by default: longer than the service
# waits for a SIP outcome with the default timers (3·64·T1 + T4 = 101 s), so
# that a SIP failure is reported as such and not as a silent API.
DEFAULT_TIMEOUT = 150.0


class ApiError(PuaError):
    """The API answered with an error (``code`` and ``message``), or could not
    be reached or did not answer (code 0).  For a failed SIP request ``sip``
    holds what the service said of it: status, reason, retrying, retry_at."""

    def __init__(self, code: int, message: str, sip: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code} {message}" if code else message)
        self.code = code
        self.message = message
        self.sip = sip


class ApiClient:
    """JSON-RPC calls and the event stream of a pua service."""

    def __init__(
        self, url: str, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.url = api_url(url)
        self.token = token
        self.timeout = timeout
        self._next_id = 0

    def _request(self, path: str, data: bytes | None = None) -> urllib.request.Request:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return urllib.request.Request(self.url + path, data=data, headers=headers)

    def call(self, method: str, params: list[Any] | dict[str, Any]) -> Any:
        """One JSON-RPC call; its result, or ApiError."""
        self._next_id += 1
        body = json.dumps(
            {"jsonrpc": "2.0", "method": method, "params": params, "id": self._next_id}
        ).encode()
        try:
            with urllib.request.urlopen(self._request("/rpc", body), timeout=self.timeout) as reply:
                answer = json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _http_message(exc)) from None
        except TimeoutError:
            raise ApiError(
                0, f"the API at {self.url} did not answer within {self.timeout:g} s"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise ApiError(
                    0, f"the API at {self.url} did not answer within {self.timeout:g} s"
                ) from None
            raise ApiError(0, f"cannot reach the API at {self.url}: {reason}") from None
        if "error" in answer:
            error = answer["error"]
            data = error.get("data")
            sip = data if isinstance(data, dict) and "retrying" in data else None
            raise ApiError(int(error.get("code", 0)), str(error.get("message", "error")), sip)
        return answer.get("result")

    def get(self, path: str) -> tuple[str, bytes]:
        """A GET of ``path``: its Content-Type and body, or ApiError."""
        try:
            with urllib.request.urlopen(self._request(path), timeout=self.timeout) as reply:
                return reply.headers.get("Content-Type", ""), reply.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _http_message(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(0, f"cannot reach the API at {self.url}: {reason}") from None

    def events(self) -> Iterator[dict[str, Any]]:
        """The event stream, one decoded event at a time (until closed)."""
        try:
            reply = urllib.request.urlopen(self._request("/events"), timeout=None)
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _http_message(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(0, f"cannot reach the API at {self.url}: {reason}") from None
        with reply:
            for raw in reply:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("data: "):
                    yield json.loads(line[6:])


def api_url(text: str) -> str:
    """The API's base URL from a URL or ``IP:PORT`` (as ``pua serve --api``
    takes it): ``127.0.0.1:8765`` is ``http://127.0.0.1:8765``."""
    text = text.strip().rstrip("/")
    if "://" not in text:
        text = f"http://{text}"
    return text


def _http_message(exc: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(exc.read())
        return str(data["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return str(exc.reason)
