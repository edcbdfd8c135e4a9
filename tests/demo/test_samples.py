"""The review samples: every template in every language to PDF and PNG, read back as a reviewer (and a
banking app) would: text extracted with pypdf, the QR code decoded from the PNG page with zxing-cpp."""

import re
import shutil
from decimal import Decimal

import pytest
import zxingcpp
from PIL import Image
from pypdf import PdfReader
from schwifty import IBAN
from stdnum.be import ogm_vcs

from demo import samples
from include.dijlepost.rendering.templates import load_templates
from include.dijlepost.settings import TEMPLATES_DIR
from include.dijlepost.waves import ALL_LETTER_TYPES, LANGUAGES
from tests.include.dijlepost.rendering.letters import TODAY
from tests.support.tools import require_tool

TEMPLATES = load_templates(TEMPLATES_DIR)
PAYMENT_TYPES = {name for name, template in TEMPLATES.templates.items() if template.payment}
A4_PIXELS = (210 / 25.4 * samples.DPI, 297 / 25.4 * samples.DPI)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    require_tool("pdftoppm", "poppler-utils")
    out = tmp_path_factory.mktemp("samples")
    return out, samples.render_samples(out, TODAY)


def _words(text: str) -> str:
    """Whitespace-insensitive text (pypdf breaks lines where the layout wrapped them)."""
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ").replace("\u202f", " ")).strip()


def test_one_sample_per_template_and_language_with_a_png_per_page(rendered):
    out, made = rendered
    assert {"invoice", "reminder", "tax_assessment", "gas_decision"} == PAYMENT_TYPES
    assert sorted((s.letter["letter_type"], s.letter["language"]) for s in made) == sorted(
        (t, lang) for t in ALL_LETTER_TYPES for lang in LANGUAGES
    )
    for sample in made:
        assert sample.pdf.read_bytes() == sample.rendered.pdf
        assert len(sample.pngs) == sample.rendered.pages == len(PdfReader(sample.pdf).pages)
        for png in sample.pngs:
            with Image.open(png) as image:
                assert image.format == "PNG"
                assert image.size[0] == pytest.approx(A4_PIXELS[0], abs=2)
                assert image.size[1] == pytest.approx(A4_PIXELS[1], abs=2)
                # Not a blank page: a letter has plenty of dark pixels.
                assert sum(image.convert("L").histogram()[:128]) > 5000
    index = (out / "index.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[0] for line in index] == [s.pdf.name for s in made]


def test_the_text_of_each_sample_reads_back_with_pypdf(rendered):
    _, made = rendered
    for sample in made:
        reader = PdfReader(sample.pdf)
        pages = [_words(page.extract_text()) for page in reader.pages]
        text = " ".join(pages)
        letter = sample.letter
        assert _words(sample.rendered.subject) in text
        assert letter["recipient_name"] in pages[0]
        assert letter["letter_id"] in text
        assert reader.metadata.title == sample.rendered.subject
        for number, page in enumerate(pages, start=1):
            assert f"{number}/{len(pages)}" in page


def test_the_qr_code_of_each_payment_letter_scans_to_its_epc_transfer(rendered):
    """Every EPC069-12 element, decoded from the page image as a banking app would see it."""
    _, made = rendered
    sender = TEMPLATES.sender
    for sample in made:
        codes = [code for png in sample.pngs for code in zxingcpp.read_barcodes(Image.open(png))]
        if sample.letter["letter_type"] not in PAYMENT_TYPES:
            assert codes == [], sample.pdf.name
            continue
        assert len(codes) == 1 and codes[0].format == zxingcpp.BarcodeFormat.QRCode, sample.pdf.name
        lines = codes[0].text.split("\n")
        payload = sample.letter["payload"]
        ogm = re.sub(r"\D", "", payload["ogm"])
        assert lines == [
            "BCD",  # service tag
            "002",  # version
            "1",  # UTF-8
            "SCT",  # SEPA credit transfer
            sender.bic,  # BIC (optional, empty in the demo)
            sender.account_name,  # beneficiary
            sender.iban.compact,  # IBAN
            f"EUR{Decimal(payload['amount_due']):.2f}",  # amount, exact
            "",  # purpose
            ogm,  # structured reference
        ], sample.pdf.name
        assert lines[5] == "Stad Mechelen"
        IBAN(lines[6])  # raises unless valid
        assert ogm_vcs.is_valid(lines[9])
        # And the same amount and communication are printed for a reader to type in.
        text = _words(" ".join(page.extract_text() for page in PdfReader(sample.pdf).pages))
        assert f"+++{ogm[:3]}/{ogm[3:7]}/{ogm[7:]}+++" in text


def test_a_template_mistake_is_reported_and_nothing_is_written(tmp_path, capsys):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, templates)
    invoice = templates / "invoice.yaml"
    invoice.write_text(
        invoice.read_text(encoding="utf-8").replace("{invoice_number}", "{invoice_nummer}", 1),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert samples.main(["--out", str(out), "--templates", str(templates), "--no-png"]) == 2
    error = capsys.readouterr().err
    assert "template 'invoice'" in error and "invoice_nummer" in error
    assert not out.exists()


def test_the_command_writes_the_same_letters_again(rendered, tmp_path, capsys):
    _, made = rendered
    assert samples.main(["--out", str(tmp_path), "--date", TODAY.isoformat(), "--no-png"]) == 0
    assert "21 samples" in capsys.readouterr().out
    for sample in made:
        assert (tmp_path / sample.pdf.name).read_bytes() == sample.rendered.pdf
    assert not list(tmp_path.glob("*.png"))
