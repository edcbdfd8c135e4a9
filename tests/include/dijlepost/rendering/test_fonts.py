"""The prepared fonts against fpdf2's own `add_font`: same widths, same text, same glyph outlines.

fonts.py reuses fpdf2 internals to avoid parsing the font for every letter; if an fpdf2 upgrade changes
them, these tests say so before a letter comes out wrong.
"""
import re
from io import BytesIO

import pytest
from fontTools.ttLib import TTFont
from fpdf import FPDF

from include.dijlepost.rendering.fonts import BOLD, FAMILY, FONT_FILES, REGULAR, LetterFonts
from include.dijlepost.settings import TEMPLATES_DIR

from .pdfread import read_pdf

FONTS_DIR = TEMPLATES_DIR / "fonts"
CORE_TEXT = ["Łukasz Şahin-Öztürk – Françoise Æbelø", "Weiß 1.250,50\u00a0EUR +++010/8068/17183+++ «€»"]
FULL_TEXT = CORE_TEXT + ["Ștefan Țurcanu, Nguyễn Thị Ánh ǅ"]


def _draw(install, lines) -> bytes:
    pdf = FPDF(unit="mm", format="A4")
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
    # Same glyph widths per character code.
    widths = [re.findall(rb"/W \[.*?\]\s*\n", pdf, re.S) for pdf in (ours, theirs)]
    assert widths[0] == widths[1] and widths[0]
    # Same outlines for every character drawn.
    for index, (mine, reference) in enumerate(zip(ours_pdf.font_files, theirs_pdf.font_files)):
        text = "".join(lines[index::2])
        assert _outlines(mine, text) == _outlines(reference, text)


def test_measured_widths_match_fpdf2():
    fonts = LetterFonts(FONTS_DIR)
    pdf = FPDF(unit="mm")
    _add_font(pdf)
    for style in (REGULAR, BOLD):
        pdf.set_font(FAMILY, style, 9.5)
        for line in FULL_TEXT:
            assert fonts.width(line, style, 9.5) == pytest.approx(pdf.get_string_width(line), abs=1e-9)


def test_coverage_is_latin_only():
    fonts = LetterFonts(FONTS_DIR)
    assert fonts.unprintable("Ærøskøbing Ğ ș ẞ ﬁ") == "ﬁ"       # ligature outside the Latin blocks we keep
    assert fonts.unprintable("Ελλάδα") == "Ε"
    assert fonts.unprintable("Łódź, Šiauliai, Kırşehir, Hà Nội") is None
