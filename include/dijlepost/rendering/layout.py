"""Page geometry of a Mechelen letter and the text flow that fills the pages.

Layout happens before any PDF exists: blocks of text are wrapped with the font's own widths and
placed top to bottom as drawing operations per page, starting a new page when the next line does not
fit. Knowing the page count before drawing is what lets the footer say "1/2" without fpdf2's
page-alias pass, and wrapping words here is linear where fpdf2's `multi_cell` re-measures the line
for every character.

All measures are millimetres from the top-left corner of an A4 page.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from typing import NamedTuple

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

    def contains(self, other: Box) -> bool:
        return (
            self.left <= other.left
            and self.top <= other.top
            and other.right <= self.right
            and other.bottom <= self.bottom
        )


PAGE_WIDTH = 210.0
PAGE_HEIGHT = 297.0
MARGIN_LEFT = 20.0
MARGIN_RIGHT = 20.0
CONTENT_WIDTH = PAGE_WIDTH - MARGIN_LEFT - MARGIN_RIGHT

# Where bpost's sorting machines need paper left free (bpost MassPost Guide, section 1 "Addressing",
# and www.bpost.be "De juiste plaats van het adres"): at least 30 mm free below the address zone (for a
# window envelope: below the bottom edge of the window; the machine prints its sorting barcode
# there), at least 15 mm right of it and 15 mm left of it, the address zone at most 125 x 100 mm,
# and the franking zone at the top right (40 mm high on items at least 11 cm tall, 20 mm below that)
# clear of the address.
BPOST_FREE_BELOW = 30.0
BPOST_FREE_RIGHT = 15.0
BPOST_FREE_LEFT = 15.0
BPOST_MAX_ZONE = (125.0, 100.0)
BPOST_FRANKING_WIDTH = 74.0


def bpost_franking_height(envelope_height: float) -> float:
    return 40.0 if envelope_height >= 110 else 20.0


@dataclass(frozen=True)
class Envelope:
    """A window envelope and how the A4 sheet is folded into it (common.yaml `envelope`).

    `window` is measured on the envelope's front from its top-left corner; `folds` are the sheet's
    fold lines in mm from its top (a DL tri-fold: 99 and 198), the top panel facing the window. The
    folded sheet can move inside the envelope by the difference in size (`play`), so a part of the
    sheet is in the window whatever its position (`always_visible`) and a larger part can come into
    the window at some position (`ever_visible`). The address goes in the first; nothing else may
    reach the second."""

    name: str
    width: float
    height: float
    window: Box
    folds: tuple[float, ...]

    @property
    def play(self) -> tuple[float, float]:
        """How far the folded sheet can move: sideways, up and down (mm)."""
        return max(self.width - PAGE_WIDTH, 0.0), max(self.height - self.folds[0], 0.0)

    @property
    def always_visible(self) -> Box:
        """The part of the sheet in the window at every position of the sheet (sheet coordinates)."""
        dx, dy = self.play
        return Box(self.window.left, self.window.top, self.window.width - dx, self.window.height - dy)

    @property
    def ever_visible(self) -> Box:
        """The part of the sheet the window can show at some position of the sheet."""
        dx, dy = self.play
        return Box(
            self.window.left - dx, self.window.top - dy, self.window.width + dx, self.window.height + dy
        )

    def bpost_problems(self) -> list[str]:
        """What in this envelope breaks bpost's free zones (empty: none)."""
        window, problems = self.window, []
        if len(self.folds) < 1 or not 0 < self.folds[0] < PAGE_HEIGHT:
            problems.append("folds must start with the fold under the window's panel")
        if window.left < 0 or window.top < 0 or window.right > self.width or window.bottom > self.height:
            problems.append("the window lies outside the envelope")
        if self.height - window.bottom < BPOST_FREE_BELOW:
            problems.append(
                f"bpost needs {BPOST_FREE_BELOW:g} mm free below the window, "
                f"this envelope leaves {self.height - window.bottom:g} mm"
            )
        if self.width - window.right < BPOST_FREE_RIGHT:
            problems.append(
                f"bpost needs {BPOST_FREE_RIGHT:g} mm free right of the window, "
                f"this envelope leaves {self.width - window.right:g} mm"
            )
        if window.left < BPOST_FREE_LEFT:
            problems.append(f"bpost needs {BPOST_FREE_LEFT:g} mm free left of the window")
        if window.width > BPOST_MAX_ZONE[0] or window.height > BPOST_MAX_ZONE[1]:
            problems.append("bpost's address zone is at most 125 x 100 mm")
        franking = bpost_franking_height(self.height)
        if window.right > self.width - BPOST_FRANKING_WIDTH and window.top < franking:
            problems.append(
                f"the window reaches into bpost's franking zone (the top {franking:g} mm "
                f"of the right {BPOST_FRANKING_WIDTH:g} mm)"
            )
        visible = self.always_visible
        if visible.width < 60 or visible.height < 20:
            problems.append("the part of the sheet always in the window is too small for an address")
        return problems


