"""The prepared fonts against fpdf2's own `add_font`: same widths, same text, same glyph outlines.

fonts.py reuses fpdf2 internals to avoid parsing the font for every letter and to embed each subset from
a cache; if an fpdf2 upgrade changes them, these tests say so before a letter comes out wrong.
"""

import re
from datetime import UTC, datetime
from io import BytesIO

import pikepdf
import pytest
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.errors import FPDFException
from fpdf.fonts import SubsetMap
from fpdf.output import OutputProducer
from pypdf import PdfReader

from include.dijlepost.rendering import fonts as fonts_module
from include.dijlepost.rendering.fonts import (
    BASE_CODEPOINTS,
    BOLD,
    FAMILY,
    FONT_FILES,
    REGULAR,
    SUBSET_MAP_ATTRIBUTES,
    LetterFonts,
    LetterPDF,
)
from include.dijlepost.settings import TEMPLATES_DIR
from include.dijlepost.waves import ALL_LETTER_TYPES

from .letters import make_letter, renderer
from .pdfread import read_pdf

FONTS_DIR = TEMPLATES_DIR / "fonts"
CORE_TEXT = ["Łukasz Şahin-Öztürk – Françoise Æbelø", "Weiß 1.250,50\u00a0EUR +++010/8068/17183+++ «€»"]
FULL_TEXT = [*CORE_TEXT, "Ștefan Țurcanu, Nguyễn Thị Ánh ǅ"]


def _draw(install, lines, pdf_class=FPDF) -> bytes:
    pdf = pdf_class(unit="mm", format="A4")
    pdf.set_creation_date(datetime(2026, 3, 1, tzinfo=UTC))  # else documents a second apart differ
    install(pdf)
    pdf.add_page()
    for index, line in enumerate(lines):
        pdf.set_font(FAMILY, BOLD if index % 2 else REGULAR, 10 + index)
        pdf.text(20, 30 + 10 * index, line)
    return bytes(pdf.output())


def _add_font(pdf: FPDF) -> None:
    for style, name in FONT_FILES.items():
        pdf.add_font(FAMILY, style, FONTS_DIR / name)


def _outlines(program: bytes, text: str) -> dict[str, list]:
    font = TTFont(BytesIO(program))
    cmap = font.getBestCmap()
    glyf = font["glyf"]
    return {char: list(glyf[cmap[ord(char)]].getCoordinates(glyf)[0]) for char in set(text)}


@pytest.mark.parametrize("lines", [CORE_TEXT, FULL_TEXT], ids=["core", "full"])
def test_a_letter_font_draws_exactly_what_add_font_draws(lines):
    fonts = LetterFonts(FONTS_DIR)
    ours = _draw(lambda pdf: fonts.install(pdf, lines), lines)
    theirs = _draw(_add_font, lines)
    ours_pdf, theirs_pdf = read_pdf(ours), read_pdf(theirs)

    assert [run.text for run in ours_pdf.pages[0].runs] == lines
    assert ours_pdf.pages[0].runs == theirs_pdf.pages[0].runs
    # Same glyph width for every character drawn (the character codes differ: ours are picked in
    # code point order before drawing, fpdf2's in order of first use).
    ours_widths, theirs_widths = _char_widths(ours), _char_widths(theirs)
    assert len(ours_widths) == len(theirs_widths) == 2
    for face, (mine, reference) in enumerate(zip(ours_widths, theirs_widths)):
        drawn = "".join(lines[face::2])
        assert {c: mine[c] for c in drawn} == {c: reference[c] for c in drawn}
    # Same outlines for every character drawn.
    for index, (mine, reference) in enumerate(zip(ours_pdf.font_files, theirs_pdf.font_files)):
        text = "".join(lines[index::2])
        assert _outlines(mine, text) == _outlines(reference, text)


