"""The render stage: one letter row in, one finished PDF out.

`LetterRenderer` loads and checks the templates and prepares the fonts once; `render` then checks the
letter row and its payload against the template of its type, lays the letter out (sender, address in
the envelope window, date and reference, subject, details, body, payment block with EPC QR code,
signature, "1/2" page numbers) and draws it with fpdf2. Anything wrong with the letter raises
`LetterDataError` before a single page is drawn, so a letter is either complete or not rendered.

Output is deterministic: the same letter rendered on the same day gives the same bytes (the PDF's
creation date is the letter date), so a retried render yields the same sha256.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from fpdf import FPDF, FPDF_VERSION
from fpdf.output import PDFPage
from fpdf.prefs import ViewerPreferences
from fpdf.structure_tree import StructElem, StructureTreeBuilder
from fpdf.syntax import Name

from .. import clock
from ..recipients import RECIPIENT_KINDS
from ..settings import TEMPLATES_DIR
from ..waves import LANGUAGES
from . import fields
from .errors import LetterDataError, TemplateError, TemplateFieldMissing
from .fonts import BOLD, FAMILY, REGULAR, LetterFonts, LetterPDF
from .layout import (
    ADDRESS_MAX_LINES,
    ADDRESS_SIZES,
    CONTENT_WIDTH,
    DESCENT,
    FIRST_PAGE_BODY_GAP,
    FOOTER_BASELINE,
    FOOTER_RULE,
    LAYOUT,
    LINE_SPACING,
    MARGIN_LEFT,
    META_TOP,
    NEXT_PAGE_BODY_TOP,
    PAGE_HEIGHT,
    PAGE_WIDTH,
    PARAGRAPH_GAP,
    PT_TO_MM,
    RUNNING_FOOTER,
    RUNNING_HEADER,
    SENDER_TOP,
    SMALL_SIZE,
    TIGHT_LINE_SPACING,
    Box,
    Flow,
    FrameOp,
    Op,
    QrOp,
    RuleOp,
    StructPath,
    TextOp,
    address_box,
    baseline_offset,
    check_deadline,
    ink_box,
    line_height,
    new_group,
    wrap,
)
from .payment import epc_payload, epc_qr_matrix
from .templates import LetterTemplate, Paragraph, TemplateSet, load_templates

MAX_FILENAME = 80
FPDF_PRODUCER = f"fpdf2 {FPDF_VERSION}"
LETTER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # as the outbox table checks it
ADDRESS_FIELDS = ("recipient_name", "street", "postal_code", "city")
# The field of each line of the printed address (the third holds postal code and city).
ADDRESS_LINE_FIELDS = ("recipient_name", "street", "city", "country")
# No address line longer than this fits the window even wrapped at the smallest size; refusing it
# first keeps an absurd value from costing any layout work.
MAX_ADDRESS_FIELD = 200
QR_SIZE = 30.0  # mm including the quiet zone: modules of 0.6 mm for a typical version 6 code
QR_QUIET_ZONE = 4  # modules, as ISO/IEC 18004 asks
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "ZZ"})
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


@dataclass(frozen=True)
class _Payment:
    amount: Decimal
    due_date: date
    ogm: str  # 12 digits


@dataclass(frozen=True)
class _Letter:
    """A letter row checked and formatted, ready for layout."""

    template: LetterTemplate
    language: str
    letter_id: str
    letter_date: date
    registered: bool
    address: tuple[str, ...]
    abroad: bool  # the address is outside Belgium
    subject: str
    details: tuple[tuple[str, str], ...]
    body: tuple[Paragraph, ...]
    payment: _Payment | None
    lines: tuple[fields.InvoiceLine, ...] = ()


class LetterRenderer:
    """Renders letter rows to PDF. Build one per process (loading takes about half a second) and reuse
    it; `render` keeps no state between letters."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR, today: date | None = None):
        self._set: TemplateSet = load_templates(Path(templates_dir))
        self._fonts = LetterFonts(Path(templates_dir) / "fonts")
        self._today = today
        self._check_printable()

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
        layout (the address must fit the envelope window, the layout its deadline). Raises
        `LetterDataError` naming the field; returns None for a letter `render` would print."""
        self._layout(self._prepare(letter), deadline)

    def render(self, letter: Mapping[str, Any], deadline: float | None = None) -> RenderedLetter:
        """The letter as a finished PDF. With `deadline` (a `time.monotonic()` value), a layout still
        running when it passes raises `RenderTimeout` (a `LetterDataError`): the letter is quarantined
        and the chunk goes on."""
        prepared = self._prepare(letter)
        pages = self._layout(prepared, deadline)
        check_deadline(deadline)
        pdf = self._draw(prepared, pages)
        texts = prepared.template.texts[prepared.language]
        return RenderedLetter(
            pdf=pdf,
            sha256=hashlib.sha256(pdf).hexdigest(),
            pages=len(pages),
            subject=prepared.subject,
            filename=_filename(texts.document_name, prepared.letter_id),
        )

    # -- checking the letter -------------------------------------------------------------------

    def _template(self, letter_type: Any) -> LetterTemplate:
        template = self._set.templates.get(letter_type) if isinstance(letter_type, str) else None
        if template is None:
            raise LetterDataError(f"unknown letter type {_code(letter_type)}")
        return template

    def _prepare(self, letter: Mapping[str, Any]) -> _Letter:
        if not isinstance(letter, Mapping):
            raise LetterDataError(f"a letter is a mapping of its columns, not {type(letter).__name__}")
        template = self._template(letter.get("letter_type"))
        language = letter.get("language")
        if not isinstance(language, str) or language not in LANGUAGES:
            raise LetterDataError(f"language must be one of {', '.join(LANGUAGES)}, got {_code(language)}")
        letter_id = letter.get("letter_id")
        if not isinstance(letter_id, str) or not LETTER_ID_RE.match(letter_id):
            raise LetterDataError("letter_id must be 1 to 64 letters, digits, '.', '_' or '-'")
        department = letter.get("department")
        if department is not None and department != template.department:
            raise LetterDataError(
                f"letter type {template.letter_type!r} belongs to department {template.department!r}, "
                f"not {_code(department)}"
            )
        if letter.get("recipient_kind") not in RECIPIENT_KINDS:
            raise LetterDataError(f"recipient_kind must be one of {', '.join(RECIPIENT_KINDS)}")
        registered = letter.get("registered", False)
        if not isinstance(registered, bool):
            raise LetterDataError("registered must be true or false")
        payload = letter.get("payload") or {}
        if not isinstance(payload, Mapping):
            raise LetterDataError("payload must be a JSON object")

        address = self._address(letter, language)
        parsed = {}
        values = {}
        lines: tuple[fields.InvoiceLine, ...] = ()
        for name, spec in template.fields.items():
            raw = payload.get(name)
            if spec.kind == "lines":  # optional: no lines, no table
                if raw is not None and raw != []:
                    lines = fields.parse_lines(raw, name)
                    for number, line in enumerate(lines, start=1):
                        self._require_printable(
                            line.description, f"payload field '{name}[{number}].description'"
                        )
                continue
            if fields.is_missing(raw):
                raise TemplateFieldMissing(template.letter_type, name)
            if spec.kind == "choice":
                parsed[name] = fields.parse_choice(raw, name, spec.choices)
                values[name] = spec.choices[parsed[name]][language]
                continue
            parsed[name] = fields.parse(spec.kind, raw, name)
            values[name] = fields.display(spec.kind, parsed[name], language)
            if spec.kind == "text":
                self._require_printable(values[name], f"payload field {name!r}")
        letter_date = self._today or clock.today()
        values.update(
            recipient_name=address[0],
            letter_id=letter_id,
            letter_date=fields.format_date(letter_date, language),
        )

        payment = None
        if template.payment:
            if parsed["amount_due"] <= 0:
                raise LetterDataError(
                    "payload field 'amount_due' must be above 0.00 EUR for a payment letter"
                )
            payment = _Payment(parsed["amount_due"], parsed["due_date"], parsed["ogm"])
        for total_field, parts in template.sums.items():
            if sum(parsed[part] for part in parts) != parsed[total_field]:
                raise LetterDataError(f"payload field {total_field!r} must be the sum of {' + '.join(parts)}")
        if lines:
            total = sum(line.total for line in lines)
            if total != parsed["amount_due"]:
                raise LetterDataError(
                    f"payload field 'lines' adds up to {total} EUR (VAT included), "
                    f"not to amount_due {parsed['amount_due']} EUR"
                )

        texts = template.texts[language]
        return _Letter(
            template=template,
            language=language,
            letter_id=letter_id,
            letter_date=letter_date,
            registered=registered,
            address=address,
            abroad=len(address) > 3,
            subject=texts.subject.format_map(values),
            details=tuple((label, value.format_map(values)) for label, value in texts.details),
            body=tuple(Paragraph(p.text.format_map(values), p.bullet) for p in texts.body),
            payment=payment,
            lines=lines,
        )

    def _address(self, letter: Mapping[str, Any], language: str) -> tuple[str, ...]:
        lines = {}
        for name in ADDRESS_FIELDS:
            value = letter.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and name == "postal_code":
                value = str(value)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise LetterDataError(f"letter field {name!r} is missing or empty")
            if not isinstance(value, str):
                raise LetterDataError(f"letter field {name!r} must be text, got {type(value).__name__}")
            if len(value) > 4 * MAX_ADDRESS_FIELD:  # not worth cleaning first
                raise LetterDataError(f"letter field {name!r} is longer than {MAX_ADDRESS_FIELD} characters")
            problem = fields.hidden_character_problem(value, f"letter field {name!r}")
            if problem:  # one line per field, as printed and as handed to the print house
                raise LetterDataError(problem)
            lines[name] = fields.clean_text(value)
            if len(lines[name]) > MAX_ADDRESS_FIELD:
                raise LetterDataError(f"letter field {name!r} is longer than {MAX_ADDRESS_FIELD} characters")
            self._require_printable(lines[name], f"letter field {name!r}")
        country = letter.get("country") or "BE"
        if not isinstance(country, str) or not re.fullmatch(r"[A-Za-z]{2}", country):
            raise LetterDataError("country must be a two-letter ISO 3166 code such as BE")
        country = country.upper()
        if country == "BE" and not re.fullmatch(r"[1-9]\d{3}", lines["postal_code"]):
            raise LetterDataError("a Belgian postal_code is four digits")
        address = [lines["recipient_name"], lines["street"], f"{lines['postal_code']} {lines['city']}"]
        if country != "BE":
            address.append(_country_name(country, language).upper())
        return tuple(address)

    def _require_printable(self, text: str, where: str) -> None:
        problem = fields.format_character_problem(text, where)
        if problem:
            raise LetterDataError(problem)
        char = self._fonts.unprintable(text)
        if char is not None:
            raise LetterDataError(
                f"{where} contains a character the letter font cannot print: {char!r} (U+{ord(char):04X})"
            )

    def _check_printable(self) -> None:
        """Fixed texts are checked once here, so a letter only has its own data checked."""

        def check(template: str, where: str, text: str) -> None:
            hidden = fields.invisible_format_character(text)
            if hidden is not None:
                raise TemplateError(
                    template,
                    where,
                    f"contains the invisible formatting character "
                    f"U+{ord(hidden):04X}; write the text without it",
                )
            char = self._fonts.unprintable(text)
            if char is not None:
                raise TemplateError(
                    template, where, f"contains {char!r} (U+{ord(char):04X}), which the font lacks"
                )

        s = self._set
        for key in ("street", "postal_code", "city", "website", "enterprise_number", "account_name"):
            check("common", f"sender.{key}", getattr(s.sender, key))
        for dep_name, dep in s.departments.items():
            check("common", f"departments.{dep_name}.email", dep.email)
            check("common", f"departments.{dep_name}.phone", dep.phone)
        for lang in LANGUAGES:
            check("common", f"sender.name.{lang}", s.sender.names[lang])
            for key, label in s.labels[lang].items():
                check("common", f"labels.{lang}.{key}", label)
            for dep_name, dep in s.departments.items():
                check("common", f"departments.{dep_name}.name.{lang}", dep.names[lang])
                for line in dep.signature[lang]:
                    check("common", f"departments.{dep_name}.signature.{lang}", line)
            for letter_type, template in s.templates.items():
                for name, spec in template.fields.items():
                    for code, wording in (spec.choices or {}).items():
                        check(letter_type, f"{name}.{code}.{lang}", wording[lang])
                texts = template.texts[lang]
                for where, text in [
                    ("document_name", texts.document_name),
                    ("subject", texts.subject),
                    *(("details", f"{label} {value}") for label, value in texts.details),
                    *(("body", paragraph.text) for paragraph in texts.body),
                ]:
                    check(letter_type, f"{lang}.{where}", text)

    # -- layout --------------------------------------------------------------------------------

    def _layout(self, letter: _Letter, deadline: float | None = None) -> list[list[Op]]:
        """The letter's pages as drawing operations.

        Page economy: the closing and the signature never stand alone on the last page. When they
        would, the letter is laid out again with tighter gaps between paragraphs, which often brings
        them back onto the page before; if not, the last block of the body (the payment block in a
        payment letter, else the last paragraph) goes over with them."""
        labels = self._set.labels[letter.language]
        first_page = self._first_page(letter, deadline)
        pages, alone = self._flow(letter, first_page, deadline)
        if alone:
            variants: list[dict[str, bool]] = [{"tight": True}]
            if letter.payment:
                # The payment block goes below the lower fold: the signature can fill the room above it.
                variants.append({"tight": True, "sign_first": True})
            variants.append({"carry": True})
            candidates = []
            for variant in variants:
                candidate, alone = self._flow(letter, first_page, deadline, **variant)
                if not alone:
                    candidates.append(candidate)
            pages = min(candidates, key=len) if candidates else pages  # the first of the shortest
        for number, ops in enumerate(pages, start=1):
            if number > 1:
                ops.extend(self._continuation_header(letter))
            ops.extend(self._footer(letter.language, f"{labels['page']} {number}/{len(pages)}"))
        return pages

    def _flow(
        self,
        letter: _Letter,
        first_page: list[Op],
        deadline: float | None,
        *,
        tight: bool = False,
        carry: bool = False,
        sign_first: bool = False,
    ) -> tuple[list[list[Op]], bool]:
        """The pages, and whether the last block (the signature; the payment block with `sign_first`)
        stood alone on the last page. `tight` sets the lines closer and halves the gaps between
        paragraphs; `carry` starts a new page before the last block of the body; `sign_first` puts the
        closing and signature before the payment block."""
        labels = self._set.labels[letter.language]
        department = self._set.departments[letter.template.department]
        envelope = self._set.envelope
        gap = PARAGRAPH_GAP / 2 if tight else PARAGRAPH_GAP
        text_bottom = max(ink_box(self._fonts, op).bottom for op in first_page if isinstance(op, TextOp))
        top = max(text_bottom, envelope.ever_visible.bottom) + FIRST_PAGE_BODY_GAP
        flow = Flow(
            self._fonts,
            top,
            deadline,
            folds=envelope.folds,
            spacing=TIGHT_LINE_SPACING if tight else LINE_SPACING,
        )
        flow.ops.extend(first_page)
        flow.paragraph(letter.subject, style=BOLD, size=11, space_after=3 if tight else 5, tag="H1")
        if letter.details:
            flow.rows(list(letter.details), label_width=48, table=True)
            flow.gap(2 if tight else 4)
        if letter.lines:
            self._lines_table(flow, letter)
            flow.gap(2 if tight else 4)
        flow.paragraph(labels["salutation"], space_after=gap)
        last_block = len(letter.body) - 1 if not letter.payment else None
        after_bullet = False
        list_id = 0
        for index, paragraph in enumerate(letter.body):
            if carry and index == last_block:
                flow.new_page()
            if paragraph.bullet:
                list_id = list_id if after_bullet else new_group()  # bullets in a row are one list
                flow.bullet(paragraph.text, list_id=list_id, space_after=gap / 2)
            else:
                if after_bullet:
                    flow.gap(gap / 2)  # bullets sit closer together than paragraphs
                flow.paragraph(paragraph.text, space_after=gap)
            after_bullet = paragraph.bullet
        signature = self._signature(labels["closing"], department.signature[letter.language])
        if sign_first:
            flow.keep_together(*signature)
        if letter.payment:
            flow.gap(2)
            ops, height = self._payment_block(letter)
            if carry:
                flow.new_page()
            alone = flow.keep_together(ops, height, off_folds=True)
            flow.gap(5)
        if not sign_first:
            alone = flow.keep_together(*signature)
        return flow.pages, alone

    def _first_page(self, letter: _Letter, deadline: float | None) -> list[Op]:
        """Letterhead, date/reference/contact and the address; only the address may come into the
        envelope window (at any position of the folded sheet)."""
        others = self._letterhead(letter) + self._meta(letter, deadline)
        window = self._set.envelope.ever_visible
        for op in others:
            if isinstance(op, TextOp) and _overlaps(ink_box(self._fonts, op), window):
                raise LetterDataError(
                    "the sender block or the date/reference/contact block would show "
                    "through the envelope window"
                )
        return others + self._address_ops(letter.address, deadline)

    def _letterhead(self, letter: _Letter) -> list[Op]:
        sender = self._set.sender
        department = self._set.departments[letter.template.department]
        lang = letter.language
        block: StructPath = (("Div", new_group()),)  # the sender block: who writes, and their address
        group = new_group()
        ops: list[Op] = [
            TextOp(MARGIN_LEFT, SENDER_TOP + 5, sender.names[lang], BOLD, 16, group=group, path=block)
        ]
        y = SENDER_TOP + 11
        ops.append(TextOp(MARGIN_LEFT, y, department.names[lang], BOLD, 9, group=group, path=block))
        group = new_group()
        for line in (sender.street, f"{sender.postal_code} {sender.city}", sender.website):
            y += line_height(SMALL_SIZE)
            ops.append(TextOp(MARGIN_LEFT, y, line, REGULAR, SMALL_SIZE, gray=True, group=group, path=block))
        return ops

    def _meta(self, letter: _Letter, deadline: float | None = None) -> list[Op]:
        labels = self._set.labels[letter.language]
        department = self._set.departments[letter.template.department]
        rows = [
            (labels["date"], fields.format_date(letter.letter_date, letter.language)),
            (labels["reference"], letter.letter_id),
            (labels["contact"], department.email),
            ("", department.phone),
        ]
        # Left of the window, ending 2 mm before the part of the sheet that can come into it.
        width = self._set.envelope.ever_visible.left - 2 - MARGIN_LEFT
        label_width = min(32.0, 3.5 + max(self._fonts.width(label, BOLD, SMALL_SIZE) for label, _ in rows))
        flow = Flow(self._fonts, META_TOP, deadline)
        block: StructPath = (("Div", new_group()),)
        flow.rows(
            rows,
            label_width=label_width,
            size=SMALL_SIZE,
            left=MARGIN_LEFT,
            width=width,
            shrink=(7.5, 6.5),
            path=block,
        )
        if letter.registered:
            flow.gap(1.5)
            flow.paragraph(
                labels["registered"].upper(), style=BOLD, size=9, left=MARGIN_LEFT, width=width, path=block
            )
        return flow.ops

    def _address_ops(self, address: tuple[str, ...], deadline: float | None = None) -> list[Op]:
        """The address lines in the part of the sheet that is always in the envelope window, in the
        largest size at which they fit; at the smallest size a line too long is wrapped at its spaces
        and break points (never inside a word), and an address that still does not fit is refused."""
        box = address_box(self._set.envelope)
        for size in ADDRESS_SIZES:
            if all(
                self._fonts.width(line, REGULAR, size) <= box.width for line in address
            ) and self._address_fits(box, size, len(address)):
                lines = list(address)
                break
        else:
            lines = []
            for index, line in enumerate(address):
                parts = wrap(self._fonts, line, REGULAR, size, box.width, deadline, cut=False)
                if any(self._fonts.width(part, REGULAR, size) > box.width for part in parts):
                    raise LetterDataError(
                        f"letter field {ADDRESS_LINE_FIELDS[min(index, 3)]!r} holds a word too long to fit "
                        "in the envelope window (an address is never split inside a word)"
                    )
                lines += parts
        if len(lines) > ADDRESS_MAX_LINES or any(
            self._fonts.width(line, REGULAR, size) > box.width for line in lines
        ):
            raise LetterDataError("the recipient address is too long to fit in the envelope window")
        height = line_height(size)
        top = box.top + baseline_offset(size)
        group = new_group()
        block: StructPath = (("Div", new_group()),)  # the recipient's address, a block of its own
        ops = [
            TextOp(box.left, top + index * height, line, REGULAR, size, group=group, path=block)
            for index, line in enumerate(lines)
        ]
        if not all(box.contains(ink_box(self._fonts, op)) for op in ops):
            raise LetterDataError("the recipient address is too long to fit in the envelope window")
        return ops

    @staticmethod
    def _address_fits(box: Box, size: float, count: int) -> bool:
        """`count` lines at `size` pt stay inside the box, ascenders and descenders included."""
        last_baseline = box.top + baseline_offset(size) + (count - 1) * line_height(size)
        return last_baseline + DESCENT * size * PT_TO_MM <= box.bottom

    def _lines_table(self, flow: Flow, letter: _Letter) -> None:
        """The itemised lines as a table: description, quantity, unit price (excluding VAT), VAT rate,
        amount (VAT included); then the total, which is amount_due, and the VAT in it. A row never
        splits over two pages; a page the table continues on starts with the header row again.

        Tagged as one Table: THead (the header row, TH cells with /Scope /Column), TBody (a TR per
        line, a TD per cell), TFoot (the total and the VAT, each a TH with /Scope /Row spanning the
        first four columns and a TD). The header row repeated on a later page is an artifact
        (pagination), so the tree holds the table once and a reader meets its header once."""
        labels = self._set.labels[letter.language]
        lang = letter.language
        size = 9.0
        height = line_height(size)
        # Right edges of the number columns, from the left margin; the description fills the rest.
        columns = (
            ("line_quantity", 96.0),
            ("line_unit_price", 124.0),
            ("line_vat", 140.0),
            ("line_amount", CONTENT_WIDTH),
        )
        description_width = 76.0
        right = MARGIN_LEFT + CONTENT_WIDTH
        table = new_group()
        header = [labels[key] for key, _ in columns]

        def row(
            cells: list[str], style: str, description: str, section: str | None, cell_tags: tuple[str, str]
        ) -> None:
            """One row; `section` is THead, TBody or TFoot, None for the header row repeated as an
            artifact; `cell_tags` the structure types of the first cell and of the others."""
            parts = wrap(self._fonts, description, style, size, description_width, flow.deadline) or [""]
            if flow.ensure(len(parts) * height) and section != "THead":
                row(header, BOLD, labels["line_description"], None, ("TH", "TH"))
                header_rule()
            path: StructPath = ()
            if section:
                path = (("Table", table), (section, table), ("TR", new_group()))
            baseline = flow.y + baseline_offset(size)
            texts = [(MARGIN_LEFT, part, index) for index, part in enumerate(parts) if part]
            for text, (_, edge) in zip(cells, columns[-len(cells) :], strict=False):
                if text:
                    texts.append((MARGIN_LEFT + edge - self._fonts.width(text, style, size), text, 0))
            first_cell = new_group()
            for x, text, line in texts:
                is_first = x == MARGIN_LEFT
                flow.ops.append(
                    TextOp(
                        x,
                        baseline + line * height,
                        text,
                        style,
                        size,
                        tag=cell_tags[0 if is_first else 1] if section else None,
                        group=first_cell if is_first else new_group(),
                        path=path,
                        artifact=RUNNING_HEADER,
                    )
                )
            flow.y += len(parts) * height

        def header_rule() -> None:
            flow.ops.append(RuleOp(MARGIN_LEFT, flow.y + 0.3, right, flow.y + 0.3))
            flow.gap(1)

        row(header, BOLD, labels["line_description"], "THead", ("TH", "TH"))
        header_rule()
        for line in letter.lines:
            check_deadline(flow.deadline)
            row(
                [
                    fields.format_quantity(line.quantity, lang),
                    fields.format_amount(line.unit_price, lang),
                    fields.format_vat_rate(line.vat_rate, lang),
                    fields.format_amount(line.total, lang),
                ],
                REGULAR,
                line.description,
                "TBody",
                ("TD", "TD"),
            )
        flow.ops.append(RuleOp(MARGIN_LEFT, flow.y + 0.3, right, flow.y + 0.3))
        flow.gap(1)
        total = sum(line.total for line in letter.lines)
        row([fields.format_amount(total, lang)], BOLD, labels["lines_total"], "TFoot", ("TH", "TD"))
        vat = sum(line.vat for line in letter.lines)
        if vat:
            row([fields.format_amount(vat, lang)], REGULAR, labels["lines_vat"], "TFoot", ("TH", "TD"))

    def _bic(self, letter: _Letter) -> str:
        """The BIC printed and put in the QR code: the configured one; for a letter abroad, else the
        one python-stdnum derives from the city's IBAN (a payer outside the SEPA area needs it)."""
        sender = self._set.sender
        return sender.bic or (sender.bic_from_iban if letter.abroad else "")

    def _payment_block(self, letter: _Letter) -> tuple[list[Op], float]:
        """Framed payment details with the EPC QR code on the right, drawn from y=0."""
        labels = self._set.labels[letter.language]
        sender = self._set.sender
        payment = letter.payment
        lang = letter.language
        qr_payload = epc_payload(
            name=sender.account_name,
            iban=sender.iban.compact,
            amount=payment.amount,
            reference=payment.ogm,
            bic=self._bic(letter) or None,
        )
        matrix = epc_qr_matrix(qr_payload)

        padding = 4.0
        qr_box = Box(MARGIN_LEFT + CONTENT_WIDTH - padding - QR_SIZE, padding - 1, QR_SIZE, QR_SIZE)
        rows = [
            (labels["amount_due"], fields.format_amount(payment.amount, lang)),
            (labels["due_date"], fields.format_date(payment.due_date, lang)),
            (labels["beneficiary"], sender.account_name),
            (labels["account"], sender.iban.formatted),
            *([(labels["bic"], self._bic(letter))] if self._bic(letter) else []),
            (labels["ogm"], fields.format_ogm(payment.ogm)),
        ]
        # One section: its heading, the details as a table of label and value, the code, its caption.
        section: StructPath = (("Sect", new_group()),)
        flow = Flow(self._fonts, padding)
        flow.paragraph(
            labels["payment_title"],
            style=BOLD,
            left=MARGIN_LEFT + padding,
            space_after=1.5,
            tag="H2",
            path=section,
        )
        flow.rows(
            rows,
            label_width=56,
            size=9,
            left=MARGIN_LEFT + padding,
            width=qr_box.left - MARGIN_LEFT - 2 * padding,
            table=True,
            path=section,
        )
        ops = flow.ops
        # The code itself is a figure whose alternative text says what a scan fills in; its caption
        # goes under the rows, beside the code, so that the block is no taller than the code.
        alt = (
            f"{labels['qr_caption']}: {fields.format_amount(payment.amount, lang)}, "
            f"{sender.iban.formatted}, {fields.format_ogm(payment.ogm)}"
        )
        ops.append(QrOp(qr_box, matrix, alt=alt, path=section))
        caption_y = max(flow.y + 1.5, qr_box.bottom - 1.5 - line_height(7.5)) + baseline_offset(7.5)
        ops.append(
            TextOp(
                MARGIN_LEFT + padding,
                caption_y,
                labels["qr_caption"],
                REGULAR,
                7.5,
                gray=True,
                group=new_group(),
                path=section,
            )
        )
        height = max(qr_box.bottom, caption_y + DESCENT * 7.5 * PT_TO_MM) + padding / 2
        ops.append(FrameOp(Box(MARGIN_LEFT, 0, CONTENT_WIDTH, height)))
        return ops, height

    def _signature(self, closing: str, lines: tuple[str, ...]) -> tuple[list[Op], float]:
        """Closing words, then who signs. Letters are signed with the signatory's role, not by hand, so
        no room is left for a signature."""
        flow = Flow(self._fonts, 2)
        flow.paragraph(closing)
        for line in lines:
            flow.paragraph(line, space_after=0)
        return flow.ops, flow.y

    def _continuation_header(self, letter: _Letter) -> list[Op]:
        texts = letter.template.texts[letter.language]
        sender = self._set.sender.names[letter.language]
        line = f"{sender} \u00b7 {texts.document_name} \u00b7 {letter.letter_id}"
        return [
            TextOp(MARGIN_LEFT, 16, line, REGULAR, 8, gray=True, tag=None, artifact=RUNNING_HEADER),
            RuleOp(MARGIN_LEFT, NEXT_PAGE_BODY_TOP - 8, PAGE_WIDTH - MARGIN_LEFT, NEXT_PAGE_BODY_TOP - 8),
        ]

    def _footer(self, language: str, page_text: str) -> list[Op]:
        sender = self._set.sender
        labels = self._set.labels[language]
        line = " \u00b7 ".join(
            (
                sender.names[language],
                sender.street,
                f"{sender.postal_code} {sender.city}",
                f"{labels['enterprise_number']} {sender.enterprise_number}",
                sender.website,
            )
        )
        right = PAGE_WIDTH - MARGIN_LEFT
        return [
            RuleOp(MARGIN_LEFT, FOOTER_RULE, right, FOOTER_RULE),
            TextOp(
                MARGIN_LEFT, FOOTER_BASELINE, line, REGULAR, 7.5, gray=True, tag=None, artifact=RUNNING_FOOTER
            ),
            TextOp(
                right - self._fonts.width(page_text, REGULAR, 7.5),
                FOOTER_BASELINE,
                page_text,
                REGULAR,
                7.5,
                gray=True,
                tag=None,
                artifact=RUNNING_FOOTER,
            ),
        ]

    # -- drawing -------------------------------------------------------------------------------

    def _draw(self, letter: _Letter, pages: list[list[Op]]) -> bytes:
        lang = letter.language
        department = self._set.departments[letter.template.department]
        pdf = LetterPDF(unit="mm", format=(PAGE_WIDTH, PAGE_HEIGHT))
        pdf.set_auto_page_break(False)
        self._fonts.install(pdf, (op.text for ops in pages for op in ops if isinstance(op, TextOp)))
        pdf.set_title(letter.subject)
        pdf.set_subject(letter.template.texts[lang].document_name)
        pdf.set_author(f"{self._set.sender.names[lang]} - {department.names[lang]}")
        pdf.set_lang(f"{lang}-BE")
        pdf.set_creator("dijlepost")
        pdf.set_producer(FPDF_PRODUCER)
        created = datetime.combine(letter.letter_date, time(), tzinfo=UTC)
        pdf.set_creation_date(created)
        # PDF/UA-1: the viewer shows the title, not the file name (7.1); the XMP metadata says the file
        # claims PDF/UA-1 and carries the title (5, 7.1); each page's annotations follow the structure
        # order (/Tabs /S, 7.18.3; a letter has none, but validators ask for the key).
        pdf.viewer_preferences = ViewerPreferences(display_doc_title=True)
        pdf.set_xmp_metadata(
            _xmp_metadata(
                title=letter.subject,
                language=f"{lang}-BE",
                author=f"{self._set.sender.names[lang]} - {department.names[lang]}",
                description=letter.template.texts[lang].document_name,
                created=created,
            )
        )
        pdf.set_draw_color(150)
        pdf.set_line_width(0.2)
        tree = _StructureTree(pdf)
        for ops in pages:
            pdf.add_page()
            font = None
            gray = None
            marks = _MarkedContent(pdf, tree)
            for index, op in enumerate(ops):
                marks.enter(op)
                if isinstance(op, TextOp):
                    if font != (op.style, op.size):
                        font = (op.style, op.size)
                        pdf.set_font(FAMILY, op.style, op.size)
                    if gray != op.gray:
                        gray = op.gray
                        pdf.set_text_color(90 if gray else 0)
                    pdf.text(op.x, op.y, op.text)
                    following = ops[index + 1] if index + 1 < len(ops) else None
                    if (
                        op.tag
                        and op.group
                        and isinstance(following, TextOp)
                        and (following.tag, following.group) == (op.tag, op.group)
                    ):
                        # An invisible space where a line breaks (or between a label and its value),
                        # so that text extraction and screen readers keep the words apart.
                        pdf.text(op.x + self._fonts.width(op.text, op.style, op.size), op.y, " ")
                elif isinstance(op, RuleOp):
                    pdf.line(op.x1, op.y1, op.x2, op.y2)
                elif isinstance(op, FrameOp):
                    pdf.rect(op.box.left, op.box.top, op.box.width, op.box.height)
                else:
                    _draw_qr(pdf, op)
            marks.close()
        tree.finish()
        for page in pdf.pages.values():
            page.__class__ = _StructureOrderPage
        return bytes(pdf.output())


