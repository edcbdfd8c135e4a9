"""A small PDF reader for the rendering tests: enough to read back what fpdf2 writes.

Neither pypdf nor pdftotext is available, so the tests parse the PDF themselves: the objects, the
FlateDecode streams, each page's content stream (text with its position, font and size; filled
rectangles) and each font's ToUnicode CMap, which turns fpdf2's two-byte glyph codes back into text.
It understands the subset of PDF that fpdf2 produces, not PDF in general; anything it does not
recognise fails loudly rather than reading wrongly.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

PT_TO_MM = 25.4 / 72
PAGE_HEIGHT_PT = 841.89

_OBJECT_RE = re.compile(rb"(\d+) 0 obj\s*(.*?)\s*endobj", re.S)
_REF_RE = re.compile(rb"(\d+) 0 R")


@dataclass(frozen=True)
class TextRun:
    x: float  # mm from the left edge
    y: float  # baseline, mm from the top edge
    font: str  # resource name, e.g. F1
    size: float  # pt
    text: str


@dataclass(frozen=True)
class FilledRect:
    x: float  # mm, top-left corner
    y: float
    width: float
    height: float


@dataclass
class Marked:
    """One marked-content sequence: BDC with an MCID (tagged content) or an artifact (BMC /Artifact or
    BDC /Artifact with its properties)."""

    tag: str
    mcid: int | None
    texts: list[str] = field(default_factory=list)
    rects: int = 0
    kind: str = ""  # an artifact's /Type and /Subtype: "Pagination/Footer", "Layout"

    @property
    def text(self) -> str:
        """The text as a reader gets it: the runs in order, as drawn (spaces included)."""
        return "".join(self.texts)


@dataclass
class Page:
    runs: list[TextRun] = field(default_factory=list)
    rects: list[FilledRect] = field(default_factory=list)
    marked: list[Marked] = field(default_factory=list)  # in content-stream order
    unmarked: list[str] = field(default_factory=list)  # text drawn outside any marked content

    @property
    def text(self) -> str:
        """All text of the page, lines joined by single spaces (wrapped phrases read as one)."""
        return " ".join(run.text for run in self.runs)


@dataclass
class Document:
    pages: list[Page]
    info: dict[str, str]
    catalog: dict[str, str]
    font_names: dict[str, str]  # resource name -> BaseFont
    font_files: list[bytes]  # embedded TrueType programs

    @property
    def text(self) -> str:
        return " ".join(page.text for page in self.pages)


def read_pdf(data: bytes) -> Document:
    assert data.startswith(b"%PDF-1."), "no PDF header"
    assert data.rstrip().endswith(b"%%EOF"), "no %%EOF trailer"
    objects = {int(num): body for num, body in _OBJECT_RE.findall(data)}
    trailer = data[data.rindex(b"trailer") :]
    root = _ref(trailer, b"/Root")
    info = _strings(objects[_ref(trailer, b"/Info")])
    catalog = _strings(objects[root])

    pages_obj = objects[_ref(objects[root], b"/Pages")]
    kids = [int(n) for n in _REF_RE.findall(re.search(rb"/Kids\s*\[(.*?)\]", pages_obj, re.S).group(1))]
    count = int(re.search(rb"/Count (\d+)", pages_obj).group(1))
    assert count == len(kids), "page count and kids disagree"

    font_names, cmaps, font_files = {}, {}, []
    pages = []
    for kid in kids:
        page_obj = objects[kid]
        assert b"/Type /Page" in page_obj
        resources = objects[_ref(page_obj, b"/Resources")]
        fonts = re.search(rb"/Font\s*<<(.*?)>>", resources, re.S)
        for name, num in re.findall(rb"/(F\d+) (\d+) 0 R", fonts.group(1) if fonts else b""):
            name = name.decode()
            if name not in cmaps:
                font = objects[int(num)]
                font_names[name] = re.search(rb"/BaseFont /(\S+)", font).group(1).decode()
                cmaps[name] = _cmap(_stream(objects[_ref(font, b"/ToUnicode")]))
                descendant = objects[int(re.search(rb"/DescendantFonts \[(\d+) 0 R\]", font).group(1))]
                descriptor = objects[_ref(descendant, b"/FontDescriptor")]
                font_files.append(_stream(objects[_ref(descriptor, b"/FontFile2")]))
        pages.append(_page(_stream(objects[_ref(page_obj, b"/Contents")]), cmaps))
    return Document(pages, info, catalog, font_names, font_files)


def _ref(body: bytes, key: bytes) -> int:
    match = re.search(re.escape(key) + rb"\s+(\d+) 0 R", body)
    assert match, f"no reference {key!r}"
    return int(match.group(1))


def _stream(body: bytes) -> bytes:
    head, _, rest = body.partition(b"stream")
    length = int(re.search(rb"/Length (\d+)", head).group(1))
    raw = rest[1:] if rest.startswith(b"\n") else rest[2:]
    raw = raw[:length]
    return zlib.decompress(raw) if b"/FlateDecode" in head else raw


def _strings(body: bytes) -> dict[str, str]:
    """The string values of a dictionary (literal or UTF-16 hex), by key."""
    values = {}
    for key, literal, hexa in re.findall(rb"/(\w+)\s*(?:\(((?:\\.|[^\\)])*)\)|<([0-9A-Fa-f]+)>)", body):
        if hexa:
            raw = bytes.fromhex(hexa.decode())
            utf16 = raw.startswith(b"\xfe\xff")
            values[key.decode()] = raw[2:].decode("utf-16-be") if utf16 else raw.decode("latin-1")
        else:
            values[key.decode()] = _unescape(literal).decode("latin-1")
    return values


def _cmap(data: bytes) -> dict[int, str]:
    mapping = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", data, re.S):
        for code, uni in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            mapping[int(code, 16)] = bytes.fromhex(uni.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", data, re.S):
        for first, last, uni in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            start = int(uni, 16)
            for offset, code in enumerate(range(int(first, 16), int(last, 16) + 1)):
                mapping[code] = chr(start + offset)
    assert mapping, "empty ToUnicode CMap"
    return mapping


_ESCAPES = {
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"b": b"\b",
    b"f": b"\f",
    b"(": b"(",
    b")": b")",
    b"\\": b"\\",
}


def _unescape(raw: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(raw):
        char = raw[i : i + 1]
        if char != b"\\":
            out += char
            i += 1
            continue
        nxt = raw[i + 1 : i + 2]
        if nxt in _ESCAPES:
            out += _ESCAPES[nxt]
            i += 2
        elif nxt.isdigit():
            octal = re.match(rb"[0-7]{1,3}", raw[i + 1 : i + 4]).group(0)
            out.append(int(octal, 8))
            i += 1 + len(octal)
        else:
            raise AssertionError(f"unknown escape {nxt!r}")
    return bytes(out)


def _tokens(data: bytes):
    i = 0
    n = len(data)
    while i < n:
        c = data[i : i + 1]
        if c.isspace():
            i += 1
        elif data[i : i + 2] in (b"<<", b">>"):  # inline dictionary (marked-content properties)
            yield ("op", data[i : i + 2].decode())
            i += 2
        elif c == b"(":
            depth, j = 1, i + 1
            while depth:
                d = data[j : j + 1]
                if d == b"\\":
                    j += 2
                    continue
                depth += {b"(": 1, b")": -1}.get(d, 0)
                j += 1
            yield ("string", _unescape(data[i + 1 : j - 1]))
            i = j
        elif c == b"<" and data[i : i + 2] != b"<<":
            j = data.index(b">", i)
            yield ("string", bytes.fromhex(data[i + 1 : j].decode()))
            i = j + 1
        elif c == b"/":
            m = re.match(rb"/[^\s/\[\]()<>]+", data[i:])
            yield ("name", m.group(0)[1:].decode())
            i += len(m.group(0))
        elif c in b"[]":
            yield ("op", c.decode())
            i += 1
        else:
            m = re.match(rb"[^\s/\[\]()<>]+", data[i:])
            word = m.group(0)
            try:
                yield ("number", float(word))
            except ValueError:
                yield ("op", word.decode())
            i += len(word)


def _page(content: bytes, cmaps: dict[str, dict[int, str]]) -> Page:
    page = Page()
    operands: list = []
    font, size = None, 0.0
    x = y = 0.0
    pending_rects = []  # a path may hold many rectangles, filled at once
    current: Marked | None = None
    for kind, value in _tokens(content):
        if kind != "op" or value in ("[", "]", "<<", ">>"):
            operands.append(value)
            continue
        if value == "Tf":
            font, size = operands[-2], operands[-1]
        elif value == "Td":
            x, y = operands[-2], operands[-1]
        elif value == "Tj":
            raw = operands[-1]
            codes = [int.from_bytes(raw[k : k + 2], "big") for k in range(0, len(raw), 2)]
            text = "".join(cmaps[font][code] for code in codes)
            (current.texts if current else page.unmarked).append(text)
            if text.strip():  # the renderer draws a space where a line of an element breaks
                page.runs.append(TextRun(x * PT_TO_MM, (PAGE_HEIGHT_PT - y) * PT_TO_MM, font, size, text))
        elif value == "BDC":
            assert current is None, "nested marked content"
            assert operands[1] == "<<" and operands[-1] == ">>", f"unexpected BDC {operands}"
            if operands[0] == "Artifact":  # with its /Type (and /Subtype): Layout, Pagination...
                current = Marked("Artifact", None, kind="/".join(operands[3:-1:2]))
            else:
                assert operands[2] == "MCID", f"unexpected BDC {operands}"
                current = Marked(operands[0], int(operands[3]))
        elif value == "BMC":
            assert current is None, "nested marked content"
            current = Marked(operands[-1], None)
        elif value == "EMC":
            assert current is not None, "EMC without BDC/BMC"
            page.marked.append(current)
            current = None
        elif value == "re":
            pending_rects.append(tuple(operands[-4:]))
        elif value == "f":
            if current:
                current.rects += len(pending_rects)
            for rx, ry, rw, rh in pending_rects:
                top, bottom = PAGE_HEIGHT_PT - ry, PAGE_HEIGHT_PT - (ry + rh)
                page.rects.append(
                    FilledRect(
                        rx * PT_TO_MM, min(top, bottom) * PT_TO_MM, abs(rw) * PT_TO_MM, abs(rh) * PT_TO_MM
                    )
                )
            pending_rects = []
        elif value in ("S", "B", "n"):
            pending_rects = []
        operands = []
    assert current is None, "marked content left open at the end of the page"
    return page
