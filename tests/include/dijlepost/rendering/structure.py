"""A rendered letter's structure tree read back with pikepdf, printed as an outline, and checked: by the
`pdfua` checker (PDF/UA-1's machine-checkable rules it implements) and by the Matterhorn Protocol
checkpoints it does not cover, which `matterhorn_problems` checks here.

    .venv/bin/python -m tests.include.dijlepost.rendering.structure            # every template x language
    .venv/bin/python -m tests.include.dijlepost.rendering.structure --outline invoice nl [--lines 40]

prints, per template and language, the `pdfua` findings and this module's problems (none: "clean"), or
one letter's tree as an outline; the exit status is 1 if any letter has a finding.
"""

from __future__ import annotations

import argparse
import io
import itertools
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pikepdf
from pdfua import validate

from .pdfread import read_pdf

# PDF 1.7 (ISO 32000-1, 14.8.4) standard structure types, the set PDF/UA-1 (7.1) has every type
# map to.
STANDARD_TYPES = frozenset(
    [
        "Document",
        "Part",
        "Art",
        "Sect",
        "Div",
        "BlockQuote",
        "Caption",
        "TOC",
        "TOCI",
        "Index",
        "NonStruct",
        "Private",
        "P",
        "H",
        "H1",
        "H2",
        "H3",
        "H4",
        "H5",
        "H6",
        "L",
        "LI",
        "Lbl",
        "LBody",
        "Table",
        "TR",
        "TH",
        "TD",
        "THead",
        "TBody",
        "TFoot",
        "Span",
        "Quote",
        "Note",
        "Reference",
        "BibEntry",
        "Code",
        "Link",
        "Annot",
        "Ruby",
        "RB",
        "RT",
        "RP",
        "Warichu",
        "WT",
        "WP",
        "Figure",
        "Formula",
        "Form",
    ]
)
# Operators that put something on the page (ISO 32000-1, tables 51, 59, 60, 87, 92).
PAINTING = frozenset(
    ["Tj", "TJ", "'", '"', "S", "s", "f", "F", "f*", "B", "B*", "b", "b*", "sh", "Do", "BI", "EI"]
)
# Which parent each table and list element may have (ISO 32000-1, 14.8.4.3.3 and 14.8.4.3.2).
PARENTS = {
    "TR": {"Table", "THead", "TBody", "TFoot"},
    "TH": {"TR"},
    "TD": {"TR"},
    "THead": {"Table"},
    "TBody": {"Table"},
    "TFoot": {"Table"},
    "LI": {"L"},
    "Lbl": {"LI"},
    "LBody": {"LI"},
}
CHILDREN = {
    "Table": {"TR", "THead", "TBody", "TFoot", "Caption"},
    "THead": {"TR"},
    "TBody": {"TR"},
    "TFoot": {"TR"},
    "TR": {"TH", "TD"},
    "L": {"LI", "Caption", "L"},
    "LI": {"Lbl", "LBody"},
}


@dataclass
class Node:
    type: str  # as written in /S
    obj: pikepdf.Dictionary | None = None
    children: list[Node] = field(default_factory=list)
    content: list[tuple[int, int]] = field(default_factory=list)  # (page index, MCID) in order
    texts: list[str] = field(default_factory=list)  # the text of each content item
    pdf: pikepdf.Pdf | None = field(default=None, repr=False)  # kept open while a node is in use

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def attribute(self, key: str):
        """An attribute (/Scope, /ColSpan...) from the element's /A, whatever its owner."""
        attributes = self.obj.get("/A") if self.obj is not None else None
        if attributes is None:
            return None
        for entry in attributes if isinstance(attributes, pikepdf.Array) else [attributes]:
            if isinstance(entry, pikepdf.Dictionary) and key in entry:
                return entry[key]
        return None

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def sequence(self) -> list[str]:
        """The element types in reading order (depth first), the root included."""
        return [node.type for node in self.walk()]

    def shape(self) -> str:
        """The subtree's element types, children in brackets: `Table[TR[TH TD] TR[TH TD]]`; a run of
        the same child written once with its count: `Table[2*TR[TH TD]]`."""
        if not self.children:
            return self.type
        shapes = [child.shape() for child in self.children]
        runs: list[list] = []
        for shape in shapes:
            if runs and runs[-1][0] == shape:
                runs[-1][1] += 1
            else:
                runs.append([shape, 1])
        inner = " ".join(shape if count == 1 else f"{count}*{shape}" for shape, count in runs)
        return f"{self.type}[{inner}]"

    def find(self, type_: str) -> list[Node]:
        return [node for node in self.walk() if node.type == type_]


