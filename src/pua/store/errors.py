"""The store's error, and URLs made fit to be shown."""

from __future__ import annotations

import re

from pua.errors import PuaError

__all__ = ["StoreError", "mask_url"]

_USERINFO = re.compile(r"^(?P<head>[^:/?#]+://)(?P<userinfo>[^/?#]*)@")


class StoreError(PuaError):
    """The database could not do what was asked: unreachable, refused, a
    schema pua cannot use.  The message names the database URL with its
    password masked."""


def mask_url(url: str) -> str:
    """``url`` with the password in its user info replaced by ``***``."""
    match = _USERINFO.match(url)
    if match is None:
        return url
    user, colon, _password = match["userinfo"].partition(":")
    if not colon:
        return url
    return f"{match['head']}{user}:***@{url[match.end() :]}"


def password_of(url: str) -> str | None:
    """The password in ``url``'s user info, if any (to scrub it from driver
    messages as well)."""
    match = _USERINFO.match(url)
    if match is None:
        return None
    _user, colon, password = match["userinfo"].partition(":")
    return password if colon and password else None
