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
            found += [code.text for code in zxingcpp.read_barcodes(image)
                      if code.format == zxingcpp.BarcodeFormat.QRCode]
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
