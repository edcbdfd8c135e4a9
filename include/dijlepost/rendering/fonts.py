"""The letter font (DejaVu Sans, regular and bold, committed under include/templates/fonts/), prepared
once per process and handed to each PDF without parsing it again.

Measured with fpdf2 2.8.9 on the full 750 kB files: `add_font` costs ~30 ms per face per document and
fpdf2's subsetting at `output()` ~25 ms per face, both growing with the number of glyphs in the font.
So, once per process:

- each face is cut down, without hinting or OpenType layout tables (fpdf2 uses neither without text
  shaping), to two sizes: a *core* font (Western and Central European letters, about 400 glyphs) that
  nearly every letter needs, and a *full* font with every Latin letter (about 1,200 glyphs);
- fpdf2's parsed font object is built once per size.

Each document then gets a copy of the smallest font that covers its text, through
`TTFFont.__deepcopy__` (fpdf2's own copy for its recorder) with the read-only metric tables shared
and its own freshly opened font tables, because fpdf2 subsets those in place while writing the PDF.
Both sizes come from the same face, so widths (and therefore the layout) do not depend on the choice.

This relies on fpdf2's `TTFFont`, `SubsetMap` and `FPDF.fonts`; test_fonts.py checks that a letter
drawn this way matches one drawn through `add_font`, so an fpdf2 upgrade that changes them fails loudly.
"""
from __future__ import annotations

import copy
import io
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.fonts import SubsetMap, TTFFont

FAMILY = "dejavu"
REGULAR = ""
BOLD = "B"
FONT_FILES = {REGULAR: "DejaVuSans.ttf", BOLD: "DejaVuSans-Bold.ttf"}

# What a letter may contain: every Latin letter with its diacritics (Basic Latin, Latin-1, Extended A
# and B, Latin Extended Additional), combining accents, spacing modifiers, general punctuation,
# currency signs, letterlike symbols (No, TM), arrows and a few maths signs.
COVERAGE = (
    (0x0020, 0x007E), (0x00A0, 0x024F), (0x02B0, 0x036F), (0x1E00, 0x1EFF), (0x2000, 0x206F),
    (0x20A0, 0x20BF), (0x2100, 0x214F), (0x2190, 0x2199), (0x2212, 0x2212), (0x2260, 0x2265),
)
# What nearly every letter needs: Dutch, French, German, Polish, Turkish, Czech, Hungarian, Nordic...
CORE_COVERAGE = ((0x0020, 0x007E), (0x00A0, 0x017F), (0x2000, 0x206F), (0x20AC, 0x20AC))

PT_TO_MM = 25.4 / 72


@dataclass(frozen=True)
class _PreparedFont:
    data: bytes                  # the reduced TrueType file
    prototype: TTFFont           # fpdf2's parsed font, never written to a PDF itself
    widths: dict[int, int]       # code point -> advance width in 1/1000 em, rounded as fpdf2 does


class LetterFonts:
    """The prepared regular and bold faces: text measuring for the layout, registration into a PDF."""

    def __init__(self, fonts_dir: Path):
        # Keyed by the resolved path, so every renderer in the process shares one preparation.
        paths = {style: str((fonts_dir / name).resolve()) for style, name in FONT_FILES.items()}
        self._full = {style: _prepare(path, style, COVERAGE) for style, path in paths.items()}
        self._core = {style: _prepare(path, style, CORE_COVERAGE) for style, path in paths.items()}
        self.codepoints = frozenset.intersection(*(frozenset(f.widths) for f in self._full.values()))
        self._core_chars = frozenset(chr(cp) for cp in frozenset.intersection(
            *(frozenset(f.widths) for f in self._core.values())))

    def width(self, text: str, style: str, size_pt: float) -> float:
        """Width of `text` in mm, exactly as fpdf2 will set it (no kerning without text shaping)."""
        widths = self._full[style].widths
        return sum(widths[ord(c)] for c in text) * size_pt * PT_TO_MM / 1000

    def unprintable(self, text: str) -> str | None:
        """The first character of `text` the font cannot print, if any."""
        for char in text:
            if ord(char) not in self.codepoints:
                return char
        return None

    def install(self, pdf: FPDF, texts: Iterable[str]) -> None:
        """Make both faces available to `pdf.set_font(FAMILY, style)`, in the smallest font that has
        every character of `texts` (all the text the document will show)."""
        chars = set().union(*texts)
        fonts = self._core if chars <= self._core_chars else self._full
        for prepared in fonts.values():
            proto = prepared.prototype
            # The width and glyph-id tables are only read, so they are shared rather than copied; the
            # subset map gets a fresh one below (copying it would copy the prototype a second time).
            shared = {id(proto.cw): proto.cw, id(proto.glyph_ids): proto.glyph_ids, id(proto.subset): None}
            font = copy.deepcopy(proto, shared)
            font.subset = SubsetMap(font)
            font.i = len(pdf.fonts) + 1
            # The reduced font's glyph boxes are already exact, so fontTools need not decode every kept
            # glyph again to recompute them when fpdf2 writes the subset.
            font.ttfont = TTFont(io.BytesIO(prepared.data), recalcTimestamp=False, recalcBBoxes=False,
                                 lazy=True)
            pdf.fonts[font.fontkey] = font


@lru_cache(maxsize=None)
def _prepare(path: str, style: str, coverage: tuple[tuple[int, int], ...]) -> _PreparedFont:
    font = TTFont(path, recalcTimestamp=False)
    options = subset.Options()
    options.layout_features = []
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "kern", "FFTM", "hdmx", "MATH"]
    options.hinting = False
    options.notdef_outline = True
    options.recommended_glyphs = True
    options.glyph_names = True           # cheaper for fpdf2 to read back than names rebuilt from cmap
    options.name_IDs = [1, 2, 3, 4, 6]     # family, style, unique id, full name, PostScript name
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[cp for first, last in coverage for cp in range(first, last + 1)])
    subsetter.subset(font)
    buffer = io.BytesIO()
    font.save(buffer)
    data = buffer.getvalue()

    prototype = TTFFont(FPDF(), io.BytesIO(data), f"{FAMILY}{style}", style)
    # fpdf2 keeps widths in a defaultdict; a plain copy keeps measuring from growing it.
    widths = {cp: prototype.cw[cp] for cp in prototype.cmap}
    return _PreparedFont(data, prototype, widths)