@dataclass
class Structure:
    root: Node  # the /Document element
    pdf: pikepdf.Pdf
    pages: list  # pikepdf pages
    role_map: dict[str, str]
    marked: list[list]  # per page, pdfread's marked-content sequences


def read_structure(data: bytes, *, texts: bool = True) -> Structure:
    """The tree; with `texts`, each element's text (read by pdfread, which reads what fpdf2 writes,
    not any PDF: a letter, not one rewritten by pikepdf)."""
    pdf = pikepdf.open(io.BytesIO(data))
    pages = list(pdf.pages)
    page_index = {page.obj.objgen: index for index, page in enumerate(pages)}
    tree = pdf.Root.StructTreeRoot
    role_map = {str(k)[1:]: str(v)[1:] for k, v in tree.get("/RoleMap", pikepdf.Dictionary()).items()}
    marked = [page.marked for page in read_pdf(data).pages] if texts else []
    text_of = {
        (index, m.mcid): m.text for index, page in enumerate(marked) for m in page if m.mcid is not None
    }

    def element(obj: pikepdf.Dictionary, page: int | None) -> Node:
        node = Node(str(obj.S)[1:], obj, pdf=pdf)
        if "/Pg" in obj:
            page = page_index[obj.Pg.objgen]
        kids = obj.get("/K")
        for kid in kids if isinstance(kids, pikepdf.Array) else [] if kids is None else [kids]:
            if isinstance(kid, int):
                assert page is not None, f"{node.type}: an MCID without a page"
                node.content.append((page, int(kid)))
            elif isinstance(kid, pikepdf.Dictionary) and kid.get("/Type") == "/MCR":
                where = page_index[kid.Pg.objgen] if "/Pg" in kid else page
                node.content.append((where, int(kid.MCID)))
            elif isinstance(kid, pikepdf.Dictionary) and kid.get("/Type") == "/OBJR":
                continue
            else:
                node.children.append(element(kid, page))
        node.texts = [text_of.get(item, "") for item in node.content]
        return node

    roots = tree.K if isinstance(tree.K, pikepdf.Array) else [tree.K]
    assert len(roots) == 1, "the structure tree root has one element, the Document"
    return Structure(element(roots[0], None), pdf, pages, role_map, marked)


