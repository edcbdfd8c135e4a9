"""The blocks of a Mechelen letter laid out as drawing operations per page: the letterhead, the date /
reference / contact block and the address in the envelope window on the first page, then subject,
details, itemised lines, body, payment block with its EPC QR code, closing and signature, with a running
header and a footer on every page. Everything a layout can refuse (an address too long for the window,
a QR code too large, a deadline passed) is refused here, so `validate` is the layout without drawing.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from . import fields
from .errors import LetterDataError
from .fonts import BOLD, REGULAR, LetterFonts
from .layout import (
    ADDRESS_MAX_LINES,
    ADDRESS_SIZES,
    CONTENT_WIDTH,
    DESCENT,
    FIRST_PAGE_BODY_GAP,
    FOOTER_BASELINE,
    FOOTER_RULE,
    LINE_SPACING,
    MARGIN_LEFT,
    META_TOP,
    NEXT_PAGE_BODY_TOP,
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
from .payment import check_epc_qr_fits, epc_payload
from .preparation import Payment, PreparedLetter
from .templates import TemplateSet

# The field of each line of the printed address (the third holds postal code and city).
ADDRESS_LINE_FIELDS = ("recipient_name", "street", "city", "country")
QR_SIZE = 30.0  # mm including the quiet zone: modules of 0.6 mm for a typical version 6 code

Pages = list[list[Op]]


class LetterLayout:
    """Lays out prepared letters of one template set with the letter fonts' metrics; keeps no state
    between letters."""

    def __init__(self, template_set: TemplateSet, fonts: LetterFonts):
        self._set = template_set
        self._fonts = fonts

    def layout(self, letter: PreparedLetter, deadline: float | None = None) -> Pages:
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
        letter: PreparedLetter,
        first_page: list[Op],
        deadline: float | None,
        *,
        tight: bool = False,
        carry: bool = False,
        sign_first: bool = False,
    ) -> tuple[Pages, bool]:
        """The pages, and whether the last block (the signature; the payment block with `sign_first`)
        stood alone on the last page. `tight` sets the lines closer and halves the gaps between
        paragraphs; `carry` starts a new page before the last block of the body; `sign_first` puts the
        closing and signature before the payment block."""
        labels = self._set.labels[letter.language]
        department = self._set.departments[letter.template.department]
        envelope = self._set.envelope
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
        self._body(flow, letter, tight=tight, carry=carry)
        signature = self._signature(labels["closing"], department.signature[letter.language])
        alone = False
        if sign_first:
            flow.keep_together(*signature)
        if letter.payment:
            flow.gap(2)
            ops, height = self._payment_block(letter, letter.payment)
            if carry:
                flow.new_page()
            alone = flow.keep_together(ops, height, off_folds=True)
            flow.gap(5)
        if not sign_first:
            alone = flow.keep_together(*signature)
        return flow.pages, alone

    def _body(self, flow: Flow, letter: PreparedLetter, *, tight: bool, carry: bool) -> None:
        """Subject, details, itemised lines, salutation, and the body's paragraphs and bullets."""
        labels = self._set.labels[letter.language]
        gap = PARAGRAPH_GAP / 2 if tight else PARAGRAPH_GAP
        flow.paragraph(letter.subject, style=BOLD, size=11, space_after=3 if tight else 5, tag="H1")
        if letter.details:
            flow.rows(list(letter.details), label_width=48, table=True)
            flow.gap(2 if tight else 4)
        if letter.lines:
            _LinesTable(self._fonts, flow, labels, letter).draw()
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

    def _first_page(self, letter: PreparedLetter, deadline: float | None) -> list[Op]:
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

    def _letterhead(self, letter: PreparedLetter) -> list[Op]:
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

    def _meta(self, letter: PreparedLetter, deadline: float | None = None) -> list[Op]:
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
        size, lines = self._address_lines(box, address, deadline)
        if len(lines) > ADDRESS_MAX_LINES or any(
            self._fonts.width(line, REGULAR, size) > box.width for line in lines
        ):
            raise LetterDataError("the recipient address is too long to fit in the envelope window")
        height = line_height(size)
        top = box.top + baseline_offset(size)
        group = new_group()
        block: StructPath = (("Div", new_group()),)  # the recipient's address, a block of its own
        text_ops = [
            TextOp(box.left, top + index * height, line, REGULAR, size, group=group, path=block)
            for index, line in enumerate(lines)
        ]
        if not all(box.contains(ink_box(self._fonts, op)) for op in text_ops):
            raise LetterDataError("the recipient address is too long to fit in the envelope window")
        ops: list[Op] = [*text_ops]
        return ops

    def _address_lines(
        self, box: Box, address: tuple[str, ...], deadline: float | None
    ) -> tuple[float, list[str]]:
        """The size (pt) and the lines of the address: the largest size at which every line fits as it
        is, else the smallest with the lines wrapped (a word too long for the window is refused)."""
        for size in ADDRESS_SIZES:
            if all(self._fonts.width(line, REGULAR, size) <= box.width for line in address) and _address_fits(
                box, size, len(address)
            ):
                return size, list(address)
        lines: list[str] = []
        for index, line in enumerate(address):
            parts = wrap(self._fonts, line, REGULAR, size, box.width, deadline, cut=False)
            if any(self._fonts.width(part, REGULAR, size) > box.width for part in parts):
                raise LetterDataError(
                    f"letter field {ADDRESS_LINE_FIELDS[min(index, 3)]!r} holds a word too long to fit "
                    "in the envelope window (an address is never split inside a word)"
                )
            lines += parts
        return size, lines

    def _bic(self, letter: PreparedLetter) -> str:
        """The BIC printed and put in the QR code: the configured one; for a letter abroad, else the
        one python-stdnum derives from the city's IBAN (a payer outside the SEPA area needs it)."""
        sender = self._set.sender
        return sender.bic or (sender.bic_from_iban if letter.abroad else "")

    def _payment_block(self, letter: PreparedLetter, payment: Payment) -> tuple[list[Op], float]:
        """Framed payment details with the EPC QR code on the right, drawn from y=0. The layout
        carries the code's payload and checks that the code fits; its modules are built when drawn."""
        labels = self._set.labels[letter.language]
        sender = self._set.sender
        lang = letter.language
        bic = self._bic(letter)
        qr_payload = self._qr_payload(payment, bic)
        padding = 4.0
        qr_box = Box(MARGIN_LEFT + CONTENT_WIDTH - padding - QR_SIZE, padding - 1, QR_SIZE, QR_SIZE)
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
            self._payment_rows(letter, payment, bic),
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
        ops.append(QrOp(qr_box, qr_payload, alt=alt, path=section))
        caption_y = max(flow.y + 1.5, qr_box.bottom - 1.5 - line_height(7.5)) + baseline_offset(7.5)
        caption = labels["qr_caption"]
        ops.append(
            TextOp(
                MARGIN_LEFT + padding,
                caption_y,
                caption,
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

    def _qr_payload(self, payment: Payment, bic: str) -> str:
        """The EPC QR payload, checked to fit the largest code a scanner must read."""
        sender = self._set.sender
        payload = epc_payload(
            name=sender.account_name,
            iban=sender.iban.compact,
            amount=payment.amount,
            reference=payment.ogm,
            bic=bic or None,
        )
        check_epc_qr_fits(payload)
        return payload

    def _payment_rows(self, letter: PreparedLetter, payment: Payment, bic: str) -> list[tuple[str, str]]:
        labels = self._set.labels[letter.language]
        sender = self._set.sender
        lang = letter.language
        return [
            (labels["amount_due"], fields.format_amount(payment.amount, lang)),
            (labels["due_date"], fields.format_date(payment.due_date, lang)),
            (labels["beneficiary"], sender.account_name),
            (labels["account"], sender.iban.formatted),
            *([(labels["bic"], bic)] if bic else []),
            (labels["ogm"], fields.format_ogm(payment.ogm)),
        ]

    def _signature(self, closing: str, lines: tuple[str, ...]) -> tuple[list[Op], float]:
        """Closing words, then who signs. Letters are signed with the signatory's role, not by hand, so
        no room is left for a signature."""
        flow = Flow(self._fonts, 2)
        flow.paragraph(closing)
        for line in lines:
            flow.paragraph(line, space_after=0)
        return flow.ops, flow.y

    def _continuation_header(self, letter: PreparedLetter) -> list[Op]:
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

        def footer_text(x: float, text: str) -> TextOp:
            return TextOp(
                x, FOOTER_BASELINE, text, REGULAR, 7.5, gray=True, tag=None, artifact=RUNNING_FOOTER
            )

        return [
            RuleOp(MARGIN_LEFT, FOOTER_RULE, right, FOOTER_RULE),
            footer_text(MARGIN_LEFT, line),
            footer_text(right - self._fonts.width(page_text, REGULAR, 7.5), page_text),
        ]


class _LinesTable:
    """The itemised lines as a table: description, quantity, unit price (excluding VAT), VAT rate,
    amount (VAT included); then the total, which is amount_due, and the VAT in it. A row never splits
    over two pages; a page the table continues on starts with the header row again.

    Tagged as one Table: THead (the header row, TH cells with /Scope /Column), TBody (a TR per line, a
    TD per cell), TFoot (the total and the VAT, each a TH with /Scope /Row spanning the first four
    columns and a TD). The header row repeated on a later page is an artifact (pagination), so the tree
    holds the table once and a reader meets its header once."""

    SIZE = 9.0
    # Right edges of the number columns, from the left margin; the description fills the rest.
    COLUMNS = (
        ("line_quantity", 96.0),
        ("line_unit_price", 124.0),
        ("line_vat", 140.0),
        ("line_amount", CONTENT_WIDTH),
    )
    DESCRIPTION_WIDTH = 76.0
    RIGHT = MARGIN_LEFT + CONTENT_WIDTH

    def __init__(self, fonts: LetterFonts, flow: Flow, labels: Mapping[str, str], letter: PreparedLetter):
        self.fonts = fonts
        self.flow = flow
        self.labels = labels
        self.letter = letter
        self.height = line_height(self.SIZE)
        self.table = new_group()
        self.header = [labels[key] for key, _ in self.COLUMNS]

    def draw(self) -> None:
        labels, lang, lines = self.labels, self.letter.language, self.letter.lines
        self._row(self.header, BOLD, labels["line_description"], "THead", ("TH", "TH"))
        self._rule()
        for line in lines:
            check_deadline(self.flow.deadline)
            cells = [
                fields.format_quantity(line.quantity, lang),
                fields.format_amount(line.unit_price, lang),
                fields.format_vat_rate(line.vat_rate, lang),
                fields.format_amount(line.total, lang),
            ]
            self._row(cells, REGULAR, line.description, "TBody", ("TD", "TD"))
        self._rule()
        total = sum((line.total for line in lines), Decimal(0))
        self._row([fields.format_amount(total, lang)], BOLD, labels["lines_total"], "TFoot", ("TH", "TD"))
        vat = sum((line.vat for line in lines), Decimal(0))
        if vat:
            self._row([fields.format_amount(vat, lang)], REGULAR, labels["lines_vat"], "TFoot", ("TH", "TD"))

    def _rule(self) -> None:
        """The rule under the header row and above the total."""
        flow = self.flow
        flow.ops.append(RuleOp(MARGIN_LEFT, flow.y + 0.3, self.RIGHT, flow.y + 0.3))
        flow.gap(1)

    def _row(
        self, cells: list[str], style: str, description: str, section: str | None, cell_tags: tuple[str, str]
    ) -> None:
        """One row; `section` is THead, TBody or TFoot, None for the header row repeated as an
        artifact; `cell_tags` the structure types of the first cell and of the others."""
        flow, size, height = self.flow, self.SIZE, self.height
        parts = wrap(self.fonts, description, style, size, self.DESCRIPTION_WIDTH, flow.deadline) or [""]
        if flow.ensure(len(parts) * height) and section != "THead":
            self._row(self.header, BOLD, self.labels["line_description"], None, ("TH", "TH"))
            self._rule()
        path: StructPath = ()
        if section:
            path = (("Table", self.table), (section, self.table), ("TR", new_group()))
        baseline = flow.y + baseline_offset(size)
        texts = [(MARGIN_LEFT, part, index) for index, part in enumerate(parts) if part]
        for text, (_, edge) in zip(cells, self.COLUMNS[-len(cells) :], strict=False):
            if text:
                texts.append((MARGIN_LEFT + edge - self.fonts.width(text, style, size), text, 0))
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


def _address_fits(box: Box, size: float, count: int) -> bool:
    """`count` lines at `size` pt stay inside the box, ascenders and descenders included."""
    last_baseline = box.top + baseline_offset(size) + (count - 1) * line_height(size)
    return last_baseline + DESCENT * size * PT_TO_MM <= box.bottom


def _overlaps(a: Box, b: Box) -> bool:
    return a.left < b.right and b.left < a.right and a.top < b.bottom and b.top < a.bottom
