"""What a letter that asks for money carries so the bank transfer matches itself: the Belgian
structured communication (OGM/VCS) and the EPC QR code that banking apps scan.

The EPC QR code follows EPC069-12 ("Quick Response Code: Guidelines to Enable Data Capture for the
Initiation of a SEPA Credit Transfer"), version 002 (BIC optional within the EEA), character set 1
(UTF-8). Belgian banking apps read the 12 digits of a structured communication from the structured
remittance field and fill in the +++ddd/dddd/ddddd+++ communication.
"""

from __future__ import annotations

from decimal import Decimal

import segno
from segno import consts, encoder
from stdnum.be import ogm_vcs

from .errors import LetterDataError

EPC_MAX_BYTES = 331  # EPC069-12: the whole payload
EPC_MAX_VERSION = 13  # EPC069-12: largest QR code version a scanner must read
EPC_MAX_NAME = 70
EPC_MIN_AMOUNT = Decimal("0.01")
EPC_MAX_AMOUNT = Decimal("999999999.99")
QR_MASK = 6


def make_ogm(number: int) -> str:
    """The 12-digit structured communication for a 10-digit base number (check digits = base mod 97,
    97 when that is 0)."""
    if not 0 < number < 10**10:
        raise ValueError("the base of a structured communication is 1 to 10 digits")
    base = f"{number:010d}"
    return base + ogm_vcs.calc_check_digits(base)


def epc_payload(*, name: str, iban: str, amount: Decimal, reference: str, bic: str | None = None) -> str:
    """The EPC069-12 payload: one element per line, empty lines for absent optional elements, nothing
    after the last element used (the structured reference)."""
    if not isinstance(amount, Decimal) or not EPC_MIN_AMOUNT <= amount <= EPC_MAX_AMOUNT:
        raise LetterDataError(f"the amount to pay must be between {EPC_MIN_AMOUNT} and {EPC_MAX_AMOUNT} EUR")
    if not 0 < len(name) <= EPC_MAX_NAME:
        raise LetterDataError(f"the beneficiary name must be 1 to {EPC_MAX_NAME} characters")
    lines = [
        "BCD",  # service tag
        "002",  # version
        "1",  # character set: UTF-8
        "SCT",  # SEPA credit transfer
        bic or "",
        name,
        iban.replace(" ", ""),
        f"EUR{amount:.2f}",
        "",  # purpose code: none
        reference,  # structured remittance information
    ]
    payload = "\n".join(lines)
    if len(payload.encode("utf-8")) > EPC_MAX_BYTES:
        raise LetterDataError(f"the EPC QR payload is longer than {EPC_MAX_BYTES} bytes")
    return payload


def epc_qr_version(payload: str) -> int:
    """The version of the QR code `epc_qr_matrix` builds for the payload, found the way segno finds it
    (the smallest version whose capacity at level M holds the encoded payload) without building the
    code: validating a letter needs only this, and building the matrix is most of a letter's checking
    time. A test holds it equal to the built code's version over many payloads."""
    segments = encoder.prepare_data(payload.encode("utf-8"), None, None)
    return int(encoder.find_version(segments, consts.ERROR_LEVEL_M, eci=False, micro=False))


def check_epc_qr_fits(payload: str, version: int | None = None) -> None:
    """Raise `LetterDataError` if the payload's QR code is larger than a scanner must read."""
    version = epc_qr_version(payload) if version is None else version
    if version > EPC_MAX_VERSION:
        raise LetterDataError(f"the EPC QR code needs version {version}, above the maximum {EPC_MAX_VERSION}")


def epc_qr_matrix(payload: str) -> tuple[tuple[bool, ...], ...]:
    """The QR code's modules (True = dark), without quiet zone; error correction level M as EPC069-12
    requires (not boosted, which would change the level).

    The data mask is fixed (ISO/IEC 18004 allows any of the eight; the reader takes it from the format
    information) instead of segno scoring all eight, which was 80% of the encoding time. Mask 6 is the
    one segno's own scoring chose for 56% of 400 random payloads to the city's account (mask 4 for
    most others); tests decode the rendered codes."""
    return tuple(tuple(module != 0 for module in row) for row in epc_qr_rows(payload))


def epc_qr_rows(payload: str) -> tuple[bytes, ...]:
    """The modules of `epc_qr_matrix` as one bytes object per row (0 = light), as drawing reads them."""
    qr = segno.make_qr(payload.encode("utf-8"), error="m", boost_error=False, mask=QR_MASK)
    check_epc_qr_fits(payload, int(qr.version))  # segno types a version as int or, for Micro QR, str
    return tuple(bytes(row) for row in qr.matrix)
