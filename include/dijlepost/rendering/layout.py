"""Page geometry of a Mechelen letter and the text flow that fills the pages.

Layout happens before any PDF exists: blocks of text are wrapped with the font's own widths and
placed top to bottom as drawing operations per page, starting a new page when the next line does not
fit. Knowing the page count before drawing is what lets the footer say "1/2" without fpdf2's
page-alias pass, and wrapping words here is linear where fpdf2's `multi_cell` re-measures the line
for every character.

All measures are millimetres from the top-left corner of an A4 page.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from .errors import RenderTimeout
from .fonts import BOLD, PT_TO_MM, REGULAR, LetterFonts


@dataclass(frozen=True)
class Box:
    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height

    def contains(self, other: "Box") -> bool:
        return (self.left <= other.left and self.top <= other.top
                and other.right <= self.right and other.bottom <= self.bottom)


PAGE_WIDTH = 210.0
PAGE_HEIGHT = 297.0
MARGIN_LEFT = 20.0
MARGIN_RIGHT = 20.0
CONTENT_WIDTH = PAGE_WIDTH - MARGIN_LEFT - MARGIN_RIGHT

# Belgian DL envelope (220 x 110 mm) with the address window on the right: window 100 x 45 mm,
# 20 mm from the right edge and 15 mm from the bottom. The A4 sheet, folded in three (99 mm), can sit
# up to 10 mm to either side and 11 mm lower in the envelope; this is the part of the sheet that shows
# through the window whatever the play. Change it here for another envelope.
ENVELOPE_WINDOW = Box(left=100.0, top=50.0, width=90.0, height=34.0)
# The recipient address keeps clear of the window edges (bpost: nothing of the address may slip
# under the window edge).
ADDRESS_BOX = Box(left=ENVELOPE_WINDOW.left + 5, top=ENVELOPE_WINDOW.top + 4,
                  width=ENVELOPE_WINDOW.width - 10, height=ENVELOPE_WINDOW.height - 8)
ADDRESS_SIZES = (10.0, 9.0, 8.0)       # pt, largest that fits the box wins

SENDER_TOP = 15.0
META_BOX = Box(left=MARGIN_LEFT, top=52.0, width=75.0, height=38.0)
FIRST_PAGE_BODY_TOP = 94.0
NEXT_PAGE_BODY_TOP = 28.0
BODY_BOTTOM = 274.0
FOOTER_RULE = 279.0
FOOTER_BASELINE = 284.0

BODY_SIZE = 10.0
SMALL_SIZE = 8.5
LINE_SPACING = 1.35
PARAGRAPH_GAP = 2.6
BULLET_INDENT = 5.0
# DejaVu Sans vertical metrics (hhea ascent 1901, descent 483 per 2048 units per em).
ASCENT = 1901 / 2048
DESCENT = 483 / 2048


_groups = itertools.count(1)


def new_group() -> int:
    """A fresh structure-element id: consecutive text operations with the same tag and group are one
    element of the tagged PDF (one paragraph, one heading, one label/value row)."""
    return next(_groups)


@dataclass(frozen=True, slots=True)
class TextOp:
    x: float
    y: float            # baseline
    text: str
    style: str
    size: float
    gray: bool = False
    tag: str | None = "P"       # structure type (P, H1, H2); None for a page artifact (footer, header)
    group: int = 0              # see new_group(); 0 = an element of its own


@dataclass(frozen=True, slots=True)
class RuleOp:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class FrameOp:
    box: Box


@dataclass(frozen=True, slots=True)
class QrOp:
    box: Box                                # includes the quiet zone
    matrix: tuple[tuple[bool, ...], ...]
    alt: str = ""                           # alternative text of the figure


Op = TextOp | RuleOp | FrameOp | QrOp


def line_height(size_pt: float) -> float:
    return size_pt * PT_TO_MM * LINE_SPACING


def baseline_offset(size_pt: float) -> float:
    """From the top of a line box to the baseline, with the glyphs centred in the line."""
    size = size_pt * PT_TO_MM
    return (line_height(size_pt) - (ASCENT + DESCENT) * size) / 2 + ASCENT * size


def ink_box(fonts: LetterFonts, op: TextOp) -> Box:
    """The area a text operation's glyphs can cover (ascender to descender)."""
    size = op.size * PT_TO_MM
    return Box(op.x, op.y - ASCENT * size, fonts.width(op.text, op.style, op.size), (ASCENT + DESCENT) * size)


