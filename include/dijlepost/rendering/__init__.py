"""Rendering letters to PDF: templates from include/templates/, one PDF per letter row.

No Airflow here: the render task builds one `LetterRenderer` per worker process and calls `render`
per letter; a `LetterDataError` quarantines that letter with `str(exc)` as the reason.
"""
from .errors import LetterDataError, TemplateError, TemplateFieldMissing
from .renderer import LetterRenderer, RenderedLetter

__all__ = ["LetterDataError", "LetterRenderer", "RenderedLetter", "TemplateError", "TemplateFieldMissing"]
