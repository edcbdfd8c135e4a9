"""Structured task-log lines for auditors: `event=<name> key=value ...`, one line per fact.

Only counts, ids of what was produced (letter ids, batch ids, message ids) and keyed recipient
pseudonyms may be passed here: never national register or KBO numbers, names or addresses.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping

log = logging.getLogger("dijlepost")


def _value(v) -> str:
    if isinstance(v, Mapping) or isinstance(v, (list, tuple)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
    s = str(v)
    return json.dumps(s) if (" " in s or "=" in s or not s) else s


def line(event: str, **fields) -> str:
    return " ".join([f"event={event}"] + [f"{k}={_value(v)}" for k, v in fields.items()])


def emit(event: str, logger: logging.Logger | None = None, **fields) -> None:
    (logger or log).info(line(event, **fields))