def outline(structure: Structure | bytes, width: int = 60) -> str:
    """The tree as an indented outline: each element's type, its attributes, where its content is and
    the start of its text."""
    if isinstance(structure, bytes):
        structure = read_structure(structure)
    lines = []

    def show(node: Node, depth: int) -> None:
        parts = [node.type]
        for key in ("/Scope", "/ColSpan"):
            value = node.attribute(key)
            if value is not None:
                parts.append(f"{key[1:]}={str(value).lstrip('/')}")
        if node.obj is not None and "/Alt" in node.obj:
            parts.append(f"Alt={_short(str(node.obj.Alt), width)!r}")
        if node.content:
            pages = sorted({page + 1 for page, _ in node.content})
            parts.append(f"[p{','.join(map(str, pages))}]")
            parts.append(repr(_short(node.text, width)))
        lines.append("  " * depth + " ".join(parts))
        for child in node.children:
            show(child, depth + 1)

    show(structure.root, 0)
    return "\n".join(lines)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def matterhorn_problems(data: bytes) -> list[str]:
    """What breaks the Matterhorn Protocol 1.1 checkpoints below, which the `pdfua` checker does not
    decide (empty: nothing). Failure conditions by number:

    01-003/01-004/01-005 content neither tagged nor an artifact, an artifact inside tagged content or the
      reverse (any painting operator: text, paths, images, shadings);
    02-001..02-004 structure types: standard, or role-mapped to a standard type;
    09-004..09-008 tables and lists nested as ISO 32000-1 says (TR in Table/THead/TBody/TFoot, TH/TD in
      TR, LI in L, Lbl/LBody in LI);
    14-002/14-003 headings: the first is H1 and no level is skipped;
    15-003 every TH has /Scope (the letters do not use /Headers) and every row spans the same columns;
    31-001/31-009/31-027 every font embedded, with a ToUnicode map;
    and the tree itself: each element's /P is its parent, every MCID drawn belongs to exactly one element
    and the page's ParentTree entry names that element at the MCID's index."""
    problems: list[str] = []
    structure = read_structure(data, texts=False)
    pdf, root = structure.pdf, structure.root

    # 01-003, 01-004, 01-005: every painting operator inside exactly one kind of marked content.
    drawn: dict[int, list[int]] = {}
    for index, page in enumerate(structure.pages):
        stack: list[tuple[str, int | None]] = []
        for operands, operator in pikepdf.parse_content_stream(page):
            op = str(operator)
            if op in ("BDC", "BMC"):
                tag = str(operands[0])[1:]
                mcid = None
                if op == "BDC" and isinstance(operands[1], pikepdf.Dictionary) and "/MCID" in operands[1]:
                    mcid = int(operands[1].MCID)
                if tag == "Artifact" and any(t != "Artifact" for t, _ in stack):
                    problems.append(f"01-004 page {index + 1}: an artifact inside tagged content")
                if mcid is not None:
                    if any(t == "Artifact" for t, _ in stack):
                        problems.append(f"01-005 page {index + 1}: tagged content inside an artifact")
                    drawn.setdefault(index, []).append(mcid)
                elif tag != "Artifact":
                    problems.append(f"01-003 page {index + 1}: marked content /{tag} without an MCID")
                stack.append((tag, mcid))
            elif op == "EMC":
                if not stack:
                    problems.append(f"page {index + 1}: EMC without BDC/BMC")
                else:
                    stack.pop()
            elif op in PAINTING and not stack:
                problems.append(f"01-003 page {index + 1}: {op} outside marked content")
        if stack:
            problems.append(f"page {index + 1}: marked content left open")

    # The tree: parents, standard types, nesting, headings, table headers and columns.
    headings: list[int] = []
    claimed: dict[tuple[int, int], Node] = {}

    def check(node: Node, parent: Node | None) -> None:
        if parent is not None and parent.obj is not None and node.obj.P.objgen != parent.obj.objgen:
            problems.append(f"{node.type}: /P is not its parent {parent.type}")
        mapped = node.type
        seen = set()
        while mapped not in STANDARD_TYPES and mapped in structure.role_map and mapped not in seen:
            seen.add(mapped)
            mapped = structure.role_map[mapped]
        if mapped not in STANDARD_TYPES:
            problems.append(f"02-001 /{node.type} is neither a standard type nor role-mapped to one")
        if mapped in PARENTS and (parent is None or parent.type not in PARENTS[mapped]):
            problems.append(f"09-004 {mapped} inside {parent.type if parent else 'nothing'}")
        if mapped in CHILDREN:
            wrong = [child.type for child in node.children if child.type not in CHILDREN[mapped]]
            if wrong:
                problems.append(f"09-004 {mapped} holds {', '.join(wrong)}")
        if mapped in ("H1", "H2", "H3", "H4", "H5", "H6"):
            headings.append(int(mapped[1]))
        if mapped == "TH" and node.attribute("/Scope") is None and node.obj.get("/Headers") is None:
            problems.append(f"15-003 TH {node.content} has no /Scope")
        if mapped == "Table":
            widths = {
                sum(int(cell.attribute("/ColSpan") or 1) for cell in row.children)
                for row in node.walk()
                if row.type == "TR"
            }
            if len(widths) > 1:
                problems.append(f"15-003 the rows of a table span different numbers of columns: {widths}")
            if not node.find("TH"):
                problems.append("15-003 a table without header cells")
        if mapped in ("P", "H1", "H2", "TH", "TD", "Lbl", "LBody", "Figure") and not node.content:
            problems.append(f"{mapped}: an element without content")
        for item in node.content:
            if item in claimed:
                problems.append(f"page {item[0] + 1} MCID {item[1]} belongs to two elements")
            claimed[item] = node
        for child in node.children:
            check(child, node)

    check(root, None)
    if headings and headings[0] != 1:
        problems.append(f"14-002 the first heading is H{headings[0]}")
    for before, after in itertools.pairwise(headings):
        if after > before + 1:
            problems.append(f"14-003 H{before} followed by H{after}")

    # ParentTree: each page's entry lists, at each MCID's index, the element that holds it.
    nums = _number_tree(pdf.Root.StructTreeRoot.ParentTree)
    for index, page in enumerate(structure.pages):
        mcids = drawn.get(index, [])
        if len(set(mcids)) != len(mcids):
            problems.append(f"page {index + 1}: an MCID used twice")
        if not mcids:
            continue
        if "/StructParents" not in page.obj:
            problems.append(f"page {index + 1}: tagged content but no /StructParents")
            continue
        entry = nums.get(int(page.obj.StructParents))
        for mcid in mcids:
            owner = claimed.get((index, mcid))
            if owner is None:
                problems.append(f"page {index + 1} MCID {mcid}: in no structure element")
            elif entry is None or mcid >= len(entry) or entry[mcid].objgen != owner.obj.objgen:
                problems.append(f"page {index + 1} MCID {mcid}: the ParentTree names another element")
    for page, mcid in claimed:
        if mcid not in drawn.get(page, []):
            problems.append(f"page {page + 1} MCID {mcid}: in the tree but not on the page")

    # 31-001, 31-009, 31-027: fonts embedded, with ToUnicode.
    for index, page in enumerate(structure.pages):
        fonts = page.obj.Resources.get("/Font", pikepdf.Dictionary())
        for name, font in fonts.items():
            descendants = font.get("/DescendantFonts")
            descriptor = (descendants[0] if descendants else font).get("/FontDescriptor")
            if descriptor is None or not any(
                k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")
            ):
                problems.append(f"31-001 page {index + 1}: font {name} is not embedded")
            if "/ToUnicode" not in font:
                problems.append(f"31-009 page {index + 1}: font {name} has no ToUnicode map")
    return problems


