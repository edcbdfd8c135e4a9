"""The print house's file formats, read strictly: anything off is refused with a clear error."""

from __future__ import annotations

import pytest

from include.dijlepost.printhouse.acks import (
    AckRow,
    PrintHouseFileError,
    kind_of,
    parse_ack,
    parse_returns,
)

ACK = "finance-non_prior-0123456789abcdef.ack.csv"


def test_kind_of_names():
    assert kind_of(ACK) == "ack"
    assert kind_of("returned-2026-03-02.csv") == "returns"
    for other in (
        "finance-non_prior-0123456789abcdef.csv",
        "notes.txt",
        "returned-.csv",
        "FINANCE-non_prior-0123456789abcdef.ack.csv",
        "finance-express-0123456789abcdef.ack.csv",
    ):
        assert kind_of(other) == "unknown", other


def test_parse_ack():
    data = (
        b'letter_id,result,reason\r\nA-1,accepted,\r\nA-2,rejected,"address too long, line 2"\r\n'
        b"A-3, accepted ,\r\n"
    )
    assert parse_ack(ACK, data) == [
        AckRow("A-1", "accepted", ""),
        AckRow("A-2", "rejected", "address too long, line 2"),
        AckRow("A-3", "accepted", ""),
    ]
    # A UTF-8 byte order mark (spreadsheet exports) is tolerated.
    assert parse_ack(ACK, b"\xef\xbb\xbfletter_id,result,reason\nA-1,accepted,\n")[0].letter_id == "A-1"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file"),
        (b"letter,result,reason\nA-1,accepted,\n", "header is"),
        (b"letter_id,result,reason\n", "no letters"),
        (b"letter_id,result,reason\nA-1,accepted\n", "line 2 has 2 fields"),
        (b"letter_id,result,reason\nA-1,printed,\n", "result 'printed'"),
        (b"letter_id,result,reason\nA-1,rejected,\n", "needs a reason"),
        (b"letter_id,result,reason\nA-1,accepted,but why\n", "accepted letter has no reason"),
        (b"letter_id,result,reason\nA-1,accepted,\nA-1,accepted,\n", "more than once: A-1"),
        (b"letter_id,result,reason\n../etc/passwd,accepted,\n", "not a letter id"),
        (b"letter_id,result,reason\nA-1,accepted,\n\xff\xfe", "not UTF-8"),
        (b'letter_id,result,reason\nA-1,accepted,"unterminated\n', "not valid CSV"),
        (b"PK\x03\x04\x00\x00binary", "NUL"),
    ],
)
def test_corrupt_ack_is_refused_with_a_clear_error(data, message):
    with pytest.raises(PrintHouseFileError, match=message) as exc:
        parse_ack(ACK, data)
    assert ACK in str(exc.value)


def test_parse_returns():
    data = b"letter_id,reason\nA-1,unknown_address\nA-2,refused\n"
    assert parse_returns("returned-x.csv", data) == [("A-1", "unknown_address"), ("A-2", "refused")]
    with pytest.raises(PrintHouseFileError, match="return reason 'lost'"):
        parse_returns("returned-x.csv", b"letter_id,reason\nA-1,lost\n")
    with pytest.raises(PrintHouseFileError, match="header"):
        parse_returns("returned-x.csv", b"letter_id,result,reason\nA-1,accepted,\n")


def test_errors_never_quote_what_may_be_personal_data():
    address_list = b"Jan Peeters,Bruul 12,2800 Mechelen\nAn Claes,Grote Markt 1,2800 Mechelen\n"
    with pytest.raises(PrintHouseFileError) as exc:
        parse_ack(ACK, address_list)
    assert "Peeters" not in str(exc.value) and "Bruul" not in str(exc.value)
    with pytest.raises(PrintHouseFileError) as exc:
        parse_ack(ACK, b"letter_id,result,reason\nJan Peeters,accepted,\n")
    assert "Peeters" not in str(exc.value) and "line 2" in str(exc.value)
    with pytest.raises(PrintHouseFileError) as exc:
        parse_returns("returned-x.csv", b"letter_id,reason\nA-1,Bruul 12 unknown\n")
    assert "Bruul" not in str(exc.value)
