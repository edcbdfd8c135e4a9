"""The three ways a letter can fail to render, split by whose problem it is.

`LetterDataError` (and its `TemplateFieldMissing` and `RenderTimeout`) means the letter row itself is wrong: the pipeline
quarantines that one letter with `str(exc)` as the reason and carries on. `TemplateError` means a
template file is broken: every letter of that type would fail, so it stops the renderer at load.
Messages name the field but never echo personal data (they end up in the quarantine reason and logs).
"""

from __future__ import annotations


class LetterDataError(ValueError):
    """The letter row or its payload cannot be turned into a correct letter."""


class RenderTimeout(LetterDataError):
    """Laying the letter out ran past the render deadline it was given (`render(letter, deadline=...)`):
    the letter is quarantined with this reason instead of holding up the rest of its chunk."""

    def __init__(self, budget: str = "its budget"):
        super().__init__(f"the letter could not be laid out within {budget}")


class TemplateFieldMissing(LetterDataError):
    """The payload lacks a field the template needs."""

    def __init__(self, template: str, field: str):
        self.template = template
        self.field = field
        super().__init__(f"template {template!r} needs payload field {field!r}, which is missing or empty")


class TemplateError(Exception):
    """A template file is malformed; the message names the template and the offending field."""

    def __init__(self, template: str, field: str, problem: str):
        self.template = template
        self.field = field
        super().__init__(f"template {template!r}, field {field!r}: {problem}")
