"""The letter font (DejaVu Sans, regular and bold, committed under include/templates/fonts/), prepared
once per process and handed to each PDF without parsing it again.

Measured with fpdf2 2.8.9 on the full 750 kB files: `add_font` costs ~30 ms per face per document and
fpdf2's subsetting at `output()` ~25 ms per face, both growing with the number of glyphs in the font.
So, once per process:

- each face is cut down, without hinting or OpenType layout tables (fpdf2 uses neither without text
  shaping), to two sizes: a *core* font (Western and Central European letters, about 400 glyphs) that
  nearly every letter needs, and a *full* font with every Latin letter (about 1,200 glyphs);
- fpdf2's parsed font object is built once per size;
- the reduced font files are kept in a cache directory (`font_cache_dir()`, keyed by font, coverage,
  options and fontTools version), so that the next process, e.g. the next render task of a wave,
  reads them instead of reducing the faces again (about a second of CPU per process).

Each document then gets a copy of the smallest font that covers its text, through
`TTFFont.__deepcopy__` (fpdf2's own copy for its recorder) with the read-only metric tables shared.
A plain FPDF also gets its own freshly opened font tables, because fpdf2 subsets those in place while
writing the PDF; a `LetterPDF` (what the renderer uses) never subsets them, see below. Both sizes come
from the same face, so widths (and therefore the layout) do not depend on the choice.

Embedding the font into each PDF (fontTools subsetting the glyphs used, then the PDF font objects)
was, even so, half the render time. So the glyphs a document may use are picked *before* drawing, in
code point order, from a fixed base set (printable ASCII, the letters of Latin-1 and the usual
punctuation: most letters need nothing else) widened by the block of any other character the letter
shows (32 code points; Latin Extended-A as one block of 128). Letters with the same glyph key then have the same subset with the
same character codes, and `LetterPDF`'s output producer embeds it from a per-process cache (bounded,
least recently used) of the finished bytes: font program, widths, ToUnicode and CIDToGIDMap.

This relies on fpdf2's `TTFFont`, `SubsetMap`, `FPDF.fonts` and `OutputProducer._add_fonts`;
test_fonts.py checks that a letter drawn this way matches one drawn through `add_font`, and that the
cached embedding writes byte for byte what fpdf2's own `_add_fonts` writes, so an fpdf2 upgrade that
changes them fails loudly.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import re
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import fontTools
from fontTools import subset
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import TextMode
from fpdf.errors import FPDFException
from fpdf.fonts import SubsetMap, TTFFont
from fpdf.output import CIDSystemInfo, OutputProducer, PDFFont, PDFPage, _build_cmap_blocks, _tt_font_widths
from fpdf.syntax import (
    Name,
    PDFArray,
    PDFContentStream,
    PDFObject,
    camel_case,
    create_dictionary_string,
    create_stream,
)
from fpdf.util import FloatTolerance, escape_parens

FAMILY = "dejavu"
REGULAR = ""
BOLD = "B"
FONT_FILES = {REGULAR: "DejaVuSans.ttf", BOLD: "DejaVuSans-Bold.ttf"}

# What a letter may contain: every Latin letter with its diacritics (Basic Latin, Latin-1, Extended A
# and B, Latin Extended Additional), combining accents, spacing modifiers, general punctuation,
# currency signs, letterlike symbols (No, TM), arrows and a few maths signs; and the other scripts
# written left to right without shaping that DejaVu Sans has and Mechelen's residents write their
# names in: Greek, Cyrillic (Ukrainian, Russian, Bulgarian...), Armenian and Georgian. Arabic is not
# here: it needs contextual shaping and right-to-left layout, which this renderer does not do.
COVERAGE = (
    (0x0020, 0x007E),
    (0x00A0, 0x024F),
    (0x02B0, 0x036F),
    (0x0370, 0x03FF),
    (0x0400, 0x052F),
    (0x0530, 0x058F),
    (0x10A0, 0x10FF),
    (0x1E00, 0x1EFF),
    (0x2000, 0x206F),
    (0x20A0, 0x20BF),
    (0x2100, 0x214F),
    (0x2190, 0x2199),
    (0x2212, 0x2212),
    (0x2260, 0x2265),
)
# What nearly every letter needs: Dutch, French, German, Polish, Turkish, Czech, Hungarian, Nordic...
CORE_COVERAGE = ((0x0020, 0x007E), (0x00A0, 0x017F), (0x2000, 0x206F), (0x20AC, 0x20AC))

PT_TO_MM = 25.4 / 72
# zlib's level for a page's content stream (fpdf2 uses the default, 6): level 3 compresses a letter's
# page in 0.16 ms instead of 0.28 ms, and the PDF is some 350 bytes (under 1%) larger.
PAGE_COMPRESSION_LEVEL = 3

# Glyphs every document embeds whether it shows them or not (a superset keeps the cache hit rate high
# at the price of a few kilobytes per PDF): printable ASCII, every letter of Latin-1 (Dutch, French,
# German, Spanish, Portuguese, the Nordic languages; most are composite glyphs of a few bytes), and the
# punctuation and signs the templates use, the French narrow no-break space among them.
BASE_CODEPOINTS = frozenset(
    [
        *range(0x20, 0x7F),
        *range(0xC0, 0x100),
        *map(ord, "\u00a0«»°§·œŒŸ‘’‚“”„–—•…€\u202f"),
    ]
)
BLOCK = 32  # other characters bring their whole block of 32 code points...
# ...except Latin Extended-A (Polish, Czech, Turkish, Hungarian, Romanian letters), one block of 128:
# names mix its letters freely, and one key instead of up to sixteen keeps the subsets made per process
# few (each costs fontTools ~15 ms).
WIDE_BLOCKS = ((0x0100, 0x0180),)
WIDTH_CACHE_SIZE = 20_000  # measured texts kept per face
WRAPPED_CACHE_SIZE = 2_000  # wrapped texts kept (paragraphs, table cells)
EMBED_CACHE_SIZE = 64  # glyph keys per face kept; a miss costs one fontTools subsetting (~15 ms)
# Mapped texts kept per glyph key: a letter draws some 60 lines, most of them the same in every letter.
MAPPED_CACHE_SIZE = 512


@dataclass(frozen=True)
class _PreparedFont:
    data: bytes  # the reduced TrueType file
    prototype: TTFFont  # fpdf2's parsed font, never written to a PDF itself
    widths: dict[int, float]  # code point -> advance width in 1/1000 em, as fpdf2 keeps it


class LetterFonts:
    """The prepared regular and bold faces: text measuring for the layout, registration into a PDF."""

    def __init__(self, fonts_dir: Path):
        # Keyed by the resolved path, so every renderer in the process shares one preparation.
        paths = {style: str((fonts_dir / name).resolve()) for style, name in FONT_FILES.items()}
        self._full = {style: _prepare(path, style, COVERAGE) for style, path in paths.items()}
        self._core = {style: _prepare(path, style, CORE_COVERAGE) for style, path in paths.items()}
        self.codepoints = frozenset.intersection(*(frozenset(f.widths) for f in self._full.values()))
        self._core_codepoints = frozenset.intersection(*(frozenset(f.widths) for f in self._core.values()))
        self._core_chars = frozenset(chr(cp) for cp in self._core_codepoints)
        # A letter measures the same words and lines many times while it flows its text, and every letter
        # of a template the same fixed texts: their widths in font units, per face.
        self._units: dict[str, dict[str, float]] = {style: {} for style in FONT_FILES}
        # Texts wrapped into lines (see layout.wrap): (text, style, size, width, cut) -> lines.
        self.wrapped: dict[tuple, tuple[str, ...]] = {}

    def keep_wrapped(self, key: tuple, lines: tuple[str, ...]) -> None:
        """Keep a wrapped text's lines, at most WRAPPED_CACHE_SIZE texts (then a fresh start)."""
        if len(self.wrapped) >= WRAPPED_CACHE_SIZE:
            self.wrapped.clear()
        self.wrapped[key] = lines

    def width(self, text: str, style: str, size_pt: float) -> float:
        """Width of `text` in mm, exactly as fpdf2 will set it (no kerning without text shaping)."""
        units = self._units[style].get(text)
        if units is None:
            widths = self._full[style].widths
            units = sum(widths[ord(c)] for c in text)
            cache = self._units[style]
            if len(cache) >= WIDTH_CACHE_SIZE:
                cache.clear()  # a fresh start now and then keeps memory flat and the common words come back
            cache[text] = units
        return units * size_pt * PT_TO_MM / 1000

    def unprintable(self, text: str) -> str | None:
        """The first character of `text` the font cannot print, if any."""
        for char in text:
            if ord(char) not in self.codepoints:
                return char
        return None

    def install(self, pdf: FPDF, texts: Iterable[str]) -> None:
        """Make both faces available to `pdf.set_font(FAMILY, style)`, in the smallest font that has
        every character of `texts` (all the text the document will show), with the document's glyph
        key picked in code point order (see the module docstring)."""
        chars = set().union(*texts)
        fonts = self._core if chars <= self._core_chars else self._full
        available = self._core_codepoints if fonts is self._core else self.codepoints
        key = _glyph_key(frozenset(ord(char) for char in chars) - BASE_CODEPOINTS, available)
        for prepared in fonts.values():
            proto = prepared.prototype
            # The width and glyph-id tables are only read, so they are shared rather than copied; the
            # subset map gets a fresh one below (copying it would copy the prototype a second time).
            shared = {id(proto.cw): proto.cw, id(proto.glyph_ids): proto.glyph_ids, id(proto.subset): None}
            font = copy.deepcopy(proto, shared)
            font.i = len(pdf.fonts) + 1
            picked = _picked(prepared, key, font)
            font.subset = picked.subset_map(font)
            pdf.fonts[font.fontkey] = font
            if isinstance(pdf, LetterPDF):
                # Embedded from the cache: the font tables are never touched, so they stay shared.
                pdf.letter_fonts[font.fontkey] = _Installed(
                    prepared, key, len(font.subset), picked.codes, picked.mapped
                )
            else:
                # fpdf2 subsets the font tables in place while writing the PDF, so it gets its own. The
                # reduced font's glyph boxes are already exact: fontTools need not decode every kept
                # glyph again to recompute them.
                font.ttfont = TTFont(
                    io.BytesIO(prepared.data), recalcTimestamp=False, recalcBBoxes=False, lazy=True
                )


