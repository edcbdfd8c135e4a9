"""The EPC QR code scanned from the rendered page (pypdfium2 renders it, zxing-cpp decodes it) at the
edges of what a letter may ask: a cent, the EPC maximum, amounts whose float would round wrongly."""

from decimal import Decimal

import pypdfium2
import pytest
import zxingcpp

from .letters import make_letter, renderer, with_payload

DPI = 150


def _scan(pdf: bytes) -> list[str]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        found = []
        for page in document:
            image = page.render(scale=DPI / 72).to_pil()
            found += [
                code.text
                for code in zxingcpp.read_barcodes(image)
                if code.format == zxingcpp.BarcodeFormat.QRCode
            ]
        return found
    finally:
        document.close()


@pytest.mark.parametrize("amount", ["0.01", "0.29", "1234.56", "999999999.99"])
def test_the_scanned_amount_is_exactly_the_letters_amount(amount):
    letter = with_payload(make_letter("invoice", "de"), amount_due=amount, ogm="+++010/8068/17183+++")
    (text,) = _scan(renderer().render(letter).pdf)
    lines = text.split("\n")
    assert lines[:7] == ["BCD", "002", "1", "SCT", "", "Stad Mechelen", "BE68539007547034"]
    assert lines[7] == f"EUR{Decimal(amount):.2f}"
    assert lines[8:] == ["", "010806817183"]


FOREIGN = {"street": "Kerkstraat 12", "postal_code": "4811 ZX", "city": "Breda", "country": "NL"}


@pytest.mark.parametrize(
    "country, postal_code",
    [("NL", "4811 ZX"), ("DE", "40212"), ("FR", "75001"), ("MA", "20250"), ("TR", "34430")],
)
def test_what_a_bank_abroad_reads_from_the_structured_reference(country, postal_code):
    """For a letter abroad, the QR code's structured-reference element (line 10 of EPC069-12) holds the
    structured communication as its 12 digits, without +++ or slashes and without an RF prefix, exactly
    as for a letter in Belgium; the unstructured element (line 11) is absent. docs/rendering.md says
    what a bank abroad does with it."""
    ogm = "+++010/8068/17183+++"
    home = with_payload(make_letter("reminder", "fr"), ogm=ogm)
    abroad = {
        **home,
        "street": "Rue de Rivoli 1",
        "postal_code": postal_code,
        "city": "Paris",
        "country": country,
    }
    (at_home,) = _scan(renderer().render(home).pdf)
    (from_abroad,) = _scan(renderer().render(abroad).pdf)
    lines = from_abroad.split("\n")
    assert len(lines) == 10 and lines[9] == "010806817183"
    assert lines[9].isdigit() and int(lines[9][:10]) % 97 == int(lines[9][10:])
    # The demo account's bank code is assigned to no bank: there is no BIC to add for abroad.
    assert from_abroad == at_home


def test_a_letter_abroad_carries_the_bic_of_the_citys_bank(tmp_path):
    """With a real account (a Belfius IBAN here) and no BIC configured, a letter abroad prints the BIC
    python-stdnum derives from the IBAN and puts it in the QR code: a payer outside the SEPA area needs
    it. A letter in Belgium does without."""
    import shutil

    import yaml

    from include.dijlepost.rendering import LetterRenderer
    from include.dijlepost.settings import TEMPLATES_DIR

    from .letters import TODAY
    from .pdfread import read_pdf

    for path in TEMPLATES_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "fonts").symlink_to(TEMPLATES_DIR / "fonts")
    common = yaml.safe_load((tmp_path / "common.yaml").read_text(encoding="utf-8"))
    account = common["sender"]["payment_account"]
    account["iban"] = "BE71 0961 2345 6769"
    del account["demo"]
    (tmp_path / "common.yaml").write_text(yaml.safe_dump(common, allow_unicode=True), encoding="utf-8")
    real = LetterRenderer(tmp_path, today=TODAY)
    home = make_letter("invoice", "nl")
    abroad = {**home, **FOREIGN}
    (scanned,) = _scan(real.render(abroad).pdf)
    assert scanned.split("\n")[4:7] == ["GKCCBEBB", "Stad Mechelen", "BE71096123456769"]
    assert "GKCCBEBB" in read_pdf(real.render(abroad).pdf).text
    (scanned,) = _scan(real.render(home).pdf)
    assert scanned.split("\n")[4] == ""
    assert "GKCCBEBB" not in read_pdf(real.render(home).pdf).text