class _StructureOrderPage(PDFPage):
    """fpdf2's page object with `/Tabs /S` (no new slots: a drawn page's class is swapped for this)."""

    __slots__ = ()
    tabs = Name("S")


def _xmp_metadata(*, title: str, language: str, author: str, description: str, created: datetime) -> str:
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


def _code(value: Any) -> str:
    """A code from the row for an error message: quoted when it looks like a code (letters, digits,
    `_.-`, at most 40), else only its type, so that a misplaced name or address is never echoed."""
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", value):
        return repr(value)
    return "(empty)" if value is None or value == "" else f"a value of type {type(value).__name__}"


def _overlaps(a: Box, b: Box) -> bool:
    return a.left < b.right and b.left < a.right and a.top < b.bottom and b.top < a.bottom


class _Element(StructElem):
    """fpdf2's structure element with attributes (/A: a table cell's /Scope and /ColSpan).

    Written by its own `serialize`, which writes what fpdf2's generic one writes (the keys in the
    order of `dir()`, each on its line; test_accessibility.py compares the bytes) without collecting
    the object's attributes by reflection: that took a quarter of the render time of a letter of
    some 50 elements."""

    __slots__ = ("a",)

    def __init__(self, struct_type: str, parent, page_number: int, alt: str | None = None):
        super().__init__(struct_type=struct_type, parent=parent, kids=[], page_number=page_number, alt=alt)
        self.a: str | None = None

    def serialize(self, obj_dict=None, _security_handler=None) -> str:
        if obj_dict is not None or _security_handler is not None or self.t is not None:
            return super().serialize(obj_dict, _security_handler)
        k = self.k
        lines = [f"{self.id} 0 obj", "<<"]
        if self.a is not None:
            lines.append(f"/A {self.a}")
        if self.alt is not None:
            lines.append(f"/Alt {self.alt.serialize(_obj_id=self.id)}")
        lines.append(f"/K {k}" if isinstance(k, int) else f"/K {k.serialize(_obj_id=self.id)}")
        lines.append(f"/P {self.p.ref}")
        if self.pg is not None:
            lines.append(f"/Pg {self.pg.ref}")
        lines += [f"/S {self.s}", "/Type /StructElem", ">>", "endobj"]
        return "\n".join(lines)