SUBSET_MAP_ATTRIBUTES = frozenset({"font", "_next", "_reserved", "_char_id_per_glyph"})


@dataclass(frozen=True)
class _PickedKey:
    """The state picking every code point of a glyph key in order leaves fpdf2's SubsetMap in, and the
    character code of each of those code points as `text.translate` needs it."""

    char_ids: dict
    next_code: int
    reserved: tuple[int, ...]
    codes: dict[int, str]  # code point -> its character code as two UTF-16BE bytes, as fpdf2 writes it
    # text -> its character codes, escaped for a PDF string: filled as the documents of this key draw
    # (at most MAPPED_CACHE_SIZE texts, then emptied)
    mapped: dict[str, str] = field(default_factory=dict, compare=False)

    def subset_map(self, font: TTFFont) -> SubsetMap:
        subset_map = SubsetMap.__new__(SubsetMap)
        subset_map.font = font
        subset_map._char_id_per_glyph = dict(self.char_ids)
        subset_map._next = self.next_code
        subset_map._reserved = list(self.reserved)
        return subset_map


def _picked(prepared: _PreparedFont, key: tuple[int, ...], font: TTFFont) -> _PickedKey:
    """The picked state of (font, key): picked once and copied into each document, since picking 200
    glyphs per face per letter was a fifth of the render time."""
    _trim(_subset_states)
    picked = _subset_states.get((id(prepared), key))
    if picked is None:
        subset_map = SubsetMap(font)
        codes = {codepoint: subset_map.pick(codepoint) for codepoint in key}
        SubsetMap.pick.cache_clear()  # the map is kept; its memoised lookups, bound to it, are not
        picked = _subset_states[(id(prepared), key)] = _PickedKey(
            char_ids=dict(subset_map._char_id_per_glyph),
            next_code=subset_map._next,
            reserved=tuple(subset_map._reserved),
            codes={
                codepoint: chr(code).encode("utf-16-be").decode("latin-1")
                for codepoint, code in codes.items()
                if code is not None and code <= 0xFFFF
            },
        )
        _trim(_subset_states)
    return picked