# Where a word too long for its line may break, in this order of preference: at a space (not here: the
# words are split at spaces first), after a hyphen, dash, slash or underscore, and before the "@" and
# the dots of an e-mail or web address (economie.wonen | @mechelen | .be), as typesetters break them.
BREAK_AFTER = frozenset("-/_\u2010\u2011\u2013\u2014")
BREAK_BEFORE = frozenset("@.")
DEADLINE_EVERY = 64        # words, pieces or lines between two looks at the clock


def check_deadline(deadline: float | None) -> None:
    """Raise RenderTimeout once `time.monotonic()` has passed `deadline` (None: no deadline)."""
    if deadline is not None and time.monotonic() > deadline:
        raise RenderTimeout("the render deadline")


def wrap(fonts: LetterFonts, text: str, style: str, size_pt: float, width: float,
         deadline: float | None = None) -> list[str]:
    """Greedy word wrap at spaces. A word wider than the whole line breaks at its break points (see
    BREAK_AFTER, BREAK_BEFORE), and only a piece without any, still wider than the line, is cut
    between characters. Linear in the length of the text: every character is measured once (twice
    in a word that has to be broken)."""
    space = fonts.width(" ", style, size_pt)
    lines: list[str] = []
    line: list[str] = []
    used = 0.0
    for count, word in enumerate(text.split(" ")):
        if not word:
            continue
        if count % DEADLINE_EVERY == 0:
            check_deadline(deadline)
        word_width = fonts.width(word, style, size_pt)
        gap = space if line else 0.0
        if used + gap + word_width <= width:
            line.append(" " + word if line else word)
            used += gap + word_width
            continue
        if word_width <= width:
            lines.append("".join(line))
            line, used = [word], word_width
            continue
        # Longer than a line: its pieces fill the current line and the next ones.
        for index, piece in enumerate(_pieces(word)):
            if index % DEADLINE_EVERY == 0:
                check_deadline(deadline)
            piece_width = word_width if len(piece) == len(word) else fonts.width(piece, style, size_pt)
            gap = space if line and index == 0 else 0.0
            if used + gap + piece_width <= width:
                line.append(" " + piece if gap else piece)
                used += gap + piece_width
                continue
            if line:
                lines.append("".join(line))
                line, used = [], 0.0
            if piece_width <= width:
                line, used = [piece], piece_width
                continue
            for number, char in enumerate(piece):     # no break point: between characters
                if number % (DEADLINE_EVERY * 16) == 0:
                    check_deadline(deadline)
                char_width = fonts.width(char, style, size_pt)
                if line and used + char_width > width:
                    lines.append("".join(line))
                    line, used = [], 0.0
                line.append(char)
                used += char_width
    if line:
        lines.append("".join(line))
    return lines


def _pieces(word: str):
    """The word split at its break points: after BREAK_AFTER characters, before BREAK_BEFORE ones."""
    start = 0
    for index, char in enumerate(word):
        if char in BREAK_AFTER:
            if index + 1 > start:
                yield word[start:index + 1]
            start = index + 1
        elif char in BREAK_BEFORE and index > start:
            yield word[start:index]
            start = index
    if start < len(word):
        yield word[start:]


