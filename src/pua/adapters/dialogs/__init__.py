"""Calls become dialog state (Kamailio's pua_dialoginfo): see
:mod:`pua.adapters.dialogs.adapter`."""

from .adapter import DIALOG_ID_PREFIX, Dialogs
from .calls import CALL_STATES, CallEvent, DialogOptions

__all__ = ["CALL_STATES", "DIALOG_ID_PREFIX", "CallEvent", "DialogOptions", "Dialogs"]
