"""Structured task-log lines for auditors: `event=<name> key=value ...`, one line per fact.

Only counts, ids of what was produced (letter ids, batch ids, message ids) and keyed recipient
pseudonyms may be passed here: never national register or KBO numbers, names or addresses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("dijlepost")


def _value(v) -> str:
    if isinstance(v, (Mapping, list, tuple)):
        s = json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
        # JSON escapes control characters; a space inside a string would still split the value.
        return json.dumps(s) if any(c.isspace() for c in s) else s
    s = str(v)
    # Quote (as a JSON string) anything a logfmt reader would split or misread: whitespace of any kind
    # (a newline would even start a forged log line), '=', quotes, other non-printable characters.
    needs_quotes = not s or any(c.isspace() or c in '="' or not c.isprintable() for c in s)
    return json.dumps(s) if needs_quotes else s


def line(event: str, **fields) -> str:
    return " ".join([f"event={event}"] + [f"{k}={_value(v)}" for k, v in fields.items()])


def emit(event: str, *, logger: logging.Logger | None = None, **fields: Any) -> None:
    """Log `event=<event> key=value ...` at INFO on `logger` (default: the dijlepost logger)."""
    (logger or log).info(line(event, **fields))
