"""The adapters' methods on the management API: registrations
(``pua.register``, ``pua.registrations``, ``/registrations``), calls
(``pua.dialog``, ``pua.dialogs``, ``/dialogs``) and shared lines
(``pua.bla_add``, ``pua.bla_remove``, ``pua.bla_lines``, ``/bla/lines``)
and the XMPP gateway (``pua.xmpp``, ``/xmpp``); one behaviour on JSON-RPC
and REST, as for publications."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pua.adapters import Adapters
from pua.adapters.bla import SharedLines
from pua.adapters.dialogs import CallEvent, Dialogs
from pua.adapters.registrations import Registrations
from pua.errors import RemoteProtocolError
from pua.store import StoreError

from .rpc import (
    INVALID_PARAMS,
    NOT_STORED,
    REGISTER_PARAMS,
    Method,
    RpcError,
    _int,
    named_params,
    truth,
)

if TYPE_CHECKING:
    from pua.adapters.xmpp import XmppGateway

__all__ = ["DIALOG_PARAMS", "AdapterMethods", "add_adapter_routes"]

DIALOG_PARAMS = (
    "call_id", "from_tag", "caller", "callee", "state", "to_tag", "direction",
    "local_target", "remote_target", "lifetime", "reason", "code", "wait",
)  # fmt: skip
"""``pua.dialog``'s parameters; the first five are required."""

Stored = Callable[[], Awaitable[None]]
JsonReply = Callable[..., web.Response]