def _depth(node: Node) -> int:
    return 1 + max((_depth(child) for child in node.children), default=0)


def _number_tree(node) -> dict[int, pikepdf.Array]:
    out = {}
    if "/Nums" in node:
        nums = node.Nums
        for i in range(0, len(nums), 2):
            out[int(nums[i])] = nums[i + 1]
    for kid in node.get("/Kids", []):
        out.update(_number_tree(kid))
    return out


def pdfua_findings(data: bytes) -> list[str]:
    """The `pdfua` checker's findings, one line each (it reads a file)."""
    with tempfile.NamedTemporaryFile(suffix=".pdf") as handle:
        handle.write(data)
        handle.flush()
        report = validate(handle.name)
    skipped = [f"{o.rule_id} skipped: {o.skipped_reason}" for o in report.outcomes if o.skipped_reason]
    return skipped + [f"{f.rule_id} {f.severity.name}: {f.message}" for f in report.findings]


def main(argv: list[str] | None = None) -> int:
    from pdfua import coverage

    from include.dijlepost.waves import ALL_LETTER_TYPES, LANGUAGES

    from .letters import make_letter, renderer
    from .test_lines import long_invoice

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--outline", nargs=2, metavar=("TYPE", "LANGUAGE"), help="print one letter's tree")
    parser.add_argument("--lines", type=int, default=0, help="itemised lines on the invoice (--outline)")
    parser.add_argument("--write", type=Path, help="also write the letter's PDF here (--outline)")
    args = parser.parse_args(argv)
    if args.outline:
        letter_type, language = args.outline
        letter = make_letter(letter_type, language)
        if args.lines:
            letter = long_invoice(args.lines, language)
        data = renderer().render(letter).pdf
        if args.write:
            args.write.write_bytes(data)
        print(outline(data))
        return 0
    failed = 0
    print(f"pdfua {__import__('pdfua').__version__}: {coverage().summary()}")
    letters = [
        (letter_type, language, make_letter(letter_type, language))
        for letter_type in sorted(ALL_LETTER_TYPES)
        for language in LANGUAGES
    ]
    letters += [("invoice, 50 lines", language, long_invoice(50, language)) for language in LANGUAGES]
    for letter_type, language, letter in letters:
        rendered = renderer().render(letter)
        findings = pdfua_findings(rendered.pdf)
        own = matterhorn_problems(rendered.pdf)
        failed += bool(findings or own)
        tree = read_structure(rendered.pdf, texts=False).root
        print(
            f"{letter_type:<18} {language}  {rendered.pages}p  {len(list(tree.walk())):>3} elements, "
            f"depth {_depth(tree)}  pdfua: {len(findings) or 'no'} findings  "
            f"matterhorn: {len(own) or 'no'} problems  {'; '.join(findings + own)}".rstrip()
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
