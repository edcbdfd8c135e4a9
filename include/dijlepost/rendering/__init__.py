"""Rendering letters to PDF: templates from include/templates/, one PDF per letter row.

No Airflow here: the render task builds one `LetterRenderer` per worker process and calls `render`
per letter (`render(letter, deadline=...)`); a `LetterDataError`, `RenderTimeout` included, quarantines
that letter with `str(exc)` as the reason. `validate_letter(letter)` runs the same checks without
drawing, for `letters import`.
"""

import logging

from .errors import LetterDataError, RenderTimeout, TemplateError, TemplateFieldMissing
from .renderer import LetterRenderer, RenderedLetter
from .validation import validate_letter

# fontTools logs every subsetting step at INFO: thousands of lines per batch that drown the task log.
logging.getLogger("fontTools").setLevel(logging.WARNING)

__all__ = [
    "LetterDataError",
    "LetterRenderer",
    "RenderTimeout",
    "RenderedLetter",
    "TemplateError",
    "TemplateFieldMissing",
    "validate_letter",
]