_subset_states: dict[tuple[int, tuple[int, ...]], _PickedKey] = {}


@dataclass(frozen=True)
class _Installed:
    """A letter font as `LetterFonts.install` put it into a LetterPDF."""

    prepared: _PreparedFont
    key: tuple[int, ...]  # the glyph key picked
    picked: int  # the subset map's size right after picking: larger means drawing picked more
    codes: dict[int, str]  # see _PickedKey
    mapped: dict[str, str]  # see _PickedKey


@lru_cache(maxsize=64)
def _fill_operator(color: Any) -> str:
    """The fill colour operator fpdf2's `text` writes for a text colour (`0.353 g`)."""
    return color.serialize().lower()


def _trim(cache: dict) -> None:
    """Drop the oldest entries beyond EMBED_CACHE_SIZE per face: memory stays flat however many
    different names a batch holds."""
    while len(cache) > EMBED_CACHE_SIZE * len(FONT_FILES):
        cache.pop(next(iter(cache)))


@cache
def _prepare(path: str, style: str, coverage: tuple[tuple[int, int], ...]) -> _PreparedFont:
    data = _reduced_font(path, coverage)
    # fpdf2 reads a font from a path or, as here, a file object; its annotation names only the path
    prototype = TTFFont(FPDF(), io.BytesIO(data), f"{FAMILY}{style}", style)  # type: ignore[arg-type]
    # fpdf2 keeps widths in a defaultdict; a plain copy keeps measuring from growing it.
    widths = {cp: prototype.cw[cp] for cp in prototype.cmap}
    return _PreparedFont(data, prototype, widths)