class _ContentItem:
    """A marked-content reference (ISO 32000-1, 14.7.4.3): an MCID on another page than the element's
    /Pg, for an element whose content runs over a page break."""

    def __init__(self, page: PDFPage, mcid: int):
        self.page = page
        self.mcid = mcid

    def serialize(self, **_kwargs) -> str:
        return f"<</Type /MCR /Pg {self.page.ref} /MCID {self.mcid}>>"


class _StructureTree(StructureTreeBuilder):
    """The letter's structure tree (PDF 1.7, 14.7 and 14.8) as fpdf2 writes it: fpdf2's builder makes
    a flat /Document of elements; this one nests them. Grouping elements (the sender and address
    blocks, a Table with its THead/TBody/TFoot and rows, a list and its items, the payment section)
    come from the operations' `path`; the elements that hold content (P, H1, H2, TH, TD, Lbl, LBody,
    Figure) from their tag and group. Every element is added under its parent the first time its
    content is drawn, so the tree's order is the order of drawing, which is the order the letter
    reads. A content element keeps all its marked-content sequences, over pages too (/K lists their
    MCIDs, as /MCR references for a page other than its /Pg); the ParentTree lists, per page, the
    element of each MCID.

    fpdf2 writes the StructTreeRoot, the ParentTree, each page's /StructParents and the catalog's
    /MarkInfo << /Marked true >> from it; `__iter__` hands fpdf2 every element to write, parents
    before children."""

    def __init__(self, pdf: FPDF):
        super().__init__()
        self.pdf = pdf
        pdf.struct_builder = self
        self.elements: dict[tuple, _Element] = {}
        self.rows: dict[tuple, list[_Element]] = {}  # a table's rows (path) -> cells, for ColSpan

    def content(self, path: StructPath, leaf: tuple, alt: str | None = None) -> int:
        """The next MCID of the current page, given to the content element `leaf` (type, group) under
        the grouping elements `path`."""
        page = self.pdf.page
        spid = self.spid_per_page_number.setdefault(page, len(self.spid_per_page_number))
        self.pdf.pages[page].struct_parents = spid
        element = self._element(path, leaf, alt)
        mcids = self.struct_tree_root.parent_tree.nums[spid]
        mcid = len(mcids)
        mcids.append(element)
        if element.page_number() == page:
            element.k.append(mcid)
        else:
            element.k.append(_ContentItem(self.pdf.pages[page], mcid))
        return mcid

    def _element(self, path: StructPath, leaf: tuple, alt: str | None = None) -> _Element:
        key = (*path, leaf)
        element = self.elements.get(key)
        if element is not None:
            return element
        parent = self.doc_struct_elem
        for depth in range(len(key)):
            prefix = key[: depth + 1]
            element = self.elements.get(prefix)
            if element is None:
                page = self.pdf.page
                element = _Element(f"/{prefix[-1][0]}", parent, page, alt if prefix == key else None)
                element.pg = self.pdf.pages[page]
                parent.k.append(element)
                self.elements[prefix] = element
                if prefix[-1][0] in ("TH", "TD"):
                    self.rows.setdefault(prefix[:-1], []).append(element)
                    if prefix[-1][0] == "TH":
                        scope = "Column" if any(kind == "THead" for kind, _ in prefix) else "Row"
                        element.a = f"<</O /Table /Scope /{scope}>>"
            parent = element
        return element

    def finish(self) -> None:
        """What is known once the whole letter is drawn: a row with fewer cells than its table's widest
        row (the total under the itemised lines) has its header cell span the missing columns; an
        element with one MCID has it as its /K."""
        widths: dict[tuple, int] = {}
        for row, cells in self.rows.items():
            table = row[: [kind for kind, _ in row].index("Table") + 1]
            widths[table] = max(widths.get(table, 0), len(cells))
        for row, cells in self.rows.items():
            table = row[: [kind for kind, _ in row].index("Table") + 1]
            missing = widths[table] - len(cells)
            if missing and cells[0].s == "/TH":
                cells[0].a = cells[0].a[:-2] + f" /ColSpan {missing + 1}>>"
        for element in self.elements.values():
            if len(element.k) == 1 and isinstance(element.k[0], int):
                element.k = element.k[0]
        self.pdf._set_min_pdf_version("1.4")  # /MarkInfo

    def __iter__(self):
        yield self.struct_tree_root
        yield self.doc_struct_elem
        yield self.struct_tree_root.parent_tree
        yield from self.elements.values()