# The address keeps this far inside the part of the sheet that is always in the window (a fold is
# never exactly where it should be).
ADDRESS_INSET = (4.0, 1.5)  # mm, left/right and top/bottom
ADDRESS_SIZES = (10.0, 9.0, 8.0)  # pt, largest that fits the box wins
ADDRESS_MAX_LINES = 6


def address_box(envelope: Envelope) -> Box:
    visible = envelope.always_visible
    dx, dy = ADDRESS_INSET
    return Box(visible.left + dx, visible.top + dy, visible.width - 2 * dx, visible.height - 2 * dy)


SENDER_TOP = 15.0
# Date, reference and contact, left of the window: they end 2 mm before the part of the sheet that can
# come into the window (ever_visible), checked per letter.
META_TOP = 46.0
FIRST_PAGE_BODY_GAP = 5.0  # below the lowest of the window, the address and the meta block
FOLD_CLEARANCE = 3.0  # nothing kept in one piece (the payment block) this close to a fold
NEXT_PAGE_BODY_TOP = 28.0
BODY_BOTTOM = 274.0
FOOTER_RULE = 279.0
FOOTER_BASELINE = 284.0

BODY_SIZE = 10.0
SMALL_SIZE = 8.5
LINE_SPACING = 1.35
TIGHT_LINE_SPACING = 1.22  # page economy: what a letter gets before a page holds only its signature
PARAGRAPH_GAP = 2.6
BULLET_INDENT = 5.0
# DejaVu Sans vertical metrics (hhea ascent 1901, descent 483 per 2048 units per em).
ASCENT = 1901 / 2048
DESCENT = 483 / 2048


_groups = itertools.count(1)


def new_group() -> int:
    """A fresh structure-element id: text operations with the same path, tag and group are one element
    of the tagged PDF (one paragraph, one heading, one table cell), and a (type, id) pair in a path one
    grouping element (a table, a row, a list)."""
    return next(_groups)


# What an artifact is (ISO 32000-1, 14.8.2.2): its /Type and /Subtype in the marked content's properties.
LAYOUT = "Layout"  # rules, frames
RUNNING_HEADER = "Pagination/Header"  # the running header of later pages, a table's repeated header row
RUNNING_FOOTER = "Pagination/Footer"  # the footer line and the page number

# Where an element sits in the structure tree: the grouping elements above it, outermost first, each a
# (structure type, new_group() id) pair, e.g. (("Table", 7), ("TBody", 7), ("TR", 9)). Operations
# with the same container pairs are under the same elements.
StructPath = tuple[tuple[str, int], ...]


class TextOp(NamedTuple):
    """A line of text at its baseline. Operations are named tuples: a letter makes some 120 of them,
    and a frozen dataclass is four times as slow to make (and `dataclasses.replace` ten times)."""

    x: float
    y: float  # baseline
    text: str
    style: str
    size: float
    gray: bool = False
    tag: str | None = "P"  # structure type (P, H1, TH, LBody...); None for an artifact
    group: int = 0  # see new_group(); 0 = an element of its own
    path: StructPath = ()  # the grouping elements it is in (none: directly under /Document)
    artifact: str = LAYOUT  # what kind of artifact, when tag is None


class RuleOp(NamedTuple):
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class FrameOp:
    box: Box


@dataclass(frozen=True, slots=True)
class QrOp:
    box: Box  # includes the quiet zone
    payload: str  # the EPC QR payload; its modules are built when the code is drawn
    alt: str = ""  # alternative text of the figure
    path: StructPath = ()


Op = TextOp | RuleOp | FrameOp | QrOp


def line_height(size_pt: float, spacing: float = LINE_SPACING) -> float:
    return size_pt * PT_TO_MM * spacing


def baseline_offset(size_pt: float, spacing: float = LINE_SPACING) -> float:
    """From the top of a line box to the baseline, with the glyphs centred in the line."""
    size = size_pt * PT_TO_MM
    return (line_height(size_pt, spacing) - (ASCENT + DESCENT) * size) / 2 + ASCENT * size


def ink_box(fonts: LetterFonts, op: TextOp) -> Box:
    """The area a text operation's glyphs can cover (ascender to descender)."""
    size = op.size * PT_TO_MM
    return Box(op.x, op.y - ASCENT * size, fonts.width(op.text, op.style, op.size), (ASCENT + DESCENT) * size)


