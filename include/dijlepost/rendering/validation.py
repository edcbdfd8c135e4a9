"""One check of a letter row for everything upstream of the render stage: `letters import` calls it so
that a row the renderer would refuse is refused at import, with the same reason, naming the field.

`validate_letter(letter)` runs exactly the checks `LetterRenderer.render` runs (the row's columns, the
payload against the template of its letter type, the address against the envelope window, the layout)
and stops before drawing: it returns None for a letter that would render and raises `LetterDataError`
(or its `TemplateFieldMissing`) otherwise. The message names the field and never echoes its value.

The renderer it uses is built once per process from the shipped templates (about half a second);
pass `renderer=` to check against another one, e.g. templates loaded from another folder.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from .renderer import LetterRenderer


@functools.cache
def default_renderer() -> LetterRenderer:
    """The process's renderer over the shipped templates (include/templates/)."""
    return LetterRenderer()


def validate_letter(
    letter: Mapping[str, Any], *, renderer: LetterRenderer | None = None, deadline: float | None = None
) -> None:
    """Raise `LetterDataError` naming the field if `render` would refuse this letter row; else None.

    `letter` is an outbox row as a mapping: letter_type, language, letter_id, department (optional),
    recipient_kind, recipient_name, street, postal_code, city, country, registered and payload (a
    mapping). `deadline` works as in `render` (`RenderTimeout` once `time.monotonic()` passes it)."""
    (renderer or default_renderer()).validate(letter, deadline)
