"""Registrations become presence (Kamailio's pua_usrloc) and reg state
(pua_reginfo): see :mod:`pua.adapters.registrations.adapter`."""

from .adapter import Registrations, RegistrationSettings
from .bindings import Binding, BindingTable, Change, Register, aor_of, read_register

__all__ = [
    "Binding",
    "BindingTable",
    "Change",
    "Register",
    "RegistrationSettings",
    "Registrations",
    "aor_of",
    "read_register",
]