# Where a word too long for its line may break, in this order of preference: at a space (not here: the
# words are split at spaces first), after a hyphen, dash, slash or underscore, and before the "@" and
# the dots of an e-mail or web address (economie.wonen | @mechelen | .be), as typesetters break them.
BREAK_AFTER = frozenset("-/_\u2010\u2011\u2013\u2014")
BREAK_BEFORE = frozenset("@.")
DEADLINE_EVERY = 64  # words, pieces or lines between two looks at the clock


def check_deadline(deadline: float | None) -> None:
    """Raise RenderTimeout once `time.monotonic()` has passed `deadline` (None: no deadline)."""
    if deadline is not None and time.monotonic() > deadline:
        raise RenderTimeout("the render deadline")


def wrap(
    fonts: LetterFonts,
    text: str,
    style: str,
    size_pt: float,
    width: float,
    deadline: float | None = None,
    *,
    cut: bool = True,
) -> list[str]:
    """Greedy word wrap at spaces. A word wider than the whole line breaks at its break points (see
    BREAK_AFTER, BREAK_BEFORE), and only a piece without any, still wider than the line, is cut
    between characters (with `cut=False` it is left whole on a line of its own, wider than `width`,
    for the caller to refuse). Linear in the length of the text: every character is measured once
    (twice in a word that has to be broken). A text wrapped before at the same size and width (most of
    a template's text is the same in every letter) comes from `LetterFonts.wrapped`."""
    key = (text, style, size_pt, width, cut)
    known = fonts.wrapped.get(key)
    if known is not None:
        return list(known)
    lines = _wrap(fonts, text, style, size_pt, width, deadline, cut)
    fonts.keep_wrapped(key, tuple(lines))
    return lines


def _wrap(
    fonts: LetterFonts, text: str, style: str, size_pt: float, width: float, deadline: float | None, cut: bool
) -> list[str]:
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
            if piece_width <= width or not cut:
                line, used = [piece], piece_width
                continue
            for number, char in enumerate(piece):  # no break point: between characters
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
                yield word[start : index + 1]
            start = index + 1
        elif char in BREAK_BEFORE and index > start:
            yield word[start:index]
            start = index
    if start < len(word):
        yield word[start:]