class Flow:
    """Places text top to bottom over as many pages as it needs."""

    def __init__(self, fonts: LetterFonts, top: float, deadline: float | None = None):
        self.fonts = fonts
        self.pages: list[list[Op]] = [[]]
        self.y = top
        self.deadline = deadline

    @property
    def ops(self) -> list[Op]:
        return self.pages[-1]

    def new_page(self) -> None:
        self.pages.append([])
        self.y = NEXT_PAGE_BODY_TOP

    def ensure(self, height: float) -> None:
        """Start a new page unless `height` mm still fit on this one."""
        if self.y + height > BODY_BOTTOM and self.y > NEXT_PAGE_BODY_TOP:
            self.new_page()

    def gap(self, height: float) -> None:
        self.y += height

    def paragraph(self, text: str, *, style: str = REGULAR, size: float = BODY_SIZE,
                  left: float = MARGIN_LEFT, width: float = CONTENT_WIDTH,
                  space_after: float = PARAGRAPH_GAP, tag: str = "P", group: int | None = None) -> None:
        height = line_height(size)
        group = group or new_group()
        for number, line in enumerate(wrap(self.fonts, text, style, size, width, self.deadline)):
            if number % DEADLINE_EVERY == 0:
                check_deadline(self.deadline)
            self.ensure(height)
            self.ops.append(TextOp(left, self.y + baseline_offset(size), line, style, size,
                                   tag=tag, group=group))
            self.y += height
        self.y += space_after

    def bullet(self, text: str, *, size: float = BODY_SIZE) -> None:
        """A list item: the bullet and its text are one paragraph of the tagged PDF."""
        self.ensure(line_height(size))
        group = new_group()
        self.ops.append(TextOp(MARGIN_LEFT + 1.5, self.y + baseline_offset(size), "\u2022", REGULAR, size,
                               group=group))
        self.paragraph(text, size=size, left=MARGIN_LEFT + BULLET_INDENT,
                       width=CONTENT_WIDTH - BULLET_INDENT, space_after=PARAGRAPH_GAP / 2, group=group)

    def rows(self, rows: list[tuple[str, str]], *, label_width: float, size: float = BODY_SIZE,
             left: float = MARGIN_LEFT, width: float = CONTENT_WIDTH) -> None:
        """Label/value rows (label in bold); a row splits over two pages only if it is longer than a page."""
        height = line_height(size)
        for label, value in rows:
            check_deadline(self.deadline)
            labels = wrap(self.fonts, label, BOLD, size, label_width - 3, self.deadline)
            values = wrap(self.fonts, value, REGULAR, size, width - label_width, self.deadline)
            count = max(len(labels), len(values))
            if count * height <= BODY_BOTTOM - NEXT_PAGE_BODY_TOP:
                self.ensure(count * height)
            group = new_group()     # a row reads as one paragraph: the label, then the value
            for index in range(count):
                self.ensure(height)
                baseline = self.y + baseline_offset(size)
                if index < len(labels):
                    self.ops.append(TextOp(left, baseline, labels[index], BOLD, size, group=group))
                if index < len(values):
                    self.ops.append(TextOp(left + label_width, baseline, values[index], REGULAR, size,
                                           group=group))
                self.y += height

    def keep_together(self, ops: list[Op], height: float) -> None:
        """Place a block drawn from y=0 as one piece, on a new page if it does not fit here."""
        self.ensure(height)
        self.ops.extend(_shift(op, self.y) for op in ops)
        self.y += height


def _shift(op: Op, dy: float) -> Op:
    if isinstance(op, TextOp):
        return TextOp(op.x, op.y + dy, op.text, op.style, op.size, op.gray, op.tag, op.group)
    if isinstance(op, RuleOp):
        return RuleOp(op.x1, op.y1 + dy, op.x2, op.y2 + dy)
    if isinstance(op, FrameOp):
        return FrameOp(Box(op.box.left, op.box.top + dy, op.box.width, op.box.height))
    return QrOp(Box(op.box.left, op.box.top + dy, op.box.width, op.box.height), op.matrix, op.alt)