class AdapterMethods:
    """The pua.* methods of the adapters a service runs; ``stored`` (the
    API's store flush, raising RpcError NOT_STORED) runs before a change
    is acknowledged."""

    def __init__(self, adapters: Adapters, stored: Stored) -> None:
        self.adapters = adapters
        self.stored = stored

    def table(self) -> dict[str, Method]:
        """Method name -> coroutine function."""
        return {
            "pua.register": self.register,
            "pua.registrations": self.list_registrations,
            "pua.dialog": self.dialog,
            "pua.dialogs": self.list_dialogs,
            "pua.bla_add": self.bla_add,
            "pua.bla_remove": self.bla_remove,
            "pua.bla_lines": self.bla_lines,
            "pua.xmpp": self.xmpp,
            "pua.xmpp_address": self.xmpp_address,
        }

    # -- registrations --------------------------------------------------------------
    def _registrations(self) -> Registrations:
        if self.adapters.registrations is None:
            raise RpcError(
                INVALID_PARAMS, "Invalid params: registrations are off (usrloc or reginfo)"
            )
        return self.adapters.registrations

    async def register(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """Bind ``contact`` to ``aor`` (expires 0: unbind) as a REGISTER
        would, from a platform's own feed; the bindings of ``aor``, once
        stored."""
        values = named_params(params, REGISTER_PARAMS, required=2)
        return await self.register_values(values)

    async def register_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """:meth:`register` from named values (REST shares it)."""
        registrations = self._registrations()
        expires = values.get("expires")
        cseq = values.get("cseq")
        q = values.get("q")
        try:
            report = await registrations.register(
                str(values["aor"]),
                str(values["contact"]),
                None if expires is None else _int(values, "expires", 0),
                call_id=None if values.get("call_id") is None else str(values["call_id"]),
                cseq=None if cseq is None else _int(values, "cseq", 1),
                q=None if q is None else str(q),
            )
        except RemoteProtocolError as exc:
            raise _refused(exc) from None
        except StoreError as exc:
            raise RpcError(NOT_STORED, f"done, but not stored: {exc}") from None
        return {"aor": values["aor"], **report}

    async def list_registrations(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """The live bindings (of ``aor`` when given) and the counters."""
        values = named_params(params, ("aor",), required=0)
        registrations = self._registrations()
        aor = values.get("aor")
        try:
            bindings = registrations.bindings(None if aor is None else str(aor))
        except RemoteProtocolError as exc:
            raise RpcError(INVALID_PARAMS, f"Invalid params: {exc}") from None
        return {"bindings": bindings, "counters": dict(registrations.counters)}

    # -- calls ----------------------------------------------------------------------
    def _dialogs(self) -> Dialogs:
        if self.adapters.dialogs is None:
            raise RpcError(INVALID_PARAMS, "Invalid params: dialog state is off (dialoginfo)")
        return self.adapters.dialogs

    async def dialog(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """What happened to a call (trying, early, confirmed, terminated):
        published as the dialog state of its caller and callee."""
        values = named_params(params, DIALOG_PARAMS, required=5)
        return await self.dialog_values(values)

    async def dialog_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """:meth:`dialog` from named values (REST shares it).  With ``wait``
        (the default) it answers once each PUBLISH's first answer is in
        and stored; with ``wait`` false at once, the PUBLISHes sent."""
        dialogs = self._dialogs()
        wait = truth(values, "wait", True)
        try:
            event = CallEvent.from_values({k: v for k, v in values.items() if v is not None})
        except RemoteProtocolError as exc:
            raise RpcError(INVALID_PARAMS, f"Invalid params: {exc}") from None
        report = await dialogs.report(event, wait=wait)
        if wait:
            # answered, so stored (not waited for: nothing is answered yet,
            # and a proxy's worker waits on this call)
            await self.stored()
        return report

    async def list_dialogs(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """The calls held (of ``presentity`` when given) and the counters."""
        values = named_params(params, ("presentity",), required=0)
        dialogs = self._dialogs()
        uri = values.get("presentity")
        return {
            "presentities": dialogs.calls(None if uri is None else str(uri)),
            "counters": dict(dialogs.counters),
        }

    # -- shared lines ---------------------------------------------------------------
    def _lines(self) -> SharedLines:
        if self.adapters.bla is None:
            raise RpcError(INVALID_PARAMS, "Invalid params: shared lines are off (bla)")
        return self.adapters.bla

    async def bla_add(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """Make ``aor`` a shared line: its phones are subscribed to."""
        values = named_params(params, ("aor",), required=1)
        return await self._line_change(values, add=True)

    async def bla_remove(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """Stop sharing a line added at run time."""
        values = named_params(params, ("aor",), required=1)
        return await self._line_change(values, add=False)

    async def _line_change(self, values: dict[str, Any], *, add: bool) -> dict[str, Any]:
        lines = self._lines()
        aor = values["aor"]
        if not isinstance(aor, str):
            raise RpcError(INVALID_PARAMS, "Invalid params: aor must be a string")
        try:
            return await (lines.add(aor) if add else lines.remove(aor))
        except RemoteProtocolError as exc:
            raise _refused(exc) from None
        except StoreError as exc:
            raise RpcError(NOT_STORED, f"not stored, nothing changed: {exc}") from None

    async def bla_lines(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """The shared lines, their phones, and the counters."""
        named_params(params, (), required=0)
        lines = self._lines()
        return {"lines": lines.views(), "counters": dict(lines.counters)}

    # -- the XMPP gateway -----------------------------------------------------------
    async def xmpp(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """The gateway: its link to the XMPP server, the XMPP users it
        knows and their available resources, its records and counters."""
        named_params(params, (), required=0)
        return self._gateway().view()

    def _gateway(self) -> XmppGateway:
        if self.adapters.xmpp is None:
            raise RpcError(INVALID_PARAMS, "Invalid params: the XMPP gateway is off (xmpp)")
        return self.adapters.xmpp

    async def xmpp_address(self, params: list[Any] | dict[str, Any]) -> dict[str, str]:
        """The other side's address of a SIP URI or a JID (400 when it has
        none, 404 when it is no user of either side)."""
        values = named_params(params, ("address",), required=1)
        gateway = self._gateway()
        address = values["address"]
        if not isinstance(address, str):
            raise RpcError(INVALID_PARAMS, "Invalid params: address must be a string")
        try:
            return gateway.address(address)
        except RemoteProtocolError as exc:
            raise _refused(exc) from None


def _refused(exc: RemoteProtocolError) -> RpcError:
    """An adapter's refusal as the API's: its status goes along (REST
    answers 404 or 409 by it)."""
    return RpcError(INVALID_PARAMS, f"Invalid params: {exc}", {"status": exc.status})


def add_adapter_routes(
    app: web.Application,
    methods: AdapterMethods,
    read_json: Callable[[web.Request], Awaitable[dict[str, Any]]],
    reply: JsonReply,
    problem: JsonReply,
) -> None:
    """``/registrations``, ``/dialogs`` and ``/bla/lines``: GET lists, POST
    changes (DELETE ``/bla/lines/{aor}`` removes a line); GET ``/xmpp``."""

    def refusal(exc: RpcError) -> web.Response:
        status = 503 if exc.code == NOT_STORED else 400
        if isinstance(exc.data, dict) and exc.data.get("status") in (403, 500):
            status = 409
        if isinstance(exc.data, dict) and exc.data.get("status") in (404, 409):
            status = exc.data["status"]
        return problem(status, exc.message.removeprefix("Invalid params: "))

    Call = Callable[[web.Request], Awaitable[dict[str, Any]]]

    def route(call: Call) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                return reply(await call(request))
            except RpcError as exc:
                return refusal(exc)

        return handle

    async def posted(request: web.Request, names: tuple[str, ...], required: int) -> dict[str, Any]:
        return named_params(await read_json(request), names, required=required)

    async def register(request: web.Request) -> dict[str, Any]:
        return await methods.register_values(await posted(request, REGISTER_PARAMS, 2))

    async def dialog(request: web.Request) -> dict[str, Any]:
        return await methods.dialog_values(await posted(request, DIALOG_PARAMS, 5))

    async def line_add(request: web.Request) -> dict[str, Any]:
        return await methods.bla_add(await posted(request, ("aor",), 1))

    get = app.router.add_get
    get("/registrations", route(lambda r: methods.list_registrations({"aor": r.query.get("aor")})))
    app.router.add_post("/registrations", route(register))
    get(
        "/dialogs", route(lambda r: methods.list_dialogs({"presentity": r.query.get("presentity")}))
    )
    app.router.add_post("/dialogs", route(dialog))
    get("/bla/lines", route(lambda r: methods.bla_lines({})))
    app.router.add_post("/bla/lines", route(line_add))
    app.router.add_delete(
        "/bla/lines/{aor}", route(lambda r: methods.bla_remove({"aor": r.match_info["aor"]}))
    )
    get("/xmpp", route(lambda r: methods.xmpp({})))
    get(
        "/xmpp/address",
        route(lambda r: methods.xmpp_address({"address": r.query.get("address")})),
    )
