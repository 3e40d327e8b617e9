"""Event documents: reading and writing the bodies of the event packages.

One module per format, each with frozen value classes, a ``parse_*``
function that raises only :class:`~pua.sip.errors.BodyError`, a builder
(``to_bytes``) and, where a PUBLISH needs one, a ``process_body`` hook:

* :mod:`.pidf` presence (RFC 3863, RFC 4479 persons, RFC 4480 activities),
  hook :func:`.pidf.assign_ids`;
* :mod:`.message_summary` message waiting (RFC 3842);
* :mod:`.dialog_info` dialog state (RFC 4235), hook :func:`.dialog_info.set_version`;
* :mod:`.reginfo` registration state (RFC 3680), hook :func:`.reginfo.set_version`;
* :mod:`.watcherinfo` watcher information (RFC 3857/3858);
* :mod:`.summary` one-line summaries for people;
* :mod:`.xml` the hardened XML parser they all share.

No IO happens here: no sockets, files, clocks or randomness.
"""

from __future__ import annotations

from .dialog_info import (
    DIALOG_INFO_CONTENT_TYPE,
    DIALOG_INFO_NS,
    Dialog,
    DialogInfo,
    parse_dialog_info,
)
from .message_summary import (
    MESSAGE_SUMMARY_CONTENT_TYPE,
    Counts,
    MessageSummary,
    parse_message_summary,
)
from .pidf import (
    DM_NS,
    PIDF_CONTENT_TYPE,
    PIDF_NS,
    RPID_NS,
    Person,
    Presence,
    Tuple,
    assign_ids,
    basic_pidf,
    parse_pidf,
)
from .reginfo import REGINFO_CONTENT_TYPE, REGINFO_NS, Contact, RegInfo, Registration, parse_reginfo
from .summary import summarize
from .watcherinfo import (
    WATCHERINFO_CONTENT_TYPE,
    WATCHERINFO_NS,
    Watcher,
    WatcherInfo,
    WatcherList,
    parse_watcherinfo,
)
from .xml import MAX_XML_SIZE, parse_xml, to_bytes

__all__ = [
    "DIALOG_INFO_CONTENT_TYPE",
    "DIALOG_INFO_NS",
    "DM_NS",
    "MAX_XML_SIZE",
    "MESSAGE_SUMMARY_CONTENT_TYPE",
    "PIDF_CONTENT_TYPE",
    "PIDF_NS",
    "REGINFO_CONTENT_TYPE",
    "REGINFO_NS",
    "RPID_NS",
    "WATCHERINFO_CONTENT_TYPE",
    "WATCHERINFO_NS",
    "Contact",
    "Counts",
    "Dialog",
    "DialogInfo",
    "MessageSummary",
    "Person",
    "Presence",
    "RegInfo",
    "Registration",
    "Tuple",
    "Watcher",
    "WatcherInfo",
    "WatcherList",
    "assign_ids",
    "basic_pidf",
    "parse_dialog_info",
    "parse_message_summary",
    "parse_pidf",
    "parse_reginfo",
    "parse_watcherinfo",
    "parse_xml",
    "summarize",
    "to_bytes",
]