class _MarkedContent:
    """Tags one page as it is drawn: each run of operations of one content element is one
    marked-content sequence (`/TD <</MCID n>> BDC ... EMC`) with the MCID `_StructureTree` gives it;
    rules, frames, the running header, a table's repeated header row, the footer and the page number
    are artifacts (`/Artifact <</Type /Pagination /Subtype /Footer>> BDC ... EMC`, /Layout for
    rules and frames), so a reader does not read them out on every page."""

    def __init__(self, pdf: FPDF, tree: _StructureTree):
        self.pdf = pdf
        self.tree = tree
        self.current: tuple | None = None

    def enter(self, op: Op) -> None:
        if isinstance(op, TextOp) and op.tag:
            key = (op.path, (op.tag, op.group or id(op)))
        elif isinstance(op, QrOp):
            key = (op.path, ("Figure", id(op)))
        else:
            key = ("Artifact", op.artifact if isinstance(op, TextOp) else LAYOUT)
        if key == self.current:
            return
        self.close()
        self.current = key
        if key[0] == "Artifact":
            kind, _, subtype = key[1].partition("/")
            properties = f"/Type /{kind}" + (f" /Subtype /{subtype}" if subtype else "")
            self.pdf._out(f"/Artifact <<{properties}>> BDC")
            return
        alt = op.alt if isinstance(op, QrOp) else None
        mcid = self.tree.content(key[0], key[1], alt)
        self.pdf._out(f"/{key[1][0]} <</MCID {mcid}>> BDC")

    def close(self) -> None:
        if self.current is not None:
            self.pdf._out("EMC")
            self.current = None