def font_cache_dir() -> Path:
    """Where reduced fonts are kept between processes: DIJLEPOST_CACHE_DIR, else the user's cache."""
    root = os.environ.get("DIJLEPOST_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "dijlepost"
    )
    return Path(root) / "fonts"


def _reduced_font(path: str, coverage: tuple[tuple[int, int], ...]) -> bytes:
    """The reduced font file, from the cache when an earlier process made it.

    Cutting a face down takes fontTools about a quarter of a second, four times per process: every
    render task of a wave would pay it again. The cache key covers everything the result depends on
    (the font file's bytes, the coverage, the subsetting options, fontTools' version), so a changed
    font or library makes a new entry; entries are written whole (temporary file, then rename).
    Without a writable cache the font is simply reduced in memory."""
    source = Path(path).read_bytes()
    key = hashlib.sha256(
        b"\0".join([source, repr(coverage).encode(), _SUBSET_RECIPE.encode(), fontTools.version.encode()])
    ).hexdigest()[:32]
    cached = font_cache_dir() / f"{Path(path).stem}-{key}.ttf"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    data = _subset(source, coverage)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=f".{cached.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, cached)
    except OSError:
        pass  # read-only or full disk: next process reduces the font again
    return data


_SUBSET_RECIPE = "v1: no layout features, no hinting, glyph names, name ids 1,2,3,4,6"


def _subset(source: bytes, coverage: tuple[tuple[int, int], ...]) -> bytes:
    font = TTFont(io.BytesIO(source), recalcTimestamp=False)
    options = subset.Options()
    options.layout_features = []
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "kern", "FFTM", "hdmx", "MATH"]
    options.hinting = False
    options.notdef_outline = True
    options.recommended_glyphs = True
    options.glyph_names = True  # cheaper for fpdf2 to read back than names rebuilt from cmap
    options.name_IDs = [1, 2, 3, 4, 6]  # family, style, unique id, full name, PostScript name
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[cp for first, last in coverage for cp in range(first, last + 1)])
    subsetter.subset(font)
    buffer = io.BytesIO()
    font.save(buffer)
    return buffer.getvalue()


@lru_cache(maxsize=1024)
def _glyph_key(extra: frozenset[int], available: frozenset[int]) -> tuple[int, ...]:
    """The code points a document picks: the base set plus the blocks of its other characters."""
    return tuple(sorted(BASE_CODEPOINTS.union(*map(_block, extra)) & available))


def _block(codepoint: int) -> range:
    for first, end in WIDE_BLOCKS:
        if first <= codepoint < end:
            return range(first, end)
    first = codepoint // BLOCK * BLOCK
    return range(first, first + BLOCK)


# -- embedding -------------------------------------------------------------------------------------