def _char_widths(data: bytes) -> list[dict[str, int]]:
    """Per font resource (F1, F2...): character -> glyph width from /W through the ToUnicode CMap."""
    fonts = PdfReader(BytesIO(data)).pages[0]["/Resources"]["/Font"]
    result = []
    for name in sorted(fonts):
        font = fonts[name].get_object()
        cmap = font["/ToUnicode"].get_object().get_data().decode("latin-1")
        pairs = re.findall(r"<([0-9A-F]{4})> <([0-9A-F]{4})>", cmap)
        chars = {int(code, 16): chr(int(uni, 16)) for code, uni in pairs}
        widths_array = font["/DescendantFonts"][0].get_object()["/W"]
        widths, index = {}, 0
        while index < len(widths_array):
            first, second = widths_array[index], widths_array[index + 1]
            if isinstance(second, list):
                widths.update({first + n: int(w) for n, w in enumerate(second)})
                index += 2
            else:
                widths.update({code: int(widths_array[index + 2]) for code in range(first, second + 1)})
                index += 3
        result.append({char: widths[code] for code, char in chars.items() if code in widths})
    return result


@pytest.mark.parametrize("lines", [CORE_TEXT, FULL_TEXT], ids=["core", "full"])
def test_cached_embedding_writes_byte_for_byte_what_fpdf2_writes(lines, monkeypatch):
    """LetterPDF's producer against fpdf2's own `_add_fonts` for the same document, on a cache miss and
    on a hit (the page compressed at fpdf2's level: that difference has its own test)."""
    monkeypatch.setattr(fonts_module, "PAGE_COMPRESSION_LEVEL", -1)
    fonts = LetterFonts(FONTS_DIR)
    theirs = _draw(lambda pdf: fonts.install(pdf, lines), lines)
    first = _draw(lambda pdf: fonts.install(pdf, lines), lines, LetterPDF)
    again = _draw(lambda pdf: fonts.install(pdf, lines), lines, LetterPDF)
    assert first == theirs
    assert again == theirs
    assert "".join(run.text for run in read_pdf(again).pages[0].runs) == "".join(lines)


def test_a_letter_pdf_refuses_fpdf2s_own_producer():
    """fpdf2's producer would subset the font tables that every LetterPDF of the process shares."""
    fonts = LetterFonts(FONTS_DIR)
    pdf = LetterPDF()
    fonts.install(pdf, ["x"])
    pdf.add_page()
    with pytest.raises(Exception, match="own output producer"):
        pdf.output(output_producer_class=OutputProducer)


def test_letters_with_the_same_glyph_key_share_one_embedding(monkeypatch):
    monkeypatch.setattr(fonts_module, "_embeddings", type(fonts_module._embeddings)())
    fonts = LetterFonts(FONTS_DIR)
    _draw(lambda pdf: fonts.install(pdf, ["Jan Peeters"]), ["Jan Peeters"], LetterPDF)
    cached = len(fonts_module._embeddings)
    assert cached == len(FONT_FILES)
    for name in ["Françoise Dubois", "Jürgen Weiß", "Anaïs Lefèvre 12,50 €"]:
        assert {ord(c) for c in name} <= BASE_CODEPOINTS
        _draw(lambda pdf, name=name: fonts.install(pdf, [name]), [name], LetterPDF)
    assert len(fonts_module._embeddings) == cached
    # A character outside the base set brings its block: a new key, one more embedding per face.
    _draw(lambda pdf: fonts.install(pdf, ["Łukasz"]), ["Łukasz"], LetterPDF)
    assert len(fonts_module._embeddings) == cached + len(FONT_FILES)


def test_names_of_latin_extended_a_share_one_glyph_key(monkeypatch):
    """Polish, Turkish, Czech and Hungarian letters mix freely in names: one key for the whole block."""
    monkeypatch.setattr(fonts_module, "_embeddings", type(fonts_module._embeddings)())
    fonts = LetterFonts(FONTS_DIR)
    for name in ["Łukasz Wiśniewski", "Şahin Yılmaz", "Dvořák Čapek", "Erdős Ödön"]:
        _draw(lambda pdf, name=name: fonts.install(pdf, [name]), [name], LetterPDF)
    assert len(fonts_module._embeddings) == len(FONT_FILES)


def _draw_with(method: str, lines: list[str], installed: list[str]) -> bytes:
    fonts = LetterFonts(FONTS_DIR)
    pdf = LetterPDF(unit="mm", format="A4")
    pdf.set_creation_date(datetime(2026, 3, 1, tzinfo=UTC))
    fonts.install(pdf, installed)
    pdf.add_page()
    for index, line in enumerate(lines):
        pdf.set_font(FAMILY, BOLD if index % 2 else REGULAR, 10 + index)
        pdf.set_text_color(90 if index % 3 else 0)
        getattr(pdf, method)(20, 30 + 10 * index, line)
    return bytes(pdf.output())


