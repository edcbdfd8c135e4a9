"""Drawing a laid-out letter with fpdf2: the document's metadata (PDF/UA-1), the fonts, each page's
operations in order with their marked content, and the EPC QR code, whose modules are built here from
the payload the layout carries (the layout only checks that the code fits).

Output is deterministic: the PDF's creation date is the letter date, so the same letter rendered on the
same day gives the same bytes.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from functools import cache, lru_cache

import numpy as np
from fpdf import FPDF, FPDF_VERSION
from fpdf.output import PDFPage
from fpdf.prefs import ViewerPreferences
from fpdf.syntax import Name

from .fonts import FAMILY, LetterFonts, LetterPDF
from .layout import PAGE_HEIGHT, PAGE_WIDTH, FrameOp, Op, QrOp, RuleOp, TextOp
from .payment import epc_qr_modules
from .preparation import PreparedLetter
from .structure import MarkedContent, StructureTree
from .templates import TemplateSet

FPDF_PRODUCER = f"fpdf2 {FPDF_VERSION}"
QR_QUIET_ZONE = 4  # modules, as ISO/IEC 18004 asks


class LetterDrawing:
    """Draws laid-out letters of one template set with the prepared fonts; keeps no state between
    letters."""

    def __init__(self, template_set: TemplateSet, fonts: LetterFonts):
        self._set = template_set
        self._fonts = fonts

    def draw(self, letter: PreparedLetter, pages: Sequence[Sequence[Op]]) -> bytes:
        """The finished PDF of the letter's pages (as `LetterLayout.layout` gives them)."""
        pdf = self._document(letter, pages)
        tree = StructureTree(pdf)
        for ops in pages:
            pdf.add_page()
            self._draw_page(pdf, tree, ops)
        tree.finish()
        for page in pdf.pages.values():
            page.__class__ = _StructureOrderPage
        return bytes(pdf.output())

    def _document(self, letter: PreparedLetter, pages: Sequence[Sequence[Op]]) -> LetterPDF:
        """A new PDF with the letter's fonts and metadata, before its first page."""
        lang = letter.language
        department = self._set.departments[letter.template.department]
        document_name = letter.template.texts[lang].document_name
        author = f"{self._set.sender.names[lang]} - {department.names[lang]}"
        pdf = LetterPDF(unit="mm", format=(PAGE_WIDTH, PAGE_HEIGHT))
        pdf.set_auto_page_break(False)
        self._fonts.install(pdf, (op.text for ops in pages for op in ops if isinstance(op, TextOp)))
        pdf.set_title(letter.subject)
        pdf.set_subject(document_name)
        pdf.set_author(author)
        pdf.set_lang(f"{lang}-BE")
        pdf.set_creator("dijlepost")
        pdf.set_producer(FPDF_PRODUCER)
        created = datetime.combine(letter.letter_date, time(), tzinfo=UTC)
        pdf.set_creation_date(created)
        # PDF/UA-1: the viewer shows the title, not the file name (7.1); the XMP metadata says the file
        # claims PDF/UA-1 and carries the title (5, 7.1); each page's annotations follow the structure
        # order (/Tabs /S, 7.18.3; a letter has none, but validators ask for the key).
        pdf.viewer_preferences = LetterViewerPreferences()
        pdf.set_xmp_metadata(
            xmp_metadata(
                title=letter.subject,
                language=f"{lang}-BE",
                author=author,
                description=document_name,
                created=created,
            )
        )
        pdf.set_draw_color(150)
        pdf.set_line_width(0.2)
        return pdf

    def _draw_page(self, pdf: LetterPDF, tree: StructureTree, ops: Sequence[Op]) -> None:
        # The page's content-stream lines are collected and written at once: the same bytes as writing
        # them one by one (fpdf2 ends each with a newline), at a fraction of the calls.
        lines: list[str] = []

        def flush() -> None:
            if lines:
                pdf._out("\n".join(lines))
                lines.clear()

        font: tuple[str, float] | None = None
        gray: bool | None = None
        marks = MarkedContent(tree, lines.append)
        for index, op in enumerate(ops):
            marks.enter(op)
            if isinstance(op, TextOp):
                if font != (op.style, op.size):
                    font = (op.style, op.size)
                    pdf.set_letter_font(FAMILY, op.style, op.size)
                if gray != op.gray:
                    gray = op.gray
                    pdf.set_text_color(90 if gray else 0)
                self._text(pdf, lines, flush, op.x, op.y, op.text)
                following = ops[index + 1] if index + 1 < len(ops) else None
                if (
                    op.tag
                    and op.group
                    and isinstance(following, TextOp)
                    and (following.tag, following.group) == (op.tag, op.group)
                ):
                    # An invisible space where a line breaks (or between a label and its value),
                    # so that text extraction and screen readers keep the words apart.
                    self._text(
                        pdf, lines, flush, op.x + self._fonts.width(op.text, op.style, op.size), op.y, " "
                    )
            else:
                flush()
                if isinstance(op, RuleOp):
                    pdf.line(op.x1, op.y1, op.x2, op.y2)
                elif isinstance(op, FrameOp):
                    pdf.rect(op.box.left, op.box.top, op.box.width, op.box.height)
                else:
                    draw_qr(pdf, op)
        marks.close()
        flush()

    @staticmethod
    def _text(
        pdf: LetterPDF, lines: list[str], flush: Callable[[], None], x: float, y: float, text: str
    ) -> None:
        line = pdf.text_lines(x, y, text)
        if line is None:
            flush()
            pdf.text(x, y, text)
        else:
            lines.append(line)


