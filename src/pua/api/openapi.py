"""The OpenAPI description of the REST mirror (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAPI"]

_RECORD = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "Record id (URL-safe)"},
        "kind": {"type": "string", "enum": ["publication", "subscription"]},
        "pres_uri": {"type": "string"},
        "event": {"type": "string"},
        "state": {"type": "string"},
        "etag": {"type": ["string", "null"]},
        "watcher_uri": {"type": "string"},
        "source_flag": {"type": "integer", "description": "Who asked for it (the seed's flags)"},
        "source": {
            "type": "string",
            "description": "The source flag's name: MI_PUBLISH, XMPP_SUBSCRIBE, UL_PUBLISH...",
        },
        "expires_at": {"type": ["number", "null"], "description": "Unix time"},
        "last_status": {"type": ["integer", "null"]},
        "last_reason": {"type": "string"},
        "last_notify": {
            "description": "A subscription's last NOTIFY (null: none yet)",
            "oneOf": [{"$ref": "#/components/schemas/LastNotify"}, {"type": "null"}],
        },
    },
    "required": ["id", "kind", "pres_uri", "event", "state"],
}
_LAST_NOTIFY = {
    "type": "object",
    "properties": {
        "state": {"type": "string", "enum": ["active", "pending", "terminated"]},
        "reason": {"type": ["string", "null"]},
        "summary": {"type": "string", "description": "One line of the body"},
        "at": {"type": "number", "description": "Unix time it arrived"},
        "content_type": {"type": ["string", "null"]},
        "size": {"type": "integer", "description": "Bytes of the body"},
        "truncated": {
            "type": "boolean",
            "description": "Only the first 64 KiB of the body are kept",
        },
    },
}
_HISTORY = {
    "type": "object",
    "properties": {
        "now": {"type": "number", "description": "The server's Unix time"},
        "events": {
            "type": "array",
            "description": "The last 200 engine events, oldest first",
            "items": {
                "type": "object",
                "properties": {
                    "at": {"type": "number"},
                    "type": {"type": "string"},
                    "id": {"type": ["string", "null"]},
                    "pres_uri": {"type": ["string", "null"]},
                    "watcher_uri": {"type": ["string", "null"]},
                    "status": {"type": "integer"},
                    "reason": {"type": ["string", "null"]},
                    "state": {"type": "string"},
                    "summary": {"type": "string"},
                    "detail": {"type": "string", "description": "One line for people"},
                },
                "required": ["at", "type", "detail"],
            },
        },
    },
}
_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer"},
                "message": {"type": "string"},
                "sip_status": {"type": "integer"},
                "sip_reason": {"type": "string"},
                "retrying": {"type": "boolean"},
                "retry_at": {"type": ["number", "null"]},
                "id": {"type": "string"},
            },
        }
    },
}
_LIST = {
    "type": "object",
    "properties": {"records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}}},
}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _ok(schema: dict[str, Any], code: str = "200") -> dict[str, Any]:
    return {code: {"description": "OK", "content": {"application/json": {"schema": schema}}}}


_ERRORS = {
    "400": {
        "description": "Bad request",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
    "401": {
        "description": "Token missing or wrong",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
    "502": {
        "description": "The first attempt failed: sip_status and sip_reason say how,"
        " retrying whether pua keeps trying in the background (retry_at: when), id the record",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
    "504": {
        "description": "No answer from the SIP side in time (sip_status 408), same fields",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
}

# A POST that makes a record can also meet the API's limits.
_CREATE_ERRORS = {
    **_ERRORS,
    "413": {
        "description": "The request body is over api_max_body bytes (max_body says how many)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
    "503": {
        "description": "A new record would pass max_records (named, with the records held):"
        " nothing was made; or too many calls wait for the SIP side (api_max_waiting) or"
        " too many bytes of request bodies are held (api_max_buffered): nothing was done,"
        " Retry-After says when to try again; or the change is made but the database is"
        " unreachable",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
}


def _body(summary: str) -> dict[str, Any]:
    return {
        "parameters": _ID,
        "get": {
            "summary": summary,
            "responses": {
                "200": {"description": "The body as it is, in its own Content-Type"},
                "401": _ERRORS["401"],
                "404": {"description": "No such record, or no body"},
            },
        },
    }


def _refresh(summary: str) -> dict[str, Any]:
    return {
        "parameters": _ID,
        "post": {
            "summary": summary + "; answered at once, the outcome comes on /events. "
            "The wanted lifetime is kept.",
            "responses": {
                "202": {
                    "description": "Sent (or queued behind the request in flight)",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "refreshing": {"type": "boolean"},
                                    "record": {"$ref": "#/components/schemas/Record"},
                                },
                            }
                        }
                    },
                },
                "401": _ERRORS["401"],
                "404": {"description": "No such record"},
                "409": {"description": "The record cannot be refreshed now"},
            },
        },
    }


_BINDING = {
    "type": "object",
    "properties": {
        "aor": {"type": "string", "description": "Address of record, sip:user@domain"},
        "contact": {"type": "string", "description": "The contact URI bound"},
        "expires": {"type": "integer", "description": "Seconds left"},
        "q": {"type": ["string", "null"]},
        "call_id": {"type": "string", "description": "Call-ID of the REGISTER that bound it"},
        "cseq": {"type": "integer"},
        "event": {
            "type": "string",
            "description": "Last RFC 3680 event: registered, refreshed, shortened",
        },
        "registered_at": {"type": "number", "description": "Unix time"},
    },
    "required": ["aor", "contact", "expires", "call_id", "cseq", "event"],
}
_BINDINGS = {
    "type": "object",
    "properties": {
        "bindings": {"type": "array", "items": {"$ref": "#/components/schemas/Binding"}}
    },
}
_REGISTRATIONS: dict[str, Any] = {
    "get": {
        "summary": "Registration bindings (of one address of record with ?aor=), with the "
        "adapter's counters; 400 when registrations are off",
        "parameters": [{"name": "aor", "in": "query", "schema": {"type": "string"}}],
        "responses": {**_ok(_BINDINGS), "400": {"description": "Registrations are off"}},
    },
    "post": {
        "summary": "Bind a contact to an address of record (expires 0: unbind) as a REGISTER "
        "would, for platforms with their own feed; answered once the bindings are stored, "
        "and published as presence (and reg state) like a REGISTER's",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["aor", "contact"],
                        "properties": {
                            "aor": {"type": "string"},
                            "contact": {"type": "string"},
                            "expires": {
                                "type": "integer",
                                "minimum": 0,
                                "description": "Default: usrloc_default_expires",
                            },
                            "q": {"type": "string"},
                            "call_id": {"type": "string"},
                            "cseq": {"type": "integer"},
                        },
                    }
                }
            },
        },
        "responses": {
            **_ok(_BINDINGS),
            "400": {"description": "Malformed, or registrations are off"},
            "409": {
                "description": "Refused as a registrar would: CSeq out of order, too many contacts"
            },
            "503": {"description": "Done, but not stored"},
        },
    },
}

_URI = {"type": "string", "description": "A sip: URI"}
_CALL_EVENT = {
    "type": "object",
    "required": ["call_id", "from_tag", "caller", "callee", "state"],
    "additionalProperties": False,
    "properties": {
        "call_id": {"type": "string"},
        "from_tag": {"type": "string"},
        "to_tag": {"type": "string", "description": "Known from the first 1xx/2xx with a tag"},
        "caller": {**_URI, "description": "The From address: published as initiator"},
        "callee": {**_URI, "description": "The To address: published as recipient"},
        "state": {"type": "string", "enum": ["trying", "early", "confirmed", "terminated"]},
        "direction": {
            "type": "string",
            "enum": ["initiator", "recipient"],
            "description": "Publish only the caller's (initiator) or the callee's side; "
            "default both (as publish_to allows)",
        },
        "local_target": {**_URI, "description": "The caller's Contact"},
        "remote_target": {**_URI, "description": "The callee's Contact"},
        "lifetime": {
            "type": "integer",
            "minimum": 1,
            "description": "Seconds the call may last: the Expires of its dialog state "
            "(default dialog_lifetime; override_lifetime wins)",
        },
        "reason": {
            "type": "string",
            "enum": [
                "cancelled",
                "rejected",
                "replaced",
                "local-bye",
                "remote-bye",
                "error",
                "timeout",
            ],
            "description": "Why a terminated call ended (RFC 4235 state event)",
        },
        "code": {"type": "integer", "minimum": 100, "maximum": 699},
        "wait": {
            "type": "boolean",
            "default": True,
            "description": "Answer once each PUBLISH's first answer is in and stored "
            "(false: once sent; what a proxy feeding calls should use)",
        },
    },
}
_DIALOG_REPORT = {
    "type": "object",
    "properties": {
        "call_id": {"type": "string"},
        "state": {"type": "string"},
        "publications": {
            "type": "array",
            "description": "One per user whose dialog state changed (none: the event "
            "changed nothing, e.g. a late early after confirmed)",
            "items": {
                "type": "object",
                "properties": {
                    "pres_uri": {"type": "string"},
                    "id": {"type": "string", "description": "DIALOG_PUBLISH.<Call-ID>"},
                    "version": {"type": ["integer", "null"]},
                    "status": {
                        "type": ["integer", "null"],
                        "description": "200, the failure's status, or null: no answer yet "
                        "(pua keeps trying) or not waited for",
                    },
                    "reason": {"type": "string"},
                },
            },
        },
    },
}
_DIALOGS: dict[str, Any] = {
    "get": {
        "summary": "The calls held per user (of one with ?presentity=), with counters; "
        "400 when dialog state is off",
        "parameters": [{"name": "presentity", "in": "query", "schema": {"type": "string"}}],
        "responses": {
            **_ok({"type": "object", "properties": {"presentities": {"type": "array"}}}),
            "400": {"description": "Dialog state is off"},
        },
    },
    "post": {
        "summary": "What happened to a call: published as the dialog state (RFC 4235) of "
        "its caller and callee, each user's calls in one document (pua_dialoginfo). A "
        "state never moves back; terminated is final",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _CALL_EVENT}},
        },
        "responses": {
            **_ok(_DIALOG_REPORT),
            "400": {
                "description": "Malformed (the message names the field), or dialog state is off"
            },
            "503": {"description": "Done, but not stored"},
        },
    },
}

_LINE = {
    "type": "object",
    "properties": {
        "line": {"type": "string"},
        "source": {"type": "string", "enum": ["configured", "added", "register header"]},
        "phones": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Contacts pua subscribes to for dialog;sla",
        },
    },
}
_BLA_LINES: dict[str, Any] = {
    "get": {
        "summary": "The shared lines, their phones, and counters; 400 when bla is off",
        "responses": {
            **_ok({"type": "object", "properties": {"lines": {"type": "array", "items": _LINE}}}),
            "400": {"description": "Shared lines are off"},
        },
    },
    "post": {
        "summary": "Make an address of record a shared line (kept in the database): its "
        "phones registered now and later are subscribed to",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["aor"],
                        "properties": {"aor": {"type": "string"}},
                    }
                }
            },
        },
        "responses": {
            **_ok(_LINE),
            "400": {"description": "Not an address of record, or shared lines are off"},
            "503": {"description": "Not stored; nothing changed"},
        },
    },
}
_BLA_LINE: dict[str, Any] = {
    "delete": {
        "summary": "Stop sharing a line added at run time: its phones are unsubscribed",
        "parameters": [
            {"name": "aor", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {
            **_ok({"type": "object"}),
            "404": {"description": "Not a shared line"},
            "409": {"description": "A configured line (bla_lines): not removed"},
        },
    },
}
_XMPP: dict[str, Any] = {
    "get": {
        "summary": "The XMPP gateway: its link to the XMPP server, the XMPP users it knows "
        "and their available resources, its records and counters; 400 when xmpp is off",
        "responses": {
            **_ok(
                {
                    "type": "object",
                    "properties": {
                        "component": {"type": "string"},
                        "gateway_domain": {"type": "string"},
                        "server": {"type": "string"},
                        "connected": {"type": "boolean"},
                        "last_error": {"type": ["string", "null"]},
                        "users": {"type": "array", "items": {"type": "string"}},
                        "available": {"type": "object"},
                        "records": {"type": "object"},
                        "counters": {"type": "object"},
                    },
                }
            ),
            "400": {"description": "The XMPP gateway is off"},
        },
    },
}
_XMPP_ADDRESS: dict[str, Any] = {
    "get": {
        "summary": "The other side's address of a SIP URI or a JID, as the XMPP gateway maps it",
        "parameters": [
            {"name": "address", "in": "query", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {
            **_ok(
                {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string", "enum": ["sip user", "xmpp user"]},
                        "sip": {"type": "string"},
                        "jid": {"type": "string"},
                    },
                }
            ),
            "400": {"description": "No address on the other side, or the gateway is off"},
            "404": {"description": "No user of either side (another domain)"},
        },
    },
}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "pua management API",
        "version": "0.1.0",
        "description": "Publications and subscriptions of a pua service. "
        "JSON-RPC 2.0 with Kamailio's pua method names is at POST /rpc.",
    },
    "components": {
        "schemas": {
            "Record": _RECORD,
            "LastNotify": _LAST_NOTIFY,
            "Error": _ERROR,
            "Binding": _BINDING,
        },
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/records": {"get": {"summary": "Every record", "responses": _ok(_LIST)}},
        "/registrations": _REGISTRATIONS,
        "/dialogs": _DIALOGS,
        "/bla/lines": _BLA_LINES,
        "/bla/lines/{aor}": _BLA_LINE,
        "/xmpp": _XMPP,
        "/xmpp/address": _XMPP_ADDRESS,
        "/publications": {
            "get": {"summary": "Publications", "responses": _ok(_LIST)},
            "post": {
                "summary": "Publish: waits for the outcome of the first attempt (the 2xx or"
                " the failure, bounded by 3·64·T1 + T4) unless wait is false",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["pres_uri"],
                                "properties": {
                                    "pres_uri": {"type": "string"},
                                    "body": {"type": "string"},
                                    "event": {"type": "string", "default": "presence"},
                                    "expires": {"type": "integer", "default": 3600},
                                    "content_type": {"type": "string"},
                                    "id": {"type": "string"},
                                    "etag": {"type": "string"},
                                    "outbound_proxy": {"type": "string"},
                                    "extra_headers": {
                                        "oneOf": [
                                            {"type": "string"},
                                            {"type": "array", "items": {"type": "string"}},
                                        ],
                                        "description": "'Name: value' lines",
                                    },
                                    "wait": {"type": "boolean", "default": True},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    **_ok({"$ref": "#/components/schemas/Record"}, "201"),
                    **_CREATE_ERRORS,
                },
            },
        },
        "/publications/{id}": {
            "parameters": _ID,
            "get": {
                "summary": "One publication",
                "responses": {
                    **_ok({"$ref": "#/components/schemas/Record"}),
                    "404": {"description": "No such record"},
                },
            },
            "delete": {
                "summary": "Remove (Expires: 0)",
                "responses": {**_ok({"type": "object"}), **_ERRORS},
            },
        },
        "/subscriptions": {
            "get": {"summary": "Subscriptions", "responses": _ok(_LIST)},
            "post": {
                "summary": "Subscribe: waits for the first NOTIFY (or the 2xx when none"
                " comes within 64·T1), or the failure, unless wait is false",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["pres_uri", "watcher_uri"],
                                "properties": {
                                    "pres_uri": {"type": "string"},
                                    "watcher_uri": {"type": "string"},
                                    "event": {"type": "string", "default": "presence"},
                                    "expires": {"type": "integer", "default": 3600},
                                    "id": {"type": "string"},
                                    "wait": {"type": "boolean", "default": True},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    **_ok({"$ref": "#/components/schemas/Record"}, "201"),
                    **_CREATE_ERRORS,
                },
            },
        },
        "/subscriptions/{id}": {
            "parameters": _ID,
            "get": {
                "summary": "One subscription",
                "responses": {
                    **_ok({"$ref": "#/components/schemas/Record"}),
                    "404": {"description": "No such record"},
                },
            },
            "delete": {
                "summary": "Unsubscribe (Expires: 0)",
                "responses": {**_ok({"type": "object"}), **_ERRORS},
            },
        },
        "/publications/{id}/body": _body(
            "The body pua publishes for the publication, with its Content-Type"
        ),
        "/publications/{id}/refresh": _refresh(
            "Send a refresh PUBLISH now (SIP-If-Match, no body)"
        ),
        "/subscriptions/{id}/body": _body(
            "The body of the subscription's last NOTIFY (at most 64 KiB), with its Content-Type"
        ),
        "/subscriptions/{id}/refresh": _refresh("Send a refresh SUBSCRIBE in the dialog now"),
        "/events/recent": {
            "get": {
                "summary": "The recent engine events (kept over reloads)",
                "responses": _ok(_HISTORY),
            }
        },
        "/events": {
            "get": {
                "summary": "Server-Sent Events: every engine event as JSON",
                "responses": {"200": {"description": "text/event-stream"}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text/plain"}},
            }
        },
    },
}