@pytest.mark.parametrize(
    "lines", [CORE_TEXT, FULL_TEXT, ["(a) \\ b)", "", " "]], ids=["core", "full", "escapes"]
)
def test_letter_text_writes_byte_for_byte_what_text_writes(lines):
    assert _draw_with("letter_text", lines, lines) == _draw_with("text", lines, lines)


FONT_STATE = (
    "font_family",
    "font_style",
    "font_size_pt",
    "current_font_is_set_on_page",
    "underline",
    "strikethrough",
)


def test_set_letter_font_leaves_the_document_as_set_font_leaves_it():
    """Plain, bold, the same font again (also after a page began), another size, an underlined style and
    an unknown family: after each call the font state, the underline and the page's content are what
    `set_font` leaves, and an unknown font is refused the same way."""
    documents = {}
    for method in ("set_font", "set_letter_font"):
        pdf = LetterPDF(unit="mm", format="A4")
        LetterFonts(FONTS_DIR).install(pdf, ["Jan"])
        pdf.add_page()
        states = []
        for style, size in [
            ("", 10),
            ("", 10),
            ("B", 10),
            ("B", 12),
            ("", 12),
            ("U", 12),
            ("", 12),
            ("B", 9),
        ]:
            getattr(pdf, method)(FAMILY, style, size)
            pdf.text(20, 30, "Jan")
            getattr(pdf, method)(FAMILY.upper(), style, size)
            states.append([getattr(pdf, name) for name in FONT_STATE] + [pdf.current_font.fontkey])
        with pytest.raises(FPDFException, match="Undefined font"):
            getattr(pdf, method)("Courier New", "", 10)
        documents[method] = (states, bytes(pdf.pages[1].contents))
    assert documents["set_letter_font"] == documents["set_font"]


def test_mapped_text_is_kept_per_glyph_key_and_bounded(monkeypatch):
    """A text drawn again (here in a second document of the same glyph key) comes from the kept mapping
    and writes the same bytes as `text`; the kept texts never exceed MAPPED_CACHE_SIZE."""
    monkeypatch.setattr(fonts_module, "MAPPED_CACHE_SIZE", 3)
    lines = ["(a) \\ b)", "Jan Peeters", "Jan Peeters", "Grote Markt 21", "2800 Mechelen", "(a) \\ b)"]
    first = _draw_with("letter_text", lines, lines)
    pdf = LetterPDF(unit="mm", format="A4")
    LetterFonts(FONTS_DIR).install(pdf, lines)
    mapped = pdf.letter_fonts[f"{FAMILY}{REGULAR}"].mapped
    assert 0 < len(mapped) <= 3
    assert _draw_with("letter_text", lines, lines) == first == _draw_with("text", lines, lines)


def test_letter_text_outside_the_installed_key_falls_back_to_text():
    """A character the glyph key does not hold is picked by fpdf2 itself, as `text` does."""
    lines = ["Jan Peeters", "Łukasz Şahin"]
    fast = _draw_with("letter_text", lines, ["Jan Peeters"])
    assert fast == _draw_with("text", lines, ["Jan Peeters"])
    assert "".join(run.text for run in read_pdf(fast).pages[0].runs) == "".join(lines)


def test_the_embedding_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(fonts_module, "EMBED_CACHE_SIZE", 1)
    fonts = LetterFonts(FONTS_DIR)
    for name in ["Łukasz", "Ştefan", "Nguyễn", "Ǆ"]:
        _draw(lambda pdf, name=name: fonts.install(pdf, [name]), [name], LetterPDF)
        assert len(fonts_module._embeddings) <= len(FONT_FILES)
        assert len(fonts_module._subset_states) <= len(FONT_FILES)


def test_subset_map_keeps_the_state_fonts_py_copies():
    """fonts.py copies a picked SubsetMap by these attributes; another layout means an fpdf2 change."""
    fonts = LetterFonts(FONTS_DIR)
    pdf = FPDF()
    fonts.install(pdf, ["x"])
    font = next(iter(pdf.fonts.values()))
    assert set(vars(SubsetMap(font))) == SUBSET_MAP_ATTRIBUTES