class LetterViewerPreferences(ViewerPreferences):
    """A letter's viewer preferences: the viewer shows the document's title. The same dictionary for
    every letter, so fpdf2 builds it once per process (it collects the attributes by reflection)."""

    def __init__(self) -> None:
        super().__init__(display_doc_title=True)

    def serialize(self, _security_handler=None, _obj_id=None) -> str:
        if _security_handler is not None:
            return super().serialize(_security_handler, _obj_id)
        return _letter_viewer_preferences()


@cache
def _letter_viewer_preferences() -> str:
    return ViewerPreferences.serialize(LetterViewerPreferences())


class _StructureOrderPage(PDFPage):
    """fpdf2's page object with `/Tabs /S` (no new slots: a drawn page's class is swapped for this)."""

    __slots__ = ()
    tabs = Name("S")


def xmp_metadata(*, title: str, language: str, author: str, description: str, created: datetime) -> str:
    """The XMP packet body (fpdf2 adds the <?xpacket?> wrapper): Dublin Core title, creator and
    description in the letter's language, the dates (the letter date, so the bytes stay deterministic),
    and pdfuaid:part 1 (ISO 14289-1, 5)."""

    def esc(text: str) -> str:
        return html.escape(text, quote=True)

    stamp = created.isoformat(timespec="seconds")
    return "\n".join(
        [
            '<x:xmpmeta xmlns:x="adobe:ns:meta/">',
            ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">',
            '  <rdf:Description rdf:about=""',
            '    xmlns:dc="http://purl.org/dc/elements/1.1/"',
            '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"',
            '    xmlns:pdf="http://ns.adobe.com/pdf/1.3/"',
            '    xmlns:pdfuaid="http://www.aiim.org/pdfua/ns/id/"',
            f'    xmp:CreatorTool="dijlepost" xmp:CreateDate="{stamp}" xmp:ModifyDate="{stamp}"',
            f'    xmp:MetadataDate="{stamp}" pdf:Producer="{esc(FPDF_PRODUCER)}" pdfuaid:part="1">',
            (
                f'   <dc:title><rdf:Alt><rdf:li xml:lang="{language}">{esc(title)}</rdf:li>'
                f'<rdf:li xml:lang="x-default">{esc(title)}</rdf:li></rdf:Alt></dc:title>'
            ),
            f"   <dc:creator><rdf:Seq><rdf:li>{esc(author)}</rdf:li></rdf:Seq></dc:creator>",
            (
                f'   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{esc(description)}</rdf:li></rdf:Alt>'
                "</dc:description>"
            ),
            f"   <dc:language><rdf:Bag><rdf:li>{language}</rdf:li></rdf:Bag></dc:language>",
            "  </rdf:Description>",
            " </rdf:RDF>",
            "</x:xmpmeta>",
        ]
    )


