"""Bridged line appearance (Kamailio's pua_bla): see
:mod:`pua.adapters.bla.adapter`."""

from .adapter import BLA_EVENT, BlaSettings, SharedLines

__all__ = ["BLA_EVENT", "BlaSettings", "SharedLines"]
