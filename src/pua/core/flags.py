"""The seed's flags, with the values of Kamailio's `pua` table.

``flag`` (the source of a record) and ``event`` are stored as these integers,
so a table written by Kamailio means the same here (see DESIGN: Storage).
"""

from __future__ import annotations

import enum

__all__ = ["DialogState", "EventFlag", "SourceFlag", "UpdateType"]


class SourceFlag(enum.IntFlag):
    """Who asked for a record (the seed's ``source_flag``)."""

    UL_PUBLISH = 1
    BLA_PUBLISH = 2
    BLA_SUBSCRIBE = 4
    XMPP_PUBLISH = 8
    XMPP_SUBSCRIBE = 16
    XMPP_INITIAL_SUBS = 32
    MI_PUBLISH = 64
    MI_ASYN_PUBLISH = 128
    MI_SUBSCRIBE = 256
    RLS_SUBSCRIBE = 512
    DIALOG_PUBLISH = 1024
    PURPLE_PUBLISH = 2048
    REGINFO_PUBLISH = 4096
    REGINFO_SUBSCRIBE = 8192
    # Kamailio renamed the MI flags RPC_*: same values.
    RPC_PUBLISH = 64
    RPC_ASYN_PUBLISH = 128
    RPC_SUBSCRIBE = 256


class EventFlag(enum.IntFlag):
    """Event packages, as bits (the seed's ``event``)."""

    PRESENCE_EVENT = 1
    PWINFO_EVENT = 2
    BLA_EVENT = 4
    MWI_EVENT = 8
    CONFERENCE_EVENT = 16
    DIALOG_EVENT = 32
    REGINFO_EVENT = 64
    # Kamailio's name for MWI_EVENT.
    MSGSUM_EVENT = 8


class UpdateType(enum.IntEnum):
    """The seed's ``flag`` of publ_info/subs_info: INSERT_TYPE forces a new
    initial request; UPDATE_TYPE (or None) lets the table decide."""

    INSERT_TYPE = 1
    UPDATE_TYPE = 2


class DialogState(enum.IntEnum):
    """What :meth:`PresenceEngine.is_dialog` answers."""

    NONE = -1
    CONFIRMED = 0
    TEMPORARY = 1