def draw_qr(pdf: FPDF, op: QrOp) -> None:
    """The EPC QR code of the payload: dark modules as filled rectangles (sharp at any print
    resolution): runs of dark modules in a row, merged with the same run in the rows below, which halves
    the number of rectangles. All rectangles form one path filled once (`re` ... `f`, as fpdf2's `rect`
    writes each of them), written straight into the page's content stream: some 300 `rect` calls cost
    more than the rest of the page."""
    modules = epc_qr_modules(op.payload)
    grid = _qr_grid(len(modules), op.box.left, op.box.top, op.box.width, pdf.k, pdf.h)
    x, y, width, height = grid.x, grid.y, grid.width, grid.height
    path = [
        f"{x[left]} {y[top]} {width[columns]} {height[rows]} re"
        for left, top, columns, rows in zip(*(part.tolist() for part in qr_rectangles(modules != 0)))
    ]
    path.append("f")
    pdf._out("\n".join(path))


def qr_rectangles(dark: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rectangles that cover a code's dark modules (a square bool array): each run of dark modules
    in a row, stacked with the runs of the same columns in the rows below it. As arrays of left column,
    top row, width and height in modules, in the order the rectangles end: by the row below their
    last, then from left to right."""
    size = len(dark)
    padded = np.zeros((size, size + 2), dtype=np.int8)
    padded[:, 1:-1] = dark
    edges = np.diff(padded, axis=1)  # 1 where a run starts, -1 after its last module
    rows, starts = np.nonzero(edges == 1)
    ends = np.nonzero(edges == -1)[1]  # row by row, so the k-th end is the k-th start's
    run_end = np.full((size + 2, size + 1), -1, dtype=np.intp)  # with an empty row above and below
    run_end[rows + 1, starts] = ends
    first = run_end[rows, starts] != ends  # the row above has no run of the same columns
    last = run_end[rows + 2, starts] != ends  # nor has the row below
    stacks = np.lexsort((rows, ends, starts))  # the runs of the same columns, row after row
    tops, bottoms = stacks[first[stacks]], stacks[last[stacks]]
    left, top, bottom = starts[tops], rows[tops], rows[bottoms] + 1
    order = np.lexsort((left, bottom))
    return left[order], top[order], (ends[tops] - left)[order], (bottom - top)[order]


@dataclass(frozen=True)
class _QrGrid:
    """The numbers a code's rectangles are written with, as fpdf2's `rect` formats them (points, two
    decimals): column -> x, row -> y, modules -> width and (negative) height. The same for every code
    of one size in one place, so they are formatted once."""

    x: tuple[str, ...]
    y: tuple[str, ...]
    width: tuple[str, ...]
    height: tuple[str, ...]


@lru_cache(maxsize=64)
def _qr_grid(
    modules: int, box_left: float, box_top: float, box_width: float, k: float, page_height: float
) -> _QrGrid:
    module = box_width / (modules + 2 * QR_QUIET_ZONE)
    left = box_left + QR_QUIET_ZONE * module
    top = box_top + QR_QUIET_ZONE * module
    counts = range(modules + 1)
    return _QrGrid(
        x=tuple(f"{(left + col * module) * k:.2f}" for col in counts),
        y=tuple(f"{(page_height - (top + row * module)) * k:.2f}" for row in counts),
        width=tuple(f"{count * module * k:.2f}" for count in counts),
        height=tuple(f"{-(count * module) * k:.2f}" for count in counts),
    )
