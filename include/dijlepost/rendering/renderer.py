"""The render stage: one letter row in, one finished PDF out.

`LetterRenderer` loads and checks the templates and prepares the fonts once; `render` then runs the
three parts of a render, each in its own module: `preparation` checks the letter row and its payload
against the template of its type and formats it (`PreparedLetter`); `blocks` lays the letter out as
drawing operations per page (sender, address in the envelope window, date and reference, subject,
details, body, payment block with EPC QR code, signature, "1/2" page numbers); `drawing` draws them
with fpdf2, with the structure tree of `structure`. Anything wrong with the letter raises
`LetterDataError` before a single page is drawn, so a letter is either complete or not rendered.

Output is deterministic: the same letter rendered on the same day gives the same bytes (the PDF's
creation date is the letter date), so a retried render yields the same sha256.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ..settings import TEMPLATES_DIR
from .blocks import QR_SIZE, LetterLayout, Pages
from .drawing import QR_QUIET_ZONE, LetterDrawing
from .fonts import LetterFonts
from .layout import check_deadline
from .preparation import LetterPreparer, PreparedLetter, check_template_texts
from .templates import LetterTemplate, TemplateSet, load_templates

__all__ = ["QR_QUIET_ZONE", "QR_SIZE", "LetterRenderer", "RenderedLetter"]

MAX_FILENAME = 80
# Letters that have no accent-free form in NFKD, spelled the way their language does without them.
_SPELLED_OUT = str.maketrans(
    {
        "ß": "ss",
        "ä": "ae",
        "ö": "oe",
        "ü": "ue",
        "Ä": "Ae",
        "Ö": "Oe",
        "Ü": "Ue",
        "æ": "ae",
        "Æ": "Ae",
        "œ": "oe",
        "Œ": "Oe",
        "ø": "o",
        "Ø": "O",
        "’": " ",
        "'": " ",
    }
)


@dataclass(frozen=True)
class RenderedLetter:
    pdf: bytes
    sha256: str
    pages: int
    subject: str
    filename: str  # <= 80 characters, in the letter's language, ends .pdf


class LetterRenderer:
    """Renders letter rows to PDF. Build one per process (loading takes about half a second) and reuse
    it; `render` keeps no state between letters."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR, today: date | None = None):
        self._set: TemplateSet = load_templates(Path(templates_dir))
        self._fonts = LetterFonts(Path(templates_dir) / "fonts")
        check_template_texts(self._set, self._fonts)
        self._preparer = LetterPreparer(self._set, self._fonts, today)
        self._layout_of = LetterLayout(self._set, self._fonts)
        self._drawing = LetterDrawing(self._set, self._fonts)

    def required_fields(self, letter_type: str) -> tuple[str, ...]:
        """The payload fields a letter of this type must carry (not the optional itemised lines)."""
        return tuple(
            name for name, spec in self._template(letter_type).fields.items() if spec.kind != "lines"
        )

    def subject(self, letter: Mapping[str, Any]) -> str:
        """The letter's subject in its own language (the eBox message title); checks the letter fully."""
        return self._prepare(letter).subject

    def validate(self, letter: Mapping[str, Any], deadline: float | None = None) -> None:
        """Check the letter exactly as `render` does, without drawing it: the row, the payload, and the
        layout (the address must fit the envelope window, the QR code its maximum version, the layout
        its deadline). Raises `LetterDataError` naming the field; returns None for a letter `render`
        would print."""
        self._layout(self._prepare(letter), deadline)

    def render(self, letter: Mapping[str, Any], deadline: float | None = None) -> RenderedLetter:
        """The letter as a finished PDF. With `deadline` (a `time.monotonic()` value), a layout still
        running when it passes raises `RenderTimeout` (a `LetterDataError`): the letter is quarantined
        and the chunk goes on."""
        prepared = self._prepare(letter)
        pages = self._layout(prepared, deadline)
        check_deadline(deadline)
        pdf = self._drawing.draw(prepared, pages)
        texts = prepared.template.texts[prepared.language]
        return RenderedLetter(
            pdf=pdf,
            sha256=hashlib.sha256(pdf).hexdigest(),
            pages=len(pages),
            subject=prepared.subject,
            filename=_filename(texts.document_name, prepared.letter_id),
        )

    def _template(self, letter_type: Any) -> LetterTemplate:
        return self._preparer.template(letter_type)

    def _prepare(self, letter: Mapping[str, Any]) -> PreparedLetter:
        return self._preparer.prepare(letter)

    def _layout(self, letter: PreparedLetter, deadline: float | None = None) -> Pages:
        return self._layout_of.layout(letter, deadline)


def _filename(document_name: str, letter_id: str) -> str:
    """`Factuur_<letter_id>.pdf`: the document name in the letter's language, ASCII only, the letter id
    kept whole (it is unique); the name is shortened when the id is long."""
    spelled = document_name.translate(_SPELLED_OUT)
    ascii_name = unicodedata.normalize("NFKD", spelled).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9-]+", "_", ascii_name).strip("_-")
    room = MAX_FILENAME - len(".pdf") - len(letter_id) - 1
    slug = slug[: max(room, 0)].rstrip("_-")
    return f"{slug}_{letter_id}.pdf" if slug else f"{letter_id}.pdf"