def test_measured_widths_match_fpdf2():
    fonts = LetterFonts(FONTS_DIR)
    pdf = FPDF(unit="mm")
    _add_font(pdf)
    for style in (REGULAR, BOLD):
        pdf.set_font(FAMILY, style, 9.5)
        for line in FULL_TEXT:
            assert fonts.width(line, style, 9.5) == pytest.approx(pdf.get_string_width(line), abs=1e-9)


def test_coverage_is_latin_and_the_unshaped_scripts():
    fonts = LetterFonts(FONTS_DIR)
    assert fonts.unprintable("Ærøskøbing Ğ ș ẞ ﬁ") == "ﬁ"  # ligature outside the blocks we keep
    assert fonts.unprintable("Łódź, Šiauliai, Kırşehir, Hà Nội") is None
    assert fonts.unprintable("Ελλάδα, Олександр Шевченко, Ґанна, Արամ, გიორგი") is None
    assert fonts.unprintable("محمد") == "م"  # Arabic needs shaping: refused


# --------------------------------------------------------------------------- reduced fonts kept on disk


def test_a_reduced_font_is_made_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIJLEPOST_CACHE_DIR", str(tmp_path))
    path, coverage = str(FONTS_DIR / FONT_FILES[REGULAR]), fonts_module.CORE_COVERAGE
    made = fonts_module._reduced_font(path, coverage)
    [entry] = (tmp_path / "fonts").glob("DejaVuSans-*.ttf")
    assert entry.read_bytes() == made
    assert set(TTFont(BytesIO(made)).getBestCmap()) >= set(range(0x20, 0x7F))

    def no_subsetting(*args):
        raise AssertionError("the font was reduced again instead of read from the cache")

    monkeypatch.setattr(fonts_module, "_subset", no_subsetting)
    assert fonts_module._reduced_font(path, coverage) == made
    # Another coverage is another entry, never the cached one.
    monkeypatch.undo()
    monkeypatch.setenv("DIJLEPOST_CACHE_DIR", str(tmp_path))
    wider = fonts_module._reduced_font(path, fonts_module.COVERAGE)
    assert wider != made and len(list((tmp_path / "fonts").glob("DejaVuSans-*.ttf"))) == 2


def test_without_a_writable_cache_the_font_is_reduced_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("DIJLEPOST_CACHE_DIR", str(blocker))
    path = str(FONTS_DIR / FONT_FILES[BOLD])
    data = fonts_module._reduced_font(path, fonts_module.CORE_COVERAGE)
    assert data == fonts_module._subset(
        (FONTS_DIR / FONT_FILES[BOLD]).read_bytes(), fonts_module.CORE_COVERAGE
    )


@pytest.mark.parametrize("letter_type", sorted(ALL_LETTER_TYPES))
def test_a_letter_written_with_quick_object_dictionaries_is_the_one_fpdf2_writes(letter_type, monkeypatch):
    """Every object of a whole letter (catalog, pages, structure tree, metadata, fonts) through
    LetterPDF's producer against fpdf2's own way of building object dictionaries."""
    letter = make_letter(letter_type, "fr", seed=7)
    quick = renderer().render(letter).pdf
    monkeypatch.setattr(fonts_module._LetterOutputProducer, "_add_pdf_obj", OutputProducer._add_pdf_obj)
    assert renderer().render(letter).pdf == quick


def test_page_content_is_compressed_at_its_own_level_and_holds_the_same_operators(monkeypatch):
    """At zlib's default level, a letter is byte for byte what fpdf2's own page compression writes; at
    PAGE_COMPRESSION_LEVEL, its page content streams decompress to the same operators."""
    letters = [make_letter("invoice", "fr"), make_letter("gas_finding", "nl")]
    ours = [renderer().render(letter).pdf for letter in letters]
    monkeypatch.setattr(fonts_module, "PAGE_COMPRESSION_LEVEL", -1)
    default_level = [renderer().render(letter).pdf for letter in letters]
    monkeypatch.setattr(fonts_module._LetterOutputProducer, "_add_pages", OutputProducer._add_pages)
    assert [renderer().render(letter).pdf for letter in letters] == default_level
    for own, default in zip(ours, default_level, strict=True):
        assert own != default
        assert [page.Contents.read_bytes() for page in pikepdf.open(BytesIO(own)).pages] == [
            page.Contents.read_bytes() for page in pikepdf.open(BytesIO(default)).pages
        ]
