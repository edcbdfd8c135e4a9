"""Structured communication check digits and the EPC069-12 QR payload."""

import random
from decimal import Decimal
from itertools import chain, zip_longest

import numpy as np
import pytest
import segno
from segno import consts, encoder

from include.dijlepost.rendering import LetterDataError
from include.dijlepost.rendering.payment import (
    EPC_MAX_VERSION,
    QR_MASK,
    _Codewords,
    _encoded,
    _message_plan,
    check_epc_qr_fits,
    epc_payload,
    epc_qr_matrix,
    epc_qr_modules,
    epc_qr_version,
    make_ogm,
)


@pytest.mark.parametrize(
    "base, expected",
    [
        (108068171, "010806817183"),  # python-stdnum's documented example
        (1, "000000000101"),
        (97, "000000009797"),  # base divisible by 97: the check digits are 97, never 00
        (9999999999, "999999999948"),
    ],
)
def test_structured_communication_check_digits_are_base_mod_97(base, expected):
    assert make_ogm(base) == expected
    assert int(expected[-2:]) == (int(expected[:10]) % 97 or 97)


def test_structured_communication_base_is_ten_digits_at_most():
    for base in (0, 10**10):
        with pytest.raises(ValueError):
            make_ogm(base)


def test_epc_payload_is_exactly_as_epc069_12_lays_it_out():
    payload = epc_payload(
        name="Stad Mechelen", iban="BE68 5390 0754 7034", amount=Decimal("125.50"), reference="010806817183"
    )
    assert payload == (
        "BCD\n"  # service tag
        "002\n"  # version 2: BIC optional
        "1\n"  # UTF-8
        "SCT\n"  # SEPA credit transfer
        "\n"  # no BIC
        "Stad Mechelen\n"
        "BE68539007547034\n"
        "EUR125.50\n"
        "\n"  # no purpose code
        "010806817183"  # structured reference, and nothing after the last element used
    )


def test_epc_payload_with_bic_and_whole_euros():
    payload = epc_payload(
        name="Stad Mechelen",
        iban="BE68539007547034",
        amount=Decimal("80"),
        reference="010806817183",
        bic="GKCCBEBB",
    )
    assert payload.split("\n") == [
        "BCD",
        "002",
        "1",
        "SCT",
        "GKCCBEBB",
        "Stad Mechelen",
        "BE68539007547034",
        "EUR80.00",
        "",
        "010806817183",
    ]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"amount": Decimal("0.00")}, "between 0.01 and 999999999.99"),
        ({"amount": Decimal("1000000000.00")}, "between 0.01 and 999999999.99"),
        ({"amount": 12.5}, "between 0.01 and 999999999.99"),
        ({"name": "x" * 71}, "1 to 70 characters"),
    ],
)
def test_epc_payload_limits(kwargs, words):
    args = {
        "name": "Stad Mechelen",
        "iban": "BE68539007547034",
        "amount": Decimal("1.00"),
        "reference": "010806817183",
        **kwargs,
    }
    with pytest.raises(LetterDataError, match=words):
        epc_payload(**args)


def _format_bits(matrix) -> int:
    """The 15 format bits next to the top-left finder pattern, unmasked (ISO/IEC 18004, 7.9)."""
    positions = [(8, col) for col in (0, 1, 2, 3, 4, 5, 7, 8)] + [(row, 8) for row in (7, 5, 4, 3, 2, 1, 0)]
    bits = 0
    for row, col in positions:
        bits = (bits << 1) | int(matrix[row][col])
    return bits ^ 0b101010000010010


def test_epc_qr_code_uses_error_correction_level_m_and_at_most_version_13():
    payload = epc_payload(
        name="Stad Mechelen",
        iban="BE68539007547034",
        amount=Decimal("999999999.99"),
        reference="999999999948",
    )
    matrix = epc_qr_matrix(payload)
    version = (len(matrix) - 17) // 4
    assert 1 <= version <= 13
    assert _format_bits(matrix) >> 13 == 0b00  # 00 is level M
    assert (_format_bits(matrix) >> 10) & 0b111 == QR_MASK
    assert matrix == tuple(
        tuple(bool(m) for m in row)
        for row in segno.make_qr(payload.encode(), error="m", boost_error=False, mask=QR_MASK).matrix
    )