class LetterPDF(FPDF):
    """An FPDF whose `output()` embeds the letter fonts from the per-process cache, and whose
    `letter_text` writes text with the glyph key's character codes picked beforehand."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.letter_fonts: dict[str, _Installed] = {}

    def set_letter_font(self, family: str, style: str, size: float) -> None:
        """What `set_font(family, style, size)` does for a font `LetterFonts.install` added, plain or
        bold, without fpdf2's style parsing and its checks for the other fonts (a letter changes font
        some 30 times); anything else goes to `set_font`."""
        family = family.lower()
        fontkey = family + style
        font = self.fonts.get(fontkey) if style in ("", "B") and size else None
        if font is None:
            self.set_font(family, style, size)
            return
        self.underline = self.strikethrough = False
        if (
            self.font_family == family
            and self.font_style == style
            and FloatTolerance.equal(self.font_size_pt, size)
            and (self.current_font is None or self.current_font.fontkey == fontkey)
        ):
            return
        self.font_family = family
        self.font_style = style
        self.font_size_pt = size
        self.current_font = font
        self.current_font_is_set_on_page = False

    def letter_text(self, x: float, y: float, text: str) -> None:
        """What `FPDF.text(x, y, text)` writes, byte for byte (see `text_lines`)."""
        lines = self.text_lines(x, y, text)
        if lines is None:
            self.text(x, y, text)
        else:
            self._out(lines)

    def text_lines(self, x: float, y: float, text: str) -> str | None:
        """The content-stream lines `FPDF.text(x, y, text)` would write, for a letter font in the plain
        fill mode, for the caller to write (a page's lines are written at once); None where `text` must
        be called instead: a character outside the glyph key, another text mode, underlining. The
        characters are mapped with one `str.translate` over the glyph key's codes instead of fpdf2's
        pick per character (a sixth of the render time), and the mapped text is kept per glyph key:
        most of a letter's lines are its template's, the same in every letter."""
        font = self.current_font
        installed = self.letter_fonts.get(font.fontkey) if font is not None else None
        if (
            installed is None
            or self.text_mode != TextMode.FILL
            or self.underline
            or self.strikethrough
            or self._record_text_quad_points
        ):
            return None
        mapped = installed.mapped.get(text)
        if mapped is None:
            codes = text.translate(installed.codes)
            # Every mapped character becomes two bytes; one left as it was makes the length odd or short.
            if len(codes) != 2 * len(text):
                return None
            if len(installed.mapped) >= MAPPED_CACHE_SIZE:
                installed.mapped.clear()
            mapped = installed.mapped[text] = escape_parens(codes)
        if not self.page:
            raise FPDFException("No page open, you need to call add_page() first")
        k = self.k
        line = f"BT {x * k:.2f} {(self.h - y) * k:.2f} Td ({mapped}) Tj ET"
        if self.fill_color != self.text_color:
            line = f"q {_fill_operator(self.text_color)} {line} Q"
        if not self.current_font_is_set_on_page:
            line = f"{self._set_font_for_page(font, self.font_size_pt)}\n{line}"  # type: ignore[arg-type]  # checked above
        return line

    def output(self, *args, **kwargs):
        # fpdf2's own producer would subset the shared font tables in place.
        if kwargs.setdefault("output_producer_class", _LetterOutputProducer) is not _LetterOutputProducer:
            raise FPDFException("a LetterPDF is written by its own output producer")
        return super().output(*args, **kwargs)


@dataclass(frozen=True)
class _Embedding:
    """Everything of one subset that does not depend on the document: finished, compressed bytes."""

    font_file: bytes  # FlateDecode TrueType subset
    font_file_length: int  # its uncompressed length (/Length1)
    widths: str  # the /W array
    to_unicode: bytes  # the ToUnicode CMap (fpdf2 leaves it uncompressed)
    cid_to_gid: bytes  # FlateDecode CIDToGIDMap


@dataclass(frozen=True)
class _ObjectText:
    """One PDF object as fpdf2 serialises it, but for the object numbers: `parts` alternates text and
    the index (0-6) of a font object it refers to, so that it can be written at any position."""

    parts: tuple[str | int, ...]

    def serialize(self, first_id: int) -> str:
        return "".join(part if isinstance(part, str) else f"{first_id + part} 0 R" for part in self.parts)


class _WrittenObject(PDFObject):
    """A font object of a letter, written from its `_ObjectText` (fpdf2 rebuilds an object's dictionary
    from its attributes through `dir()` every time: a sixth of `output()`)."""

    def __init__(self, text: _ObjectText, first_id: int):
        super().__init__()
        self._text = text
        self._first_id = first_id

    def serialize(self, obj_dict=None, _security_handler=None) -> str:
        if obj_dict is not None or _security_handler is not None:
            raise FPDFException("a letter's font objects are written unencrypted, as they were built")
        return f"{self.id} 0 obj\n{self._text.serialize(self._first_id)}"


class _CompressedStream(PDFContentStream):
    """A stream whose FlateDecode bytes are already known (PDFContentStream would compress again)."""

    def __init__(self, compressed: bytes, length1: int | None = None):
        PDFObject.__init__(self)
        self._contents = compressed
        self.filter = Name("FlateDecode")
        self.length = len(compressed)
        if length1 is not None:
            self.length1 = length1


_embeddings: OrderedDict[tuple, tuple[_ObjectText, ...]] = OrderedDict()  # a subset's font objects


def _glyphs(font: TTFFont) -> tuple[tuple, ...]:
    """The subset's glyphs in character code order: (code, name, unicode, width)."""
    return tuple(
        sorted(
            (code, glyph.glyph_name, glyph.unicode, glyph.glyph_width)
            for glyph, code in font.subset.items()
            if glyph is not None
        )
    )


def _embedding(installed: _Installed, font: TTFFont) -> tuple[_ObjectText, ...]:
    prepared = installed.prepared
    glyphs = None
    if len(font.subset) == installed.picked:
        # Nothing was picked after the glyph key (picking only adds), so the key names the subset.
        key: tuple = (id(prepared), installed.key)
    else:
        glyphs = _glyphs(font)
        key = (id(prepared), glyphs)
    _trim(_embeddings)
    cached = _embeddings.get(key)
    if cached is not None:
        _embeddings.move_to_end(key)
        return cached
    if glyphs is None:
        glyphs = _glyphs(font)

    # What fpdf2's OutputProducer._add_fonts does for a TrueType font, on a fresh copy of the font.
    ttfont = TTFont(io.BytesIO(prepared.data), recalcTimestamp=False, recalcBBoxes=False, lazy=True)
    options = subset.Options(notdef_outline=True, recommended_glyphs=True)
    options.drop_tables += [
        "FFTM",
        "GDEF",
        "GPOS",
        "GSUB",
        "MATH",
        "hdmx",
        "meta",
        "sbix",
        "CBDT",
        "CBLC",
        "EBDT",
        "EBLC",
        "EBSC",
        "SVG ",
        "CPAL",
        "COLR",
    ]
    subsetter = subset.Subsetter(options)
    subsetter.populate(glyphs=font.subset.get_all_glyph_names())
    subsetter.subset(ttfont)
    code_to_glyph = {code: ttfont.getGlyphID(name) for code, name, _, _ in glyphs}
    buffer = io.BytesIO()
    ttfont.save(buffer)
    program = buffer.getvalue()

    def hex_code(codepoint: int) -> str:
        if codepoint > 0xFFFF:
            return f"{0xD800 | (codepoint - 0x10000) >> 10:04X}{0xDC00 | (codepoint & 0x3FF):04X}"
        return f"{codepoint:04X}"

    bf_chars = [
        f"<{code:04X}> <{''.join(hex_code(cp) for cp in glyph.unicode)}>\n"
        for glyph, code in font.subset.items()
        if glyph is not None and isinstance(glyph.unicode, tuple) and glyph.unicode
    ]
    to_unicode = (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CIDSystemInfo\n"
        "<</Registry (Adobe)\n/Ordering (UCS)\n/Supplement 0\n>> def\n/CMapName /Adobe-Identity-UCS def\n"
        "/CMapType 2 def\n1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        f"{_build_cmap_blocks(bf_chars, 'bfchar')}"
        "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend"
    ).encode("latin-1")
    cid_to_gid = bytearray(256 * 256 * 2)
    for code, glyph_id in code_to_glyph.items():
        cid_to_gid[code * 2] = glyph_id >> 8
        cid_to_gid[code * 2 + 1] = glyph_id & 0xFF
    level = PDFContentStream._COMPRESSION_LEVEL
    embedded = _Embedding(
        font_file=zlib.compress(program, level=level),
        font_file_length=len(program),
        widths=_tt_font_widths(font),
        to_unicode=to_unicode,
        cid_to_gid=zlib.compress(bytes(cid_to_gid), level=level),
    )
    texts = _object_texts(_font_objects(font, embedded))
    _embeddings[key] = texts
    _trim(_embeddings)
    return texts


def _font_objects(font: TTFFont, embedded: _Embedding) -> list[PDFObject]:
    """The seven objects of one embedded face, built as fpdf2's `OutputProducer._add_fonts` builds them
    for a TrueType font, in the order it adds them (the references between them are set)."""
    fontname = f"MPDFAA+{font.name}"
    composite = PDFFont(subtype="Type0", base_font=fontname, encoding="Identity-H")
    cid_font = PDFFont(
        subtype="CIDFontType2", base_font=fontname, d_w=font.desc.missing_width, w=embedded.widths
    )
    composite.descendant_fonts = PDFArray([cid_font])
    to_unicode = PDFContentStream(embedded.to_unicode)
    composite.to_unicode = to_unicode
    system_info = CIDSystemInfo()
    cid_font.c_i_d_system_info = system_info
    descriptor = copy.copy(font.desc)  # the prototype's descriptor is shared; never mutate it
    descriptor.font_name = Name(fontname)
    cid_font.font_descriptor = descriptor
    cid_to_gid = _CompressedStream(embedded.cid_to_gid)
    cid_font.c_i_d_to_g_i_d_map = cid_to_gid
    font_file = _CompressedStream(embedded.font_file, embedded.font_file_length)
    descriptor.font_file2 = font_file  # type: ignore[attr-defined]  # fpdf2 sets it the same way
    return [composite, cid_font, to_unicode, system_info, descriptor, cid_to_gid, font_file]


def _alternate(pieces: list[str]):
    """(False, text), (True, number), (False, text)... of a `re.split` with one group."""
    return ((index % 2 == 1, piece) for index, piece in enumerate(pieces))


_PLACEHOLDER_ID = 1_000_000_000  # object numbers no letter reaches: the objects are serialised with these


def _object_texts(objects: list[PDFObject]) -> tuple[_ObjectText, ...]:
    """What fpdf2's `PDFObject.serialize` writes for each object after its `N 0 obj` line, with the
    references between the objects left open."""
    for index, obj in enumerate(objects):
        obj.id = _PLACEHOLDER_ID + index
    reference = re.compile(rf"\b{_PLACEHOLDER_ID // 10}(\d) 0 R\b")
    texts = []
    for obj in objects:
        dictionary = create_dictionary_string(obj._build_obj_dict(), open_dict="", close_dict="")
        pieces = reference.split(dictionary)  # text, index, text, index, ..., text
        stream = obj.content_stream()
        tail = [">>", *([] if stream is None else [create_stream(stream)]), "endobj"]
        pieces[0] = "<<\n" + pieces[0]
        pieces[-1] = "\n".join([pieces[-1], *tail])
        texts.append(_ObjectText(tuple(int(piece) if odd else piece for odd, piece in _alternate(pieces))))
    return tuple(texts)


class _LetterOutputProducer(OutputProducer):
    """fpdf2's producer with the letter fonts written from the cache: the same objects, in the same
    order and with the same bytes as `OutputProducer._add_fonts` writes them; and every other object's
    dictionary built in one loop over its class's attribute names found once (see `_quick_class`).
    A page's content stream is compressed at `PAGE_COMPRESSION_LEVEL`."""

    def _add_pages(self, _slice: slice = slice(0, None)) -> list[PDFPage]:
        fpdf = self.fpdf
        compress, fpdf.compress = fpdf.compress, False
        try:
            pages = super()._add_pages(_slice)
        finally:
            fpdf.compress = compress
        if compress:
            for page in pages:
                stream: Any = page.contents  # fpdf2 has put the page's PDFContentStream there
                stream._contents = zlib.compress(stream._contents, level=PAGE_COMPRESSION_LEVEL)
                stream.filter = Name("FlateDecode")
                stream.length = len(stream._contents)
        return pages

    def _add_pdf_obj(self, pdf_obj: PDFObject, trace_label: str | None = None) -> int:
        cls = type(pdf_obj)
        if cls._build_obj_dict is PDFObject._build_obj_dict:
            quick = _quick_classes.get(cls)
            if quick is None:
                quick = _quick_classes[cls] = _quick_class(cls)
            pdf_obj.__class__ = quick
        # No trace label: fpdf2 measures each labelled object's size for a DEBUG summary of the
        # document's sections, through a context manager per object.
        return super()._add_pdf_obj(pdf_obj, None)

    def _add_fonts(self, image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name):
        fpdf: LetterPDF = self.fpdf  # type: ignore[assignment]  # this producer is only built by LetterPDF
        if fpdf._compliance or set(fpdf.fonts) != set(fpdf.letter_fonts):
            raise FPDFException("LetterPDF embeds only the letter fonts, without a PDF/A profile")
        objects = {}
        try:
            for font in sorted(fpdf.fonts.values(), key=lambda font: font.i):
                objects[font.i] = self._add_letter_font(font, fpdf.letter_fonts[font.fontkey])  # type: ignore[arg-type]  # checked above: only letter fonts
        finally:
            # fpdf2 caches SubsetMap lookups process-wide; it clears them after each document too.
            SubsetMap.pick.cache_clear()
            SubsetMap.get_glyph.cache_clear()
        return objects

    def _add_letter_font(self, font: TTFFont, installed: _Installed) -> PDFObject:
        if font.missing_glyphs:
            raise FPDFException(f"font {font.fontkey} lacks glyphs {font.missing_glyphs[:10]}")
        texts = _embedding(installed, font)
        first_id = self.obj_id + 1  # the objects are numbered in the order they are added
        objects = [_WrittenObject(text, first_id) for text in texts]
        for obj in objects:
            self._add_pdf_obj(obj, "fonts")
        return objects[0]  # the Type0 font the page resources name


_quick_classes: dict[type[PDFObject], type[PDFObject]] = {}


def _quick_class(cls: type[PDFObject]) -> type[PDFObject]:
    """A subclass of one of fpdf2's object classes, with no new state, whose `_build_obj_dict` returns
    what fpdf2's `build_obj_dict` returns for what `PDFObject._build_obj_dict` passes it (every
    attribute, in the sorted order of `dir()`), in one loop: the class's attribute names are found
    once (private names and methods left out, as fpdf2 skips them anyway) and each name's PDF key
    (`/CamelCase`) is spelled once per process. fpdf2 runs `dir()`, a `getattr` of every method and a
    `str.title()` per key for each of a letter's objects; a test compares the bytes with fpdf2's own
    output."""
    class_names = frozenset(
        name
        for name in dir(cls)
        if not name.startswith("_") and name not in ("id", "ref") and not callable(getattr(cls, name, None))
    )
    sorted_class_names = tuple(sorted(class_names))

    def _build_obj_dict(self, security_handler=None):
        instance_names = [
            key for key in getattr(self, "__dict__", ()) if key not in class_names and not key.startswith("_")
        ]
        names = sorted(class_names.union(instance_names)) if instance_names else sorted_class_names
        obj_dict: dict[str, object] = {}
        for name in names:
            value = getattr(self, name)
            if value is None or callable(value):
                continue
            if hasattr(value, "value"):  # e.g. an Enum
                value = value.value
            if isinstance(value, PDFObject):  # an indirect object reference
                value = value.ref
            elif hasattr(value, "serialize"):  # PDFArray, PDFString, Name...
                value = value.serialize(_security_handler=security_handler, _obj_id=self.id)
            elif isinstance(value, bool):
                value = str(value).lower()
            key = _pdf_keys.get(name)
            if key is None:
                key = _pdf_keys[name] = f"/{camel_case(name)}"
            obj_dict[key] = value
        return obj_dict

    namespace = {"_build_obj_dict": _build_obj_dict, "__module__": __name__, "__qualname__": cls.__qualname__}
    if "__slots__" in vars(cls):
        namespace["__slots__"] = ()
    return type(cls.__name__, (cls,), namespace)


_pdf_keys: dict[str, str] = {}  # attribute name -> the PDF key fpdf2's `camel_case` makes of it