def _draw_qr(pdf: FPDF, op: QrOp) -> None:
    """Dark modules as filled rectangles (sharp at any print resolution): runs of dark modules in a row,
    merged with the same run in the rows below, which halves the number of rectangles. All rectangles
    form one path filled once (`re` ... `f`, as fpdf2's `rect` writes each of them), written straight
    into the page's content stream: some 300 `rect` calls cost more than the rest of the page."""
    module = op.box.width / (len(op.matrix) + 2 * QR_QUIET_ZONE)
    left = op.box.left + QR_QUIET_ZONE * module
    top = op.box.top + QR_QUIET_ZONE * module
    k = pdf.k
    page_height = pdf.h
    path: list[str] = []
    open_runs: dict[tuple[int, int], int] = {}  # (first, end) column -> first row
    for row_index, row in enumerate((*op.matrix, ())):
        runs = set()
        start = None
        for col, dark in enumerate((*row, False)):
            if dark and start is None:
                start = col
            elif not dark and start is not None:
                runs.add((start, col))
                start = None
        for run in sorted(run for run in open_runs if run not in runs):
            first_row = open_runs.pop(run)
            x, y = left + run[0] * module, top + first_row * module
            width, height = (run[1] - run[0]) * module, (row_index - first_row) * module
            path.append(f"{x * k:.2f} {(page_height - y) * k:.2f} {width * k:.2f} {-height * k:.2f} re")
        for run in sorted(runs):
            open_runs.setdefault(run, row_index)
    path.append("f")
    pdf._out("\n".join(path))


@cache
def _country_name(code: str, language: str) -> str:
    # CLDR also names regions and groupings (EU, UN, ZZ "unknown region"); no letter goes there.
    name = None if code in _NOT_COUNTRIES else Locale(language).territories.get(code)
    if name is None:
        raise LetterDataError(f"country {code!r} is not an ISO 3166 country code")
    return name


def _filename(document_name: str, letter_id: str) -> str:
    """`Factuur_<letter_id>.pdf`: the document name in the letter's language, ASCII only, the letter id
    kept whole (it is unique); the name is shortened when the id is long."""
    spelled = document_name.translate(_SPELLED_OUT)
    ascii_name = unicodedata.normalize("NFKD", spelled).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9-]+", "_", ascii_name).strip("_-")
    room = MAX_FILENAME - len(".pdf") - len(letter_id) - 1
    slug = slug[: max(room, 0)].rstrip("_-")
    return f"{slug}_{letter_id}.pdf" if slug else f"{letter_id}.pdf"
