"""What the first attempt of an adapter's PUBLISH got, as the API reports
it: shared by the adapters that answer their callers once their PUBLISHes
are answered."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["NO_ANSWER_YET", "answer_of"]

NO_ANSWER_YET = "no answer yet; pua keeps trying"


def answer_of(result: asyncio.Future[Any]) -> tuple[int | None, str]:
    """(200, "OK"), the failure's (status, reason), or (None, NO_ANSWER_YET)
    for a PUBLISH still waiting (its later failure is then not reported
    as never retrieved: the engine goes on with it)."""
    if not result.done():
        result.add_done_callback(_quiet)
        return None, NO_ANSWER_YET
    error = result.exception()
    if error is not None:
        return getattr(error, "status", None), getattr(error, "reason", str(error))
    return 200, "OK"


def _quiet(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
