"""The city's clock: every date and time a user reads, and every "today", is Europe/Brussels.

A worker's own zone is usually UTC, so `date.today()` on a worker would date a letter decided at
23:30 in Brussels (22:30 UTC in winter) a day early, or late. Code asks this module instead.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

BRUSSELS = ZoneInfo("Europe/Brussels")


def now() -> datetime:
    """The current time, aware, in Europe/Brussels."""
    return datetime.now(BRUSSELS)


def today(at: datetime | None = None) -> date:
    """The calendar day in Brussels at `at` (an aware datetime; default: now)."""
    if at is not None and at.tzinfo is None:
        raise ValueError("a naive datetime has no day in Brussels: give it a time zone")
    return (at or now()).astimezone(BRUSSELS).date()
