"""National register numbers, KBO numbers and keyed pseudonyms (`include.dijlepost.recipients`)."""

from __future__ import annotations

import re

import pytest
from stdnum.be import nn, vat

from include.dijlepost.recipients import (
    CITIZEN,
    ENTERPRISE,
    InvalidRecipientId,
    normalize_recipient_id,
    pseudonym,
)


def make_nrn(yymmdd: str, serial: int, born_2000_or_later: bool = False) -> str:
    """Rijksregisternummer: YYMMDD + 3-digit serial + 97 - (number mod 97), with a '2' prefixed for 2000+."""
    base = f"{yymmdd}{serial:03d}"
    n = int(("2" if born_2000_or_later else "") + base)
    return f"{base}{97 - n % 97:02d}"


def make_kbo(first8: str) -> str:
    """KBO enterprise number: 8 digits (starting 0 or 1) + 97 - (those digits mod 97)."""
    return f"{first8}{97 - int(first8) % 97:02d}"


VALID_NRNS = [
    make_nrn("850730", 33),
    make_nrn("720101", 998),
    make_nrn("591231", 1),
    make_nrn("050615", 120, born_2000_or_later=True),
    make_nrn("101010", 2, born_2000_or_later=True),
]
VALID_KBOS = [make_kbo("04035784"), make_kbo("02071234"), make_kbo("08810039"), make_kbo("10000001")]


def test_generated_numbers_are_valid_for_stdnum():
    assert all(nn.is_valid(x) for x in VALID_NRNS)
    assert all(vat.is_valid(x) for x in VALID_KBOS)


@pytest.mark.parametrize("nrn", VALID_NRNS)
def test_valid_national_register_numbers_are_accepted_compact(nrn):
    assert normalize_recipient_id(CITIZEN, nrn) == nrn
    formatted = f"{nrn[:2]}.{nrn[2:4]}.{nrn[4:6]}-{nrn[6:9]}.{nrn[9:]}"
    assert normalize_recipient_id(CITIZEN, formatted) == nrn
    assert normalize_recipient_id(CITIZEN, f"  {nrn} ") == nrn


@pytest.mark.parametrize("kbo", VALID_KBOS)
def test_valid_kbo_numbers_are_accepted_compact(kbo):
    assert normalize_recipient_id(ENTERPRISE, kbo) == kbo
    assert normalize_recipient_id(ENTERPRISE, f"BE{kbo}") == kbo
    assert normalize_recipient_id(ENTERPRISE, f"{kbo[:4]}.{kbo[4:7]}.{kbo[7:]}") == kbo


def _wrong_check(number: str) -> str:
    return number[:-2] + f"{(int(number[-2:]) % 97) + 1:02d}"


BAD_NRNS = [
    _wrong_check(VALID_NRNS[0]),
    _wrong_check(VALID_NRNS[3]),
    VALID_NRNS[0][:-1],
    VALID_NRNS[0] + "1",
    "8507300332A",
    make_nrn("851330", 33),
    "00000000000",
    "",
    "abc",
]
BAD_KBOS = [
    _wrong_check(VALID_KBOS[0]),
    VALID_KBOS[0] + "1",
    make_kbo("24035784"),
    "BE12345",
    "04035784xx",
    "",
]


@pytest.mark.parametrize("value", BAD_NRNS)
def test_invalid_national_register_numbers_are_refused_without_echoing_them(value):
    with pytest.raises(InvalidRecipientId) as info:
        normalize_recipient_id(CITIZEN, value)
    message = str(info.value)
    assert "national register or BIS number" in message
    if value.strip():
        assert value not in message
        assert value[:6] not in message  # not even the birth date part


@pytest.mark.parametrize("value", BAD_KBOS)
def test_invalid_kbo_numbers_are_refused_without_echoing_them(value):
    with pytest.raises(InvalidRecipientId) as info:
        normalize_recipient_id(ENTERPRISE, value)
    message = str(info.value)
    assert "KBO" in message
    if value:
        assert value not in message


def test_a_kbo_number_is_not_a_national_register_number_and_vice_versa():
    with pytest.raises(InvalidRecipientId):
        normalize_recipient_id(CITIZEN, VALID_KBOS[0])
    with pytest.raises(InvalidRecipientId):
        normalize_recipient_id(ENTERPRISE, VALID_NRNS[0])


def test_unknown_kind_is_refused():
    with pytest.raises(InvalidRecipientId, match="unknown recipient kind"):
        normalize_recipient_id("person", VALID_NRNS[0])


def test_invalid_recipient_id_is_a_value_error():
    assert issubclass(InvalidRecipientId, ValueError)


KEY = b"k" * 32


def test_pseudonym_is_stable_and_shaped():
    a = pseudonym(KEY, CITIZEN, VALID_NRNS[0])
    assert a == pseudonym(bytes(KEY), CITIZEN, str(VALID_NRNS[0]))
    assert re.fullmatch(r"r-[0-9a-f]{20}", a)


def test_pseudonym_depends_on_the_key_the_kind_and_the_id():
    base = pseudonym(KEY, CITIZEN, VALID_NRNS[0])
    assert pseudonym(b"another key of 32 bytes........!", CITIZEN, VALID_NRNS[0]) != base
    assert pseudonym(KEY, ENTERPRISE, VALID_NRNS[0]) != base
    assert pseudonym(KEY, CITIZEN, VALID_NRNS[1]) != base


def test_pseudonyms_do_not_collide_for_many_recipients():
    ids = [make_nrn(f"{y:02d}0101", s) for y in range(40, 100) for s in range(1, 40)]
    assert len({pseudonym(KEY, CITIZEN, i) for i in ids}) == len(set(ids))


@pytest.mark.parametrize("rid", VALID_NRNS + VALID_KBOS)
def test_pseudonym_does_not_contain_the_id(rid):
    p = pseudonym(KEY, CITIZEN, rid)
    assert rid not in p
    assert rid not in re.sub(r"\D", "", p)  # not even hidden between the hex letters


def test_bis_numbers_are_accepted_for_citizens():
    from stdnum.be import bis

    # A BIS number: month + 40 (gender known), valid checksum, for someone not in the national register.
    base = "854730033"  # born 30 July 1985; month 07 + 40 marks a BIS number
    value = base + f"{97 - int(base) % 97:02d}"
    assert bis.is_valid(value)
    assert normalize_recipient_id("citizen", value) == value


@pytest.mark.parametrize("value", [85073003328, None, ["85073003328"], b"85073003328"])
def test_an_id_that_is_not_text_is_refused_not_converted(value):
    with pytest.raises(InvalidRecipientId, match="^must be text"):
        normalize_recipient_id(CITIZEN, value)


def test_an_absurdly_long_id_is_refused_before_any_parsing():
    with pytest.raises(InvalidRecipientId, match="^longer than 32 characters$"):
        normalize_recipient_id(ENTERPRISE, "0" * 10_000_000)