def _random_payload(rng: random.Random) -> str:
    """An EPC payload of random length and content: names of 1 to 70 characters, some outside ASCII
    (two bytes each in UTF-8), amounts of every size, with and without a BIC."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -.&'" + "éèëçàüößÉØæœ"
    name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 70))).strip() or "X"
    amount = Decimal(rng.randint(1, 99999999999)) / 100
    return epc_payload(
        name=name,
        iban="BE68539007547034",
        amount=amount,
        reference=make_ogm(rng.randint(1, 10**10 - 1)),
        bic=rng.choice([None, "GKCCBEBB", "KREDBEBB"]),
    )


def test_the_version_validation_checks_is_the_version_of_the_code_drawn():
    """Validation finds the QR code's version without building it; over many payloads of every size it
    is the version of the code the renderer builds (and segno's own)."""
    rng = random.Random(29)
    seen = set()
    for _ in range(600):
        payload = _random_payload(rng)
        matrix = epc_qr_matrix(payload)
        built = (len(matrix) - 17) // 4
        assert epc_qr_version(payload) == built
        assert built == segno.make_qr(payload.encode(), error="m", boost_error=False).version
        seen.add(built)
    assert len(seen) >= 4  # the payloads cover several versions, not one


def test_a_payload_too_large_for_the_maximum_version_is_refused_without_building_the_code():
    payload = "BCD\n002\n1\nSCT\n\n" + "x" * 400
    assert epc_qr_version(payload) > EPC_MAX_VERSION
    with pytest.raises(LetterDataError, match=f"above the maximum {EPC_MAX_VERSION}"):
        check_epc_qr_fits(payload)
    with pytest.raises(LetterDataError, match=f"above the maximum {EPC_MAX_VERSION}"):
        epc_qr_matrix(payload)


def test_the_code_placed_from_the_blank_code_is_segnos_module_for_module():
    """epc_qr_modules encodes with segno and places the message on a blank code built once per version:
    every version up to the EPC maximum, with plain and multi-byte text, gives segno's own code."""
    rng = random.Random(2026)
    versions = set()
    for length in range(1, 332, 3):
        text = "".join(rng.choice("AZaz09 -+/\né") for _ in range(length))
        data = text.encode()[:length].decode(errors="ignore")
        if epc_qr_version(data) > EPC_MAX_VERSION:
            continue
        code = segno.make_qr(data.encode(), error="m", boost_error=False, mask=QR_MASK)
        versions.add(code.version)
        assert epc_qr_modules(data).tolist() == [list(row) for row in code.matrix], (length, code.version)
    assert versions == set(range(1, EPC_MAX_VERSION + 1))


@pytest.mark.parametrize("version", range(1, EPC_MAX_VERSION + 1))
def test_the_error_correction_table_gives_segnos_reed_solomon_codewords(version):
    """The message's error correction comes from a table of each data codeword's contribution: for
    random data (every byte value at every place, over the rounds), it is segno's `make_blocks`,
    block for block, interleaved as segno interleaves them."""
    blocks = consts.ECC[version][consts.ERROR_LEVEL_M]
    data_codewords = sum(block.num_blocks * block.num_data for block in blocks)
    rng = np.random.default_rng(version)
    for _ in range(20):
        codewords = rng.integers(0, 256, data_codewords + 1, dtype=np.uint8)  # one more, left out
        data, errors = encoder.make_blocks(blocks, _Codewords(codewords.tobytes()))
        expected = bytes(
            codeword
            for group in (data, errors)
            for codeword in chain.from_iterable(zip_longest(*group))
            if codeword is not None
        )
        assert _message_plan(version).message(codewords).tobytes() == expected


def test_the_payloads_segments_are_segnos():
    """Byte-mode payloads get their segment built here; others (not an EPC payload, but a caller may
    pass one) go through segno. Either way the segments, and so the version, are segno's own."""
    rng = random.Random(7)
    payloads = ["12345", "ABC 123", "BCD\n002\n1\nSCT\n\nStad Mechelen\nBE68539007547034\nEUR1.00"]
    payloads += [
        "".join(rng.choice("AZaz09 -+/\né€") for _ in range(rng.randrange(1, 200))) for _ in range(50)
    ]
    for payload in payloads:
        segments, version = _encoded(payload)
        expected = encoder.prepare_data(payload.encode("utf-8"), None, None)
        assert [tuple(segment) for segment in segments] == [tuple(segment) for segment in expected], payload
        assert version == encoder.find_version(expected, consts.ERROR_LEVEL_M, eci=False, micro=False)
