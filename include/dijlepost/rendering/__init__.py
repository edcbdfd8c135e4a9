"""Rendering letters to PDF: templates from include/templates/, one PDF per letter row.

No Airflow here: the render task builds one `LetterRenderer` per worker process and calls `render`
per letter; a `LetterDataError` quarantines that letter with `str(exc)` as the reason.
"""
import logging

from .errors import LetterDataError, TemplateError, TemplateFieldMissing
from .renderer import LetterRenderer, RenderedLetter

# fontTools logs every subsetting step at INFO: thousands of lines per batch that drown the task log.
logging.getLogger("fontTools").setLevel(logging.WARNING)

__all__ = ["LetterDataError", "LetterRenderer", "RenderedLetter", "TemplateError", "TemplateFieldMissing"]
