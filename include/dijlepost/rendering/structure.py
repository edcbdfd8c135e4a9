"""The letter's structure tree and marked content (PDF 1.7, 14.7 and 14.8), as fpdf2 writes them.

`StructureTree` nests the elements fpdf2's own builder would leave flat under /Document;
`MarkedContent` tags each page as it is drawn, one marked-content sequence per run of operations of one
content element, everything else an artifact. Both work on fpdf2's structure classes and write into its
page content stream; the few places that reach into fpdf2's internals say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fpdf import FPDF
from fpdf.output import PDFPage
from fpdf.structure_tree import StructElem, StructureTreeBuilder
from fpdf.syntax import PDFArray, PDFObject, PDFString

from .layout import LAYOUT, Op, QrOp, StructPath, TextOp

if TYPE_CHECKING:
    from fpdf.encryption import StandardSecurityHandler

# A content element under its grouping elements: (structure type, new_group() id or the id of the
# operation that is the element on its own).
Leaf = tuple[str, int]
ElementKey = tuple[Leaf, ...]  # the path of grouping elements, then the element itself


class Element(StructElem):
    """fpdf2's structure element with attributes (/A: a table cell's /Scope and /ColSpan).

    Written by its own `serialize`, which writes what fpdf2's generic one writes (the keys in the
    order of `dir()`, each on its line; test_accessibility.py compares the bytes) without collecting
    the object's attributes by reflection: that took a quarter of the render time of a letter of
    some 50 elements."""

    __slots__ = ("a",)

    def __init__(self, struct_type: str, parent: PDFObject, page_number: int, alt: str | None = None):
        # What `StructElem.__init__` sets (no title), assigned here: a letter makes some 50 elements.
        self._id = None
        self.type = "/StructElem"
        self.s = struct_type
        self.p = parent
        self.k = PDFArray()
        self.t = None
        self.alt = None if alt is None else PDFString(alt)
        self.pg = None
        self._page_number = page_number
        self.a: str | None = None

    def serialize(
        self,
        obj_dict: dict[str, object] | None = None,
        _security_handler: StandardSecurityHandler | None = None,
    ) -> str:
        if obj_dict is not None or _security_handler is not None or self.t is not None:
            return super().serialize(obj_dict, _security_handler)
        k: Any = self.k  # an array of kids, or one MCID once `StructureTree.finish` has run
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


class ContentItem:
    """A marked-content reference (ISO 32000-1, 14.7.4.3): an MCID on another page than the element's
    /Pg, for an element whose content runs over a page break."""

    def __init__(self, page: PDFPage, mcid: int):
        self.page = page
        self.mcid = mcid

    def serialize(self, **_kwargs: object) -> str:
        return f"<</Type /MCR /Pg {self.page.ref} /MCID {self.mcid}>>"


class StructureTree(StructureTreeBuilder):
    """The letter's structure tree: fpdf2's builder makes a flat /Document of elements; this one nests
    them. Grouping elements (the sender and address blocks, a Table with its THead/TBody/TFoot and
    rows, a list and its items, the payment section) come from the operations' `path`; the elements
    that hold content (P, H1, H2, TH, TD, Lbl, LBody, Figure) from their tag and group. Every element
    is added under its parent the first time its content is drawn, so the tree's order is the order of
    drawing, which is the order the letter reads. A content element keeps all its marked-content
    sequences, over pages too (/K lists their MCIDs, as /MCR references for a page other than its
    /Pg); the ParentTree lists, per page, the element of each MCID.

    fpdf2 writes the StructTreeRoot, the ParentTree, each page's /StructParents and the catalog's
    /MarkInfo << /Marked true >> from it; `__iter__` hands fpdf2 every element to write, parents
    before children."""

    def __init__(self, pdf: FPDF):
        super().__init__()
        self.pdf = pdf
        pdf.struct_builder = self
        self.elements: dict[ElementKey, Element] = {}
        self.rows: dict[ElementKey, list[Element]] = {}  # a table's rows (path) -> cells, for ColSpan

    def content(self, path: StructPath, leaf: Leaf, alt: str | None = None) -> int:
        """The next MCID of the current page, given to the content element `leaf` (type, group) under
        the grouping elements `path`."""
        page = self.pdf.page
        spid = self.spid_per_page_number.setdefault(page, len(self.spid_per_page_number))
        self.pdf.pages[page].struct_parents = spid
        element = self._element((*path, leaf), alt)
        mcids = self.struct_tree_root.parent_tree.nums[spid]
        mcid = len(mcids)
        mcids.append(element)
        if element.page_number() == page:
            element.k.append(mcid)
        else:
            element.k.append(ContentItem(self.pdf.pages[page], mcid))
        return mcid

    def _element(self, key: ElementKey, alt: str | None = None) -> Element:
        """The element at `key`, made (with any grouping element above it not made yet) on first use."""
        element = self.elements.get(key)
        if element is not None:
            return element
        parent: StructElem = self.doc_struct_elem
        for depth in range(len(key) - 1):
            prefix = key[: depth + 1]
            found = self.elements.get(prefix)
            parent = found if found is not None else self._new_element(prefix, parent, None)
        return self._new_element(key, parent, alt)

    def _new_element(self, prefix: ElementKey, parent: StructElem, alt: str | None) -> Element:
        page = self.pdf.page
        kind = prefix[-1][0]
        element = Element(f"/{kind}", parent, page, alt)
        element.pg = self.pdf.pages[page]  # type: ignore[assignment]  # fpdf2 declares pg as None only
        parent.k.append(element)
        self.elements[prefix] = element
        if kind in ("TH", "TD"):
            self.rows.setdefault(prefix[:-1], []).append(element)
            if kind == "TH":
                scope = "Column" if any(part == "THead" for part, _ in prefix) else "Row"
                element.a = f"<</O /Table /Scope /{scope}>>"
        return element

    def finish(self) -> None:
        """What is known once the whole letter is drawn: a row with fewer cells than its table's widest
        row (the total under the itemised lines) has its header cell span the missing columns; an
        element with one MCID has it as its /K."""
        widths: dict[ElementKey, int] = {}
        for row, cells in self.rows.items():
            table = _table_of(row)
            widths[table] = max(widths.get(table, 0), len(cells))
        for row, cells in self.rows.items():
            missing = widths[_table_of(row)] - len(cells)
            first = cells[0]
            if missing and first.s == "/TH" and first.a is not None:
                first.a = first.a[:-2] + f" /ColSpan {missing + 1}>>"
        for element in self.elements.values():
            if len(element.k) == 1 and isinstance(element.k[0], int):
                element.k = element.k[0]  # type: ignore[assignment]  # fpdf2 types /K as an array; one MCID is written bare
        self.pdf._set_min_pdf_version("1.4")  # /MarkInfo

    def __iter__(self) -> Iterator[PDFObject]:
        yield self.struct_tree_root
        yield self.doc_struct_elem
        yield self.struct_tree_root.parent_tree
        yield from self.elements.values()


def _table_of(row: ElementKey) -> ElementKey:
    """The path of the Table a row is in."""
    return row[: [kind for kind, _ in row].index("Table") + 1]


# What a marked-content sequence is for: a content element (its path and leaf) or an artifact's kind.
_Sequence = tuple[StructPath, Leaf] | str


class MarkedContent:
    """Tags one page as it is drawn: each run of operations of one content element is one
    marked-content sequence (`/TD <</MCID n>> BDC ... EMC`) with the MCID `StructureTree` gives it;
    rules, frames, the running header, a table's repeated header row, the footer and the page number
    are artifacts (`/Artifact <</Type /Pagination /Subtype /Footer>> BDC ... EMC`, /Layout for
    rules and frames), so a reader does not read them out on every page."""

    def __init__(self, tree: StructureTree, out: Callable[[str], None]):
        self.tree = tree
        self.out = out  # writes a line of the page's content stream
        self.current: _Sequence | None = None

    def enter(self, op: Op) -> None:
        key: _Sequence
        if isinstance(op, TextOp) and op.tag:
            key = (op.path, (op.tag, op.group or id(op)))
        elif isinstance(op, QrOp):
            key = (op.path, ("Figure", id(op)))
        else:
            key = op.artifact if isinstance(op, TextOp) else LAYOUT
        if key == self.current:
            return
        self.close()
        self.current = key
        if isinstance(key, str):
            kind, _, subtype = key.partition("/")
            properties = f"/Type /{kind}" + (f" /Subtype /{subtype}" if subtype else "")
            self.out(f"/Artifact <<{properties}>> BDC")
            return
        alt = op.alt if isinstance(op, QrOp) else None
        mcid = self.tree.content(key[0], key[1], alt)
        self.out(f"/{key[1][0]} <</MCID {mcid}>> BDC")

    def close(self) -> None:
        if self.current is not None:
            self.out("EMC")
            self.current = None