class Flow:
    """Places text top to bottom over as many pages as it needs."""

    def __init__(
        self,
        fonts: LetterFonts,
        top: float,
        deadline: float | None = None,
        folds: tuple[float, ...] = (),
        spacing: float = LINE_SPACING,
    ):
        self.fonts = fonts
        self.pages: list[list[Op]] = [[]]
        self.y = top
        self.deadline = deadline
        self.folds = folds  # fold lines of the sheet, kept clear by keep_together(off_folds=True)
        self.spacing = spacing  # line spacing of paragraphs, bullets and rows

    @property
    def ops(self) -> list[Op]:
        return self.pages[-1]

    def new_page(self) -> None:
        self.pages.append([])
        self.y = NEXT_PAGE_BODY_TOP

    def ensure(self, height: float) -> bool:
        """Start a new page unless `height` mm still fit on this one; True if it started one."""
        if self.y + height > BODY_BOTTOM and self.y > NEXT_PAGE_BODY_TOP:
            self.new_page()
            return True
        return False

    def gap(self, height: float) -> None:
        self.y += height

    def paragraph(
        self,
        text: str,
        *,
        style: str = REGULAR,
        size: float = BODY_SIZE,
        left: float = MARGIN_LEFT,
        width: float = CONTENT_WIDTH,
        space_after: float = PARAGRAPH_GAP,
        tag: str = "P",
        group: int | None = None,
        path: StructPath = (),
    ) -> None:
        height = line_height(size, self.spacing)
        group = group or new_group()
        for number, line in enumerate(wrap(self.fonts, text, style, size, width, self.deadline)):
            if number % DEADLINE_EVERY == 0:
                check_deadline(self.deadline)
            self.ensure(height)
            self.ops.append(
                TextOp(
                    left,
                    self.y + baseline_offset(size, self.spacing),
                    line,
                    style,
                    size,
                    tag=tag,
                    group=group,
                    path=path,
                )
            )
            self.y += height
        self.y += space_after

    def bullet(
        self,
        text: str,
        *,
        list_id: int,
        size: float = BODY_SIZE,
        space_after: float = PARAGRAPH_GAP / 2,
    ) -> None:
        """A list item of the list `list_id` (a new_group() id shared by the bullets of one list): in the
        tagged PDF an LI of that L, the bullet its Lbl and the text its LBody."""
        self.ensure(line_height(size, self.spacing))
        item: StructPath = (("L", list_id), ("LI", new_group()))
        self.ops.append(
            TextOp(
                MARGIN_LEFT + 1.5,
                self.y + baseline_offset(size, self.spacing),
                "\u2022",
                REGULAR,
                size,
                tag="Lbl",
                group=new_group(),
                path=item,
            )
        )
        self.paragraph(
            text,
            size=size,
            left=MARGIN_LEFT + BULLET_INDENT,
            width=CONTENT_WIDTH - BULLET_INDENT,
            space_after=space_after,
            tag="LBody",
            path=item,
        )

    def rows(
        self,
        rows: list[tuple[str, str]],
        *,
        label_width: float,
        size: float = BODY_SIZE,
        left: float = MARGIN_LEFT,
        width: float = CONTENT_WIDTH,
        shrink: tuple[float, ...] = (),
        table: bool = False,
        path: StructPath = (),
    ) -> None:
        """Label/value rows (label in bold); a row splits over two pages only if it is longer than a page.
        A value too wide for its column is set in the first of the `shrink` sizes (pt) at which it fits
        on one line, and wrapped (at the smallest) only if none does.

        In the tagged PDF each row is one P (the label, then the value), or with `table` a Table of
        two columns: per row a TR of the label as its row header (TH) and the value (TD)."""
        height = line_height(size, self.spacing)
        value_width = width - label_width
        table_path = (*path, ("Table", new_group())) if table else path
        for label, value in rows:
            check_deadline(self.deadline)
            labels = wrap(self.fonts, label, BOLD, size, label_width - 3, self.deadline)
            value_size = size
            if shrink and self.fonts.width(value, REGULAR, size) > value_width:
                fitting = [s for s in shrink if self.fonts.width(value, REGULAR, s) <= value_width]
                value_size = fitting[0] if fitting else shrink[-1]
            values = wrap(self.fonts, value, REGULAR, value_size, value_width, self.deadline)
            count = max(len(labels), len(values))
            if count * height <= BODY_BOTTOM - NEXT_PAGE_BODY_TOP:
                self.ensure(count * height)
            lines = []  # (page, baseline) of each line of the row
            for _ in range(count):
                self.ensure(height)
                lines.append((self.ops, self.y + baseline_offset(size, self.spacing)))
                self.y += height
            cells = ((left, labels, BOLD, size), (left + label_width, values, REGULAR, value_size))
            self._place_row(lines, cells, table_path if table else None, path)

    @staticmethod
    def _place_row(
        lines: list[tuple[list[Op], float]],
        cells: tuple[tuple[float, list[str], str, float], ...],
        table_path: StructPath | None,
        path: StructPath,
    ) -> None:
        """A label/value row's text on the (page, baseline) `lines`; `cells` are the label and the value
        as (left, lines, style, size). In a table (`table_path`) a TR of a TH and a TD, else one P."""
        if table_path is not None:
            row_path = (*table_path, ("TR", new_group()))
            tags = (("TH", new_group()), ("TD", new_group()))
        else:  # a row reads as one paragraph: the label, then the value
            row_path = path
            group = new_group()
            tags = (("P", group), ("P", group))
        label_ops, value_ops = (
            [
                (page, TextOp(x, baseline, text, style, size, tag=tag, group=group, path=row_path))
                for (page, baseline), text in zip(lines, texts, strict=False)
            ]
            for (x, texts, style, size), (tag, group) in zip(cells, tags, strict=True)
        )
        # A paragraph reads line by line, label and value; in a table each cell is drawn whole,
        # the label's lines, then the value's, so that each cell is one run of the page.
        ordered = label_ops + value_ops
        if table_path is None:
            ordered = [op for pair in itertools.zip_longest(label_ops, value_ops) for op in pair if op]
        for page, op in ordered:
            page.append(op)

    def keep_together(self, ops: list[Op], height: float, *, off_folds: bool = False) -> bool:
        """Place a block drawn from y=0 as one piece, on a new page if it does not fit here; with
        `off_folds`, lower it past any fold line it would lie across (FOLD_CLEARANCE either side).
        True if the block starts a new page."""
        started = self.ensure(height)
        if off_folds:
            for _attempt in range(2):  # this page, then at most one new page
                for fold in self.folds:
                    if self.y < fold + FOLD_CLEARANCE and self.y + height > fold - FOLD_CLEARANCE:
                        self.y = fold + FOLD_CLEARANCE
                if self.y + height <= BODY_BOTTOM:
                    break
                self.new_page()
                started = True
        self.ops.extend(_shift(op, self.y) for op in ops)
        self.y += height
        return started


def _shift(op: Op, dy: float) -> Op:
    if isinstance(op, TextOp):
        return op._replace(y=op.y + dy)
    if isinstance(op, RuleOp):
        return RuleOp(op.x1, op.y1 + dy, op.x2, op.y2 + dy)
    if isinstance(op, FrameOp):
        return FrameOp(Box(op.box.left, op.box.top + dy, op.box.width, op.box.height))
    return dataclasses.replace(op, box=Box(op.box.left, op.box.top + dy, op.box.width, op.box.height))
