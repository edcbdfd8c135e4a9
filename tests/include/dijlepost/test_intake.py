"""Letters handed over by department systems (`include.dijlepost.intake`) against a real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import uuid
from pathlib import Path

import pytest

from demo.sample_payloads import sample_payload
from include.dijlepost import clock
from include.dijlepost.intake import FileRefused, RowError, import_file, import_rows, read_rows, validate_row
from include.dijlepost.outbox import RunContext
from tests.support.work import chunk_work

pytestmark = pytest.mark.integration


def make_nrn(yymmdd: str, serial: int) -> str:
    base = f"{yymmdd}{serial:03d}"
    return f"{base}{97 - int(base) % 97:02d}"


def make_kbo(first8: str) -> str:
    return f"{first8}{97 - int(first8) % 97:02d}"


NRN_A, NRN_B, NRN_C = make_nrn("850730", 33), make_nrn("640212", 415), make_nrn("911103", 77)
KBO = make_kbo("04035784")
BAD_NRN = NRN_A[:-2] + f"{int(NRN_A[-2:]) % 97 + 1:02d}"
NAMES = [
    "Janssens Jan",
    "Peeters An",
    "Maes BV",
    "Claes Lies",
    "Wouters Tom",
    "Mertens Eva",
    "Smet Bram",
    "Goossens Ria",
    "Willems Sofie",
    "Dubois Marc",
    "Lambert Ann",
    "Hermans Piet",
    "Jacobs Els",
]
STREETS = [f"Bruul {n}" for n in range(1, 20)]


def payload(letter_type: str = "invoice", i: int = 0) -> dict:
    """A payload the template of the letter type accepts (the renderer checks it at import)."""
    return sample_payload(letter_type, random.Random(f"{letter_type}-{i}"), clock.today())


def row(letter_id: str, i: int = 0, **overrides) -> dict:
    r = {
        "letter_id": letter_id,
        "department": "finance",
        "letter_type": "invoice",
        "recipient_kind": "citizen",
        "recipient_id": NRN_A,
        "recipient_name": NAMES[i % len(NAMES)],
        "street": STREETS[i % len(STREETS)],
        "postal_code": "2800",
        "city": "Mechelen",
        "language": "nl",
    }
    r.update(overrides)
    if "payload" not in r:
        r["payload"] = payload(r["letter_type"], i)
    return {k: v for k, v in r.items() if v is not ...}


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8"
    )
    return path


CSV_FIELDS = [
    "letter_id",
    "department",
    "letter_type",
    "recipient_kind",
    "recipient_id",
    "recipient_name",
    "street",
    "postal_code",
    "city",
    "country",
    "language",
    "registered",
    "payload",
]


def csv_line(r: dict) -> str:
    out = io.StringIO()
    values = {**r, "payload": json.dumps(r["payload"]) if "payload" in r else ""}
    if "registered" in values:
        values["registered"] = (
            "ja"
            if values["registered"] is True
            else ("nee" if values["registered"] is False else values["registered"])
        )
    csv.DictWriter(out, CSV_FIELDS, lineterminator="\n").writerow(values)
    return out.getvalue()


def letters(db) -> dict[str, dict]:
    cur = db.execute(
        "SELECT letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name, "
        "street, postal_code, city, country, language, registered, payload, status FROM letters"
    )
    names = [d[0] for d in cur.description]
    out = {r[0]: dict(zip(names, r)) for r in cur.fetchall()}
    db.commit()
    return out


def accepted_events(db) -> list[tuple]:
    rows = db.execute(
        "SELECT letter_id, details, task_id FROM letter_events WHERE event = 'accepted' ORDER BY letter_id"
    ).fetchall()
    db.commit()
    return rows


def seed(db, *rows_: dict) -> None:
    report = import_rows(db, [(n, r) for n, r in enumerate(rows_, start=1)])
    assert not report.errors and len(report.inserted) == len(rows_)


def assert_no_personal_values(messages, *values):
    for message in messages:
        for v in values:
            assert v not in message, f"personal value leaked in message {message!r}"


ALL_PERSONAL = (NRN_A, NRN_B, NRN_C, KBO, BAD_NRN, *NAMES, "Bruul", "Mechelen", "Kerkstraat")


# --------------------------------------------------------------------------- JSON Lines


@pytest.fixture
def mixed_jsonl(db, tmp_path):
    seed(db, row("DB-SAME", 1, recipient_id=NRN_B), row("DB-DIFF", 2, recipient_id=NRN_C))
    lines = [
        row("FIN-1", 3),  # 1 good
        row(
            "GAS-1",
            4,
            department="gas",
            letter_type="gas_decision",
            recipient_kind="enterprise",
            recipient_id=KBO,
            registered=True,
            language="fr",
        ),  # 2 good
        row("FIN-BADNRN", 5, recipient_id=BAD_NRN),  # 3
        row("FIN-DEPT", 6, department="financ"),  # 4
        row("FIN-TYPE", 7, letter_type="gas_finding"),  # 5
        row("FIN-NOCITY", 8, city=...),  # 6
        row("FIN-PC", 9, postal_code="280"),  # 7
        row("FIN-FR", 10, country="fr", postal_code="75001", city="Paris"),  # 8 good
        '{"letter_id": "FIN-BROKEN", "recipient_name": "Jacobs Els", ',  # 9
        "",  # 10 blank
        row("FIN-1", 3),  # 11 same dup
        row(
            "GAS-1",
            4,
            department="gas",
            letter_type="gas_decision",
            recipient_kind="enterprise",
            recipient_id=KBO,
            registered=True,
            language="nl",
        ),  # 12 diff dup
        row("DB-SAME", 1, recipient_id=NRN_B),  # 13
        row("DB-DIFF", 2, recipient_id=NRN_C, street="Kerkstraat 99"),  # 14
        row("FIN-NAME-ONLY-SPACES", 11, recipient_name="   "),  # 15
        "[1, 2]",  # 16
    ]
    return write_jsonl(tmp_path / "letters.jsonl", lines)


def test_jsonl_import_inserts_good_rows_and_reports_the_rest_by_line(db, mixed_jsonl):
    report = import_file(db, mixed_jsonl)

    assert sorted(report.inserted) == ["FIN-1", "FIN-FR", "GAS-1"]
    errors = dict(report.errors)
    assert sorted(errors) == [3, 4, 5, 6, 7, 9, 15, 16]
    assert errors[3].startswith("recipient_id:") and "national register or BIS number" in errors[3]
    assert errors[4].startswith("department:") and "'financ'" in errors[4]  # a typo is shown
    assert errors[5].startswith("letter_type:") and "finance" in errors[5]
    assert errors[6] == "city: missing"
    assert errors[7].startswith("postal_code:")
    assert "JSON" in errors[9]
    assert errors[15] == "recipient_name: missing"
    assert "object" in errors[16]
    assert report.duplicates == [
        (11, "FIN-1", True),
        (12, "GAS-1", False),
        (13, "DB-SAME", True),
        (14, "DB-DIFF", False),
    ]
    assert report.ok is False

    stored = letters(db)
    assert sorted(stored) == ["DB-DIFF", "DB-SAME", "FIN-1", "FIN-FR", "GAS-1"]
    gas = stored["GAS-1"]
    assert (
        gas["department"],
        gas["recipient_kind"],
        gas["recipient_id"],
        gas["registered"],
        gas["language"],
    ) == ("gas", "enterprise", KBO, True, "fr")  # the first occurrence wins, not the duplicate
    assert stored["FIN-FR"]["country"] == "FR"
    assert stored["FIN-1"]["country"] == "BE" and stored["FIN-1"]["registered"] is False
    assert stored["FIN-1"]["payload"] == payload("invoice", 3)
    assert stored["DB-DIFF"]["street"] == STREETS[2]  # not overwritten by the different duplicate
    assert all(r["status"] == "pending" for r in stored.values())


def test_accepted_event_is_written_once_per_inserted_letter(db, mixed_jsonl):
    before = {lid for lid, _, _ in accepted_events(db)}
    assert before == {"DB-SAME", "DB-DIFF"}
    import_file(db, mixed_jsonl, RunContext(dag_id="d", run_id="r", task_id="import_task"))
    events = [e for e in accepted_events(db) if e[0] not in before]
    assert [e[0] for e in events] == ["FIN-1", "FIN-FR", "GAS-1"]
    assert events[2][1] == {"department": "gas", "letter_type": "gas_decision"}
    assert {e[2] for e in events} == {"import_task"}


def test_reimporting_the_same_file_inserts_nothing_twice(db, mixed_jsonl):
    first = import_file(db, mixed_jsonl)
    events_after_first = accepted_events(db)
    second = import_file(db, mixed_jsonl)

    assert second.inserted == []
    assert second.errors == first.errors
    assert {(lid, same) for _, lid, same in second.duplicates} >= {
        ("FIN-1", True),
        ("FIN-FR", True),
        ("GAS-1", True),
        ("DB-DIFF", False),
    }
    assert len(letters(db)) == 5
    assert accepted_events(db) == events_after_first


def test_import_messages_never_contain_personal_values(db, mixed_jsonl):
    report = import_file(db, mixed_jsonl)
    assert_no_personal_values([m for _, m in report.errors], *ALL_PERSONAL)


def test_a_clean_file_is_ok_and_a_same_content_reimport_stays_ok(db, tmp_path):
    path = write_jsonl(tmp_path / "ok.ndjson", [row(f"OK-{i}", i) for i in range(5)])
    first = import_file(db, path)
    assert first.ok and len(first.inserted) == 5 and not first.duplicates
    second = import_file(db, path)
    assert second.ok and second.inserted == [] and len(second.duplicates) == 5
    assert len(letters(db)) == 5


def test_a_file_with_only_bad_rows_inserts_nothing(db, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [row("B-1", recipient_id=BAD_NRN), "not json"])
    report = import_file(db, path)
    assert report.inserted == [] and [n for n, _ in report.errors] == [1, 2] and not report.ok
    assert letters(db) == {} and accepted_events(db) == []


def test_unsupported_file_type_is_refused(db, tmp_path):
    path = tmp_path / "letters.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="unsupported file type"):
        import_file(db, path)


# --------------------------------------------------------------------------- CSV


def test_csv_import_with_quoting_blank_lines_and_correct_line_numbers(db, tmp_path):
    seed(db, row("DB-SAME", 1, recipient_id=NRN_B), row("DB-DIFF", 2, recipient_id=NRN_C))
    header = ",".join(CSV_FIELDS) + "\n"
    body = [
        csv_line(row("C-1", 0, recipient_name="Janssens, Jan", registered=True)),  # 2 good, quoted comma
        csv_line(row("C-2", 1, recipient_kind="enterprise", recipient_id=KBO)),  # 3 good
        "\n",  # 4 blank
        csv_line(row("C-BAD", 2, recipient_id=BAD_NRN)),  # 5
        csv_line(row("C-DEPT", 3, department="culture")),  # 6
        csv_line(row("C-TYPE", 4, letter_type="premium_decision")),  # 7
        csv_line(row("C-MISS", 5, street="")),  # 8
        csv_line(row("C-PC", 6, postal_code="28OO")),  # 9
        csv_line(row("C-1", 0, recipient_name="Janssens, Jan", registered=True)),  # 10 same dup
        csv_line(
            row("C-2", 1, recipient_kind="enterprise", recipient_id=KBO, payload=payload("invoice", 99)),
        ),  # 11 different dup
        csv_line(row("DB-SAME", 1, recipient_id=NRN_B)),  # 12
        csv_line(row("DB-DIFF", 2, recipient_id=NRN_C, postal_code="2801")),  # 13
        csv_line(row("C-REG", 7, registered="misschien")),  # 14
        csv_line(row("C-3", 8, street="Bruul 1\nbus 2")),  # 15-16 a record over two lines, refused
        csv_line(row("C-LANG", 9, language="en")),  # 17
    ]
    path = tmp_path / "letters.csv"
    path.write_text(header + "".join(body), encoding="utf-8")

    report = import_file(db, path)

    assert sorted(report.inserted) == ["C-1", "C-2"]
    errors = dict(report.errors)
    assert sorted(errors) == [5, 6, 7, 8, 9, 14, 15, 17]
    assert errors[15].startswith("street:") and "line break, U+000A" in errors[15]
    assert errors[5].startswith("recipient_id:")
    assert errors[6].startswith("department:")
    assert errors[7].startswith("letter_type:")
    assert errors[8] == "street: missing"
    assert errors[9].startswith("postal_code:")
    assert errors[14].startswith("registered:")
    assert errors[17].startswith("language:")
    assert report.duplicates == [
        (10, "C-1", True),
        (11, "C-2", False),
        (12, "DB-SAME", True),
        (13, "DB-DIFF", False),
    ]
    stored = letters(db)
    assert stored["C-1"]["recipient_name"] == "Janssens, Jan" and stored["C-1"]["registered"] is True
    assert stored["C-2"]["recipient_kind"] == "enterprise" and stored["C-2"]["payload"] == payload(
        "invoice", 1
    )
    assert "C-3" not in stored
    assert_no_personal_values([m for _, m in report.errors], *ALL_PERSONAL)
    assert sorted(lid for lid, _, _ in accepted_events(db)) == ["C-1", "C-2", "DB-DIFF", "DB-SAME"]


def test_csv_with_a_byte_order_mark_and_missing_columns(db, tmp_path):
    path = tmp_path / "bom.csv"
    premium = json.dumps(payload("premium_decision")).replace('"', '""')
    path.write_text(
        "\ufeffletter_id,department,letter_type,recipient_kind,recipient_id,recipient_name,street,"
        f"postal_code,city,language,payload\nBOM-1,economy_housing,premium_decision,citizen,{NRN_A},"
        f'Maes BV,Bruul 3,2800,Mechelen,de,"{premium}"\nBOM-2,gas,gas_finding,citizen,{NRN_B}\n',
        encoding="utf-8",
    )
    report = import_file(db, path)
    assert report.inserted == ["BOM-1"]
    assert report.errors == [(3, "recipient_name: missing")]
    assert letters(db)["BOM-1"]["language"] == "de"


def test_shifted_csv_columns_do_not_leak_names_into_messages(db, tmp_path):
    """An unquoted comma in a name shifts the following columns; the refusal must not echo them."""
    path = tmp_path / "shifted.csv"
    path.write_text(
        "letter_id,department,recipient_name,recipient_kind,letter_type,language,recipient_id,street,"
        f"postal_code,city\nS-1,finance,Peeters, An,citizen,invoice,nl,{NRN_A},Bruul 1,2800,Mechelen\n"
        f"S-2,finance,Dubois,Marc,invoice,nl,{NRN_A},Bruul 1,2800,Mechelen\n"
        f"S-3,finance,Claes,citizen,Lies,nl,{NRN_A},Bruul 1,2800,Mechelen\n"
        f"S-4,Wouters,citizen,invoice,nl,{NRN_A},Bruul 1,2800,Mechelen\n",
        encoding="utf-8",
    )
    report = import_file(db, path)
    assert report.inserted == [] and [n for n, _ in report.errors] == [2, 3, 4, 5]
    assert_no_personal_values(
        [m for _, m in report.errors], "Peeters", " An", "'An'", "Marc", "Lies", "Wouters", NRN_A, "Bruul"
    )


# --------------------------------------------------------------------------- validate_row details


def test_validate_row_normalises_ids_and_booleans():
    formatted = f"{NRN_A[:2]}.{NRN_A[2:4]}.{NRN_A[4:6]}-{NRN_A[6:9]}.{NRN_A[9:]}"
    clean = validate_row(
        {
            **row("V-1"),
            "recipient_id": formatted,
            "registered": "Oui",
            "payload": json.dumps(payload()),
            "country": "be",
            "letter_id": " V-1 ",
        }
    )
    assert clean["recipient_id"] == NRN_A and clean["registered"] is True and clean["country"] == "BE"
    assert clean["letter_id"] == "V-1" and clean["payload"] == payload()


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"letter_id": "-starts-with-dash"}, "letter_id"),
        ({"letter_id": "x" * 65}, "letter_id"),
        ({"recipient_kind": "person"}, "recipient_kind"),
        ({"country": "BEL"}, "country"),
        ({"postal_code": "0800"}, "postal_code"),
        ({"postal_code": "28000"}, "postal_code"),
        ({"registered": 1}, "registered"),
        ({"payload": "[1]"}, "payload"),
        ({"payload": "{nope"}, "payload"),
        ({"recipient_kind": "enterprise"}, "recipient_id"),  # an NRN is not a KBO number
    ],
)
def test_validate_row_refuses_with_the_field_name(overrides, field):
    with pytest.raises(RowError) as info:
        validate_row({**row("V-2"), **overrides})
    assert str(info.value).startswith(f"{field}:")
    assert_no_personal_values([str(info.value)], NRN_A, "Bruul")


# --------------------------------------------------------------------------- concurrency


PER_ROUND = 120  # each letter is laid out by the renderer's check: a few ms each


def test_concurrent_imports_of_the_same_file_insert_and_report_each_letter_once(db, pg_url, tmp_path):
    import threading

    import psycopg

    paths = [
        write_jsonl(tmp_path / f"round{r}.jsonl", [row(f"CC-{r}-{i:04d}", i) for i in range(PER_ROUND)])
        for r in range(4)
    ]
    reports: list = []
    failures: list = []

    def importer(path, barrier):
        try:
            with psycopg.connect(pg_url) as conn:
                barrier.wait()
                reports.append((path, import_file(conn, path)))
        except BaseException as exc:
            failures.append(exc)

    for path in paths:
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=importer, args=(path, barrier)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert not failures, failures
    for path in paths:
        both = [rep for p, rep in reports if p == path]
        assert len(both) == 2
        inserted = [lid for rep in both for lid in rep.inserted]
        assert len(inserted) == PER_ROUND == len(set(inserted)), (
            "a letter was reported inserted by both imports"
        )
        assert all(rep.ok for rep in both)
        assert sorted(len(rep.duplicates) for rep in both) == [0, PER_ROUND]
    events = db.execute(
        "SELECT letter_id, count(*) FROM letter_events WHERE event = 'accepted' "
        "GROUP BY letter_id HAVING count(*) > 1"
    ).fetchall()
    db.commit()
    assert events == []
    assert len(letters(db)) == 4 * PER_ROUND


# --------------------------------------------------------------------------- rows that must never crash an import

SECRET = "Vermeulen-Geheim"  # a name that must never appear in any message


BAD_JSON_LINES = {
    # line: (raw JSON text of the line, field the refusal starts with)
    "department_list": ('{"letter_id": "X-1", "department": ["finance"]}', "department:"),
    "country_number": (json.dumps(row("X-2", country=32)), "country:"),
    "payload_nan": (json.dumps(row("X-3"))[:-1] + ', "payload": {"amount_due": NaN}}', "not valid JSON: NaN"),
    "payload_infinity": (
        '{"letter_id": "X-4", "payload": {"amount_due": Infinity}}',
        "not valid JSON: Infinity",
    ),
    "payload_minus_infinity": (
        '{"letter_id": "X-5", "payload": {"x": -Infinity}}',
        "not valid JSON: -Infinity",
    ),
    "huge_float": (
        '{"letter_id": "X-6", "payload": {"x": 1e400}}',
        "not valid JSON: a number too large for a float",
    ),
    "nul_in_name": (json.dumps(row("X-7", recipient_name=f"{SECRET}\x00")), "recipient_name: contains a NUL"),
    "nul_in_payload": (
        json.dumps(row("X-8", payload={**payload(), "service_detail": f"{SECRET}\x00"})),
        "payload: payload field 'service_detail' contains a NUL",
    ),
    "surrogate": (json.dumps(row("X-9", street="Bruul \ud800 1")), "street: contains an invalid character"),
    "name_object": (
        json.dumps(row("X-10", recipient_name={"first": SECRET})),
        "recipient_name: must be text",
    ),
    "letter_id_boolean": (json.dumps({**row("X-11"), "letter_id": True}), "letter_id: must be text"),
    "letter_id_number": (json.dumps({**row("X-12"), "letter_id": 12}), "letter_id: must be text"),
    "recipient_id_number": (json.dumps(row("X-13", recipient_id=int(NRN_B))), "recipient_id: must be text"),
    "registered_number": (json.dumps(row("X-14", registered=1)), "registered: must be true or false"),
    "payload_list": (json.dumps(row("X-15", payload=[1, 2])), "payload: must be a JSON object"),
    "payload_nested": (
        json.dumps(row("X-16", payload={"a": [[[[[[[[[["x"]]]]]]]]]]})),
        "payload: nested deeper",
    ),
    "name_10mb": (json.dumps(row("X-17", recipient_name=SECRET * 700_000)), "line longer than"),
    "name_too_long": (json.dumps(row("X-18", recipient_name=SECRET * 20)), "recipient_name: longer than 200"),
    "street_too_long": (json.dumps(row("X-19", street="Bruul " * 30)), "street: longer than 150"),
    "unknown_field": (json.dumps({**row("X-20"), "registerd": True}), "'registerd': not a field"),
    "amount_negative": (
        json.dumps(row("X-21", payload={**payload(), "amount_due": "-12.50"})),
        "payload.amount_due:",
    ),
    "amount_1e308_text": (
        json.dumps(row("X-22", payload={**payload(), "amount_due": "1e308"})),
        "payload.amount_due:",
    ),
    "amount_1e308_number": (
        json.dumps(row("X-23", payload={**payload(), "amount_due": 1e308})),
        "payload.amount_due:",
    ),
    "amount_nan_text": (
        json.dumps(row("X-24", payload={**payload(), "amount_due": "NaN"})),
        "payload.amount_due:",
    ),
    "missing_template_field": (
        json.dumps(row("X-25", payload={k: v for k, v in payload().items() if k != "ogm"})),
        "payload.ogm:",
    ),
    "deep_json": ('{"letter_id": "X-26", "payload": ' + "[" * 50_000 + "]" * 50_000 + "}", "not valid JSON"),
    "long_integer": ('{"letter_id": "X-27", "payload": {"x": ' + "9" * 5000 + "}}", "not valid JSON"),
    "unprintable_name": (
        json.dumps(row("X-28", recipient_name="\u0627\u0644\u0639\u0631\u0628\u064a\u0629")),
        "recipient_name:",
    ),
    "postal_code_number": (json.dumps(row("X-29", postal_code=280)), "postal_code:"),
}


@pytest.fixture
def hostile_jsonl(tmp_path):
    lines = [json.dumps(row("GOOD-1", 1))]
    lines += [text for text, _ in BAD_JSON_LINES.values()]
    lines.append(json.dumps(row("GOOD-2", 2, postal_code=2800)))  # a whole number is a postal code too
    return write_jsonl(tmp_path / "hostile.jsonl", lines)


def test_no_row_crashes_the_import_each_is_refused_by_line_and_field(db, hostile_jsonl):
    report = import_file(db, hostile_jsonl)

    assert sorted(report.inserted) == ["GOOD-1", "GOOD-2"]
    errors = dict(report.errors)
    assert sorted(errors) == list(range(2, 2 + len(BAD_JSON_LINES)))
    for line, (name, (_, expected)) in enumerate(BAD_JSON_LINES.items(), start=2):
        assert errors[line].startswith(expected) or expected in errors[line], (name, errors[line])
    assert_no_personal_values(errors.values(), SECRET, *ALL_PERSONAL, "\u0627\u0644\u0639")
    assert sorted(letters(db)) == ["GOOD-1", "GOOD-2"]
    assert letters(db)["GOOD-2"]["postal_code"] == "2800"


def test_a_wrong_type_is_refused_not_turned_into_text():
    with pytest.raises(RowError, match="^recipient_name: must be text, not an object$"):
        validate_row(row("T-1", recipient_name={"first": "Jan"}))
    with pytest.raises(RowError, match="^letter_id: must be text, not true/false$"):
        validate_row({**row("T-2"), "letter_id": True})
    with pytest.raises(RowError, match="^department: must be text, not a list$"):
        validate_row(row("T-3", department=["finance"]))
    with pytest.raises(RowError, match="^country: must be text, not a number$"):
        validate_row(row("T-4", country=32))


@pytest.mark.parametrize("amount", ["-12.50", "1e308", "NaN", "Infinity", "0.001", 12.5, "1000000000.00"])
def test_amounts_the_renderer_refuses_are_refused_at_import_with_its_reason(amount):
    from include.dijlepost.rendering.errors import LetterDataError
    from include.dijlepost.rendering.validation import validate_letter

    letter = row("A-1", payload={**payload(), "amount_due": amount})
    with pytest.raises(LetterDataError) as at_render:
        validate_letter(letter)
    with pytest.raises(RowError) as at_import:
        validate_row(letter)
    assert str(at_import.value) == f"payload.amount_due: {at_render.value}"  # one rule, one reason


def test_every_field_limit_is_refused_by_name_and_the_limit_itself_is_accepted():
    from include.dijlepost.intake import LIMITS

    for name, value in [
        ("recipient_name", "J" * LIMITS["recipient_name"]),
        ("street", "B" * LIMITS["street"]),
        ("city", "M" * LIMITS["city"]),
    ]:
        try:
            validate_row(row("L-1", **{name: value}))
        except RowError as exc:  # the renderer may still find it too long for the envelope window
            assert not str(exc).startswith(f"{name}: longer than")
        with pytest.raises(RowError, match=f"^{name}: longer than {LIMITS[name]} characters"):
            validate_row(row("L-1", **{name: value + "x"}))
    with pytest.raises(RowError, match="^postal_code: longer than 12"):
        validate_row(row("L-2", country="NL", postal_code="1" * 13))
    with pytest.raises(RowError, match="^recipient_id: longer than 32"):
        validate_row(row("L-3", recipient_id="1" * 33))
    with pytest.raises(RowError, match="^payload: longer than 65536 bytes"):
        validate_row(row("L-4", payload={**payload(), "note": "x" * 70_000}))


def test_the_import_limits_are_the_table_constraints(db):
    from include.dijlepost.intake import LIMITS

    defs = dict(
        db.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'letters'::regclass AND conname LIKE 'letters_%_length'"
        ).fetchall()
    )
    db.commit()
    assert defs, "migration 0009 adds letters_<field>_length"
    for name, definition in defs.items():
        field_name = name.removeprefix("letters_").removesuffix("_length")
        assert f"<= {LIMITS[field_name]}" in definition, (name, definition)


# --------------------------------------------------------------------------- CSV dialect, encoding, size


def csv_file(tmp_path, text: str, name: str = "letters.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_a_csv_field_over_131072_characters_is_refused_on_its_line_naming_the_field(db, tmp_path):
    header = ",".join(CSV_FIELDS) + "\n"
    huge = csv_line(row("C-HUGE", 1, recipient_name=SECRET * 10_000))  # 160,000 characters
    huge_quoted = csv_line(row("C-HUGE2", 2, street=("Bruul 1\n" + "b" * 200_000)))  # spans two lines
    path = csv_file(tmp_path, header + csv_line(row("C-1", 0)) + huge + huge_quoted + csv_line(row("C-2", 3)))

    report = import_file(db, path)

    assert sorted(report.inserted) == ["C-1", "C-2"]
    assert report.errors == [
        (3, "recipient_name: longer than 200 characters (160000)"),
        (4, "street: longer than 150 characters (200008)"),
    ]
    assert_no_personal_values([m for _, m in report.errors], SECRET)


def test_a_semicolon_separated_csv_is_read_as_such(db, tmp_path):
    lines = [";".join(CSV_FIELDS)]
    for letter in [row("SC-1", 0, recipient_name="Janssens; Jan"), row("SC-2", 1)]:
        out = io.StringIO()
        csv.DictWriter(out, CSV_FIELDS, delimiter=";", lineterminator="\n").writerow(
            {**letter, "payload": json.dumps(letter["payload"])}
        )
        lines.append(out.getvalue().rstrip("\n"))
    lines.append("SC-3;finance;invoice;citizen;" + NRN_A + ";Peeters An;Bruul 2;2800;Mechelen;;nl;;{};extra")
    report = import_file(db, csv_file(tmp_path, "\n".join(lines) + "\n"))
    assert sorted(report.inserted) == ["SC-1", "SC-2"]
    assert report.errors == [
        (4, "1 value(s) more than the header's 13 columns (a semicolon in an unquoted value?)")
    ]
    assert letters(db)["SC-1"]["recipient_name"] == "Janssens; Jan"


def test_extra_values_on_a_row_are_refused_not_dropped(db, tmp_path):
    header = ",".join(CSV_FIELDS) + "\n"
    extra = csv_line(row("E-1", 0)).rstrip("\n") + f",{SECRET}\n"
    report = import_file(db, csv_file(tmp_path, header + extra + csv_line(row("E-2", 1))))
    assert report.inserted == ["E-2"]
    assert report.errors == [
        (2, "1 value(s) more than the header's 13 columns (a comma in an unquoted value?)")
    ]


def test_a_file_that_is_not_utf8_is_refused_naming_the_line(db, tmp_path):
    header = ",".join(CSV_FIELDS) + "\n"
    text = header + csv_line(row("U-1", 0, payload={})) + csv_line(row("U-2", 1, city="Liège", payload={}))
    path = csv_file(tmp_path, text, encoding="latin-1")
    with pytest.raises(FileRefused, match=r"^line 3: not UTF-8 \(byte 0xE8 at column \d+\)"):
        import_file(db, path)
    assert letters(db) == {}  # nothing of a file that cannot be read
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(
        json.dumps(row("U-3", payload={}), ensure_ascii=False).encode()
        + b"\n"
        + json.dumps(row("U-4", city="Liège", payload={}), ensure_ascii=False).encode("latin-1")
        + b"\n"
    )
    with pytest.raises(FileRefused, match="^line 2: not UTF-8"):
        import_file(db, jsonl)


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("empty.csv", "", "no letters in the file (it is empty)"),
        ("header.csv", ",".join(CSV_FIELDS) + "\n", "no letters in the file (only the header line)"),
        (
            "header-blank.csv",
            ",".join(CSV_FIELDS) + "\n\n\n",
            "no letters in the file (only the header line)",
        ),
        ("empty.jsonl", "", "no letters in the file (it is empty)"),
        ("blank.jsonl", "\n  \n", "no letters in the file (it is empty)"),
        ("noheader.csv", f"L-1,finance,invoice,citizen,{NRN_A}\n", "line 1: not a header line"),
        (
            "unknown.csv",
            "letter_id,department,nationaal_nummer\n",
            "line 1: unknown column(s) 'nationaal_nummer'",
        ),
        (
            "twice.csv",
            "letter_id,letter_id,department\n",
            "line 1: column(s) letter_id appear more than once",
        ),
        (
            "trailing.csv",
            ";".join(CSV_FIELDS) + ";\n",
            "line 1: column 14 of the semicolon-separated header has no name",
        ),
        ("lacking.csv", "letter_id,department\nL-1,finance\n", "line 1: the comma-separated header lacks"),
        ("letters.xlsx", "PK", "unsupported file type '.xlsx'"),
    ],
)
def test_a_file_without_letters_or_with_a_bad_header_is_refused_as_a_whole(
    db, tmp_path, name, content, message
):
    with pytest.raises(FileRefused) as info:
        import_file(db, csv_file(tmp_path, content, name))
    assert str(info.value).startswith(message)
    assert NRN_A not in str(info.value)
    assert letters(db) == {}


def test_an_unknown_column_that_is_not_a_code_is_not_shown(db, tmp_path):
    with pytest.raises(FileRefused) as info:
        import_file(db, csv_file(tmp_path, f"letter_id,department,{SECRET} {NRN_A}\n"))
    assert SECRET not in str(info.value) and NRN_A not in str(info.value)


# --------------------------------------------------------------------------- the database never quotes a row


def test_a_row_the_database_refuses_is_refused_by_line_with_the_constraint_and_the_rest_imported(db):
    db.execute("ALTER TABLE letters ADD CONSTRAINT letters_test_no_lier CHECK (city <> 'Lier') NOT VALID")
    db.commit()
    try:
        report = import_rows(
            db, [(1, row("D-1", 0)), (2, row("D-2", 1, city="Lier", postal_code="2500")), (3, row("D-3", 2))]
        )
    finally:
        db.execute("ALTER TABLE letters DROP CONSTRAINT letters_test_no_lier")
        db.commit()
    assert sorted(report.inserted) == ["D-1", "D-3"]
    assert report.errors == [
        (
            2,
            (
                "refused by the database (CheckViolation: constraint letters_test_no_lier, "
                "table letters, SQLSTATE 23514)"
            ),
        )
    ]
    assert sorted(letters(db)) == ["D-1", "D-3"]
    assert sorted(lid for lid, _, _ in accepted_events(db)) == ["D-1", "D-3"]


@pytest.fixture
def department_login(pg_url):
    """The finance system's login: it holds only the role dijlepost_dept_finance (migration 0012)."""
    from tests.support.database import department_url

    return department_url(pg_url, "finance")


CONTRACT_COLUMNS = (
    "letter_id",
    "department",
    "letter_type",
    "recipient_kind",
    "recipient_id",
    "recipient_name",
    "street",
    "postal_code",
    "city",
    "language",
    "payload",
)


def _department_insert(conn, lid: str, name: str, nrn: str, **overrides):
    values = {**row(lid, recipient_id=nrn, recipient_name=name, street="Kerkstraat 99"), **overrides}
    values["payload"] = json.dumps(values["payload"])
    conn.execute(
        f"INSERT INTO letters ({', '.join(CONTRACT_COLUMNS)}) VALUES "
        f"({', '.join(['%s'] * len(CONTRACT_COLUMNS))}) ON CONFLICT (letter_id) DO NOTHING",
        [values[c] for c in CONTRACT_COLUMNS],
    )


def _server_log_lines(marker: str) -> list[str]:
    """Lines of the PostgreSQL server log (Debian's default place) holding `marker`; None if unreadable."""
    import glob

    found = None
    for path in glob.glob("/var/log/postgresql/postgresql-*-main.log"):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        found = (found or []) + [line for line in text.splitlines() if marker in line]
    return found


def test_a_department_system_inserts_but_an_error_never_contains_the_row(db, department_login):
    import psycopg

    name = f"Geheim{uuid.uuid4().hex[:10]}"  # this run's values: found in no log unless leaked now
    nrn, literal_nrn = (
        make_nrn(
            f"{random.randint(40, 99)}{random.randint(1, 12):02d}{random.randint(1, 28):02d}",
            random.randint(1, 997),
        )
        for _ in range(2)
    )
    with psycopg.connect(department_login, autocommit=True) as dept:
        _department_insert(dept, "DEPT-1", name, nrn)
        _department_insert(dept, "DEPT-1", name, nrn)  # resent: ON CONFLICT DO NOTHING may be used
        refusals = []
        for letter_id, overrides in [
            ("DEPT-2", {"language": "en"}),  # CHECK
            ("DEPT-3", {"letter_type": "x" * 41}),  # length limit
            ("DEPT-4", {"recipient_name": name * 20}),  # length limit
            ("DEPT-5", {"letter_id": "-" + nrn}),
        ]:  # letter_id CHECK
            with pytest.raises(psycopg.errors.IntegrityError) as info:
                _department_insert(dept, letter_id, name, nrn, **overrides)
            refusals.append(info.value)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            dept.execute("SELECT recipient_id FROM letters")  # no reading of the outbox
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            dept.execute("UPDATE letters SET status = 'quarantined'")
        # a literal statement (no parameters) that fails: its text is not logged either
        with pytest.raises(psycopg.errors.CheckViolation):
            dept.execute(
                f"INSERT INTO letters (letter_id, department, letter_type, recipient_kind, recipient_id, "
                f"recipient_name, street, postal_code, city, language) VALUES ('DEPT-6', 'finance', "
                f"'invoice', 'citizen', '{literal_nrn}', '{name}-literal', 'Bruul 1', '2800', 'Mechelen', "
                "'xx')"
            )
    constraints = [e.diag.constraint_name for e in refusals]
    assert constraints == [
        "letters_language_check",
        "letters_letter_type_length",
        "letters_recipient_name_length",
        "letters_letter_id_check",
    ]
    for exc in refusals:
        text = " ".join(
            str(part) for part in (exc, exc.diag.message_detail, exc.diag.context, exc.diag.message_hint)
        )
        assert_no_personal_values([text], name, nrn, "Kerkstraat")
        assert "Failing row" not in text
    stored = letters(db)
    assert list(stored) == ["DEPT-1"] and stored["DEPT-1"]["status"] == "pending"

    log = _server_log_lines(name)
    if log is not None:  # the test server's log is readable here: the values never reached it
        assert log == []
        assert _server_log_lines(nrn) == [] and _server_log_lines(literal_nrn) == []


def test_the_pipeline_role_gets_constraint_names_not_rows(db):
    import psycopg

    from include.dijlepost.db.connection import describe_db_error

    seed(db, row("P-1", 0, recipient_name=SECRET))
    db.execute("SET ROLE dijlepost_pipeline")
    with pytest.raises(psycopg.errors.CheckViolation) as info:
        db.execute("UPDATE letters SET status = 'quarantined', final_at = now() WHERE letter_id = 'P-1'")
    db.rollback()
    exc = info.value
    assert exc.diag.message_detail is None and SECRET not in str(exc) and NRN_A not in str(exc)
    assert exc.diag.constraint_name in str(exc)
    assert describe_db_error(exc) == (
        f"refused by the database (CheckViolation: constraint "
        f"{exc.diag.constraint_name}, table letters, SQLSTATE 23514)"
    )


def test_the_database_logs_errors_tersely_and_without_the_statement(db):
    settings = dict(
        db.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('log_error_verbosity', 'log_min_error_statement')"
        ).fetchall()
    )
    db.commit()
    assert settings == {"log_error_verbosity": "terse", "log_min_error_statement": "panic"}


def test_row_level_security_changes_nothing_the_pipeline_role_does(db, pg_url):
    """The policy of migration 0009 lets every role see and change every row: a login holding only the
    pipeline role imports, claims and quarantines as before."""
    from datetime import timedelta

    import psycopg

    from include.dijlepost.outbox import claim, quarantine

    ctx = RunContext(dag_id="letters_finance", run_id="r-rls", task_id="claim_letters")
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET ROLE dijlepost_pipeline")
        conn.commit()
        assert conn.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone() == (
            False,
        )
        report = import_rows(conn, [(1, row("R-1", 0)), (2, row("R-2", 1))])
        assert sorted(report.inserted) == ["R-1", "R-2"]
        held = claim(
            conn,
            chunk_work("r-rls", ctx=ctx),
            batch_size=10,
            chunk_size=10,
            lease=timedelta(hours=3),
        )
        assert held.count == 2
        with conn.cursor() as cur:
            assert quarantine(cur, ctx, "R-1", "r-rls", "a reason", "render")
        conn.commit()
    stored = letters(db)
    assert (stored["R-1"]["status"], stored["R-2"]["status"]) == ("quarantined", "processing")


def test_a_fault_in_the_check_itself_stops_the_import_without_quoting_the_row(db, monkeypatch):
    from include.dijlepost.rendering import validation

    def broken(letter, **kwargs):
        raise KeyError(letter["recipient_name"])  # a bug whose message would quote the row

    monkeypatch.setattr(validation, "validate_letter", broken)
    with pytest.raises(Exception) as info:
        import_rows(db, [(1, row("F-1", 0)), (2, row("F-2", 1))])
    from include.dijlepost.intake import ImportFailed

    assert info.type is ImportFailed
    assert str(info.value) == "line 1: checking the row failed unexpectedly (KeyError); please report it"
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert letters(db) == {}


def test_the_table_refuses_an_oversized_payload_even_when_it_compresses_well(db, department_login):
    import psycopg

    big = {f"k{i}": "a" * 100 for i in range(2000)}  # 200 KiB of jsonb, a few KiB compressed
    with psycopg.connect(department_login, autocommit=True) as dept:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            _department_insert(dept, "BIG-1", "Peeters An", NRN_A, payload=big)
        _department_insert(dept, "BIG-2", "Peeters An", NRN_A)
    assert info.value.diag.constraint_name == "letters_payload_size"
    assert sorted(letters(db)) == ["BIG-2"]


def test_a_value_quoted_by_a_library_inside_the_renderer_reason_is_not_shown():
    """schwifty's own message quotes the IBAN it refused (the applicant's account of a premium decision,
    or a national register number in the wrong field): the refusal must not pass it on."""
    for wrong in (NRN_B, "BE68 5390 0754 703X", "NL91ABNA041716430X"):
        letter = row(
            "Q-1",
            department="economy_housing",
            letter_type="premium_decision",
            payload={**payload("premium_decision"), "iban": wrong},
        )
        with pytest.raises(RowError) as info:
            validate_row(letter)
        message = str(info.value)
        assert message.startswith("payload.iban: ") and "IBAN" in message
        assert wrong not in message and wrong.replace(" ", "") not in message
        assert not re.search(r"\d{4}", message.replace("3!n7!n2!n", "")), message  # no part of it either


def test_a_big_file_is_written_in_batches_and_a_rerun_imports_the_rest(db, tmp_path):
    """Batches of 3: every good row is in after its batch commits; a line that is not UTF-8 stops the
    import there with the batches before it kept; the corrected file imports the rest, the letters
    already in reported as identical duplicates, each letter accepted once."""
    good = [row(f"BT-{i:02d}", i) for i in range(8)]
    path = tmp_path / "big.jsonl"
    lines = [json.dumps(r) for r in good]
    # line 8 is not UTF-8: the batches holding lines 1-6 are committed, line 7 (the open batch) is not
    path.write_bytes(("\n".join(lines[:7]) + "\n").encode() + b"\xff\n" + lines[7].encode() + b"\n")
    with pytest.raises(FileRefused, match="line 8: not UTF-8") as refused:
        import_rows(db, read_rows(path), batch_size=3)
    assert refused.value.report.inserted == [f"BT-{i:02d}" for i in range(6)]
    assert sorted(letters(db)) == [f"BT-{i:02d}" for i in range(6)]

    write_jsonl(path, [*good, good[1]])  # corrected, and line 9 repeats line 2 in another batch
    report = import_file(db, path)
    assert report.inserted == ["BT-06", "BT-07"]
    assert [(line, lid, same) for line, lid, same in report.duplicates] == [
        *[(i + 1, f"BT-{i:02d}", True) for i in range(6)],
        (9, "BT-01", True),
    ]
    assert sorted(letters(db)) == [f"BT-{i:02d}" for i in range(8)]
    assert [e[0] for e in accepted_events(db)] == [f"BT-{i:02d}" for i in range(8)]


def test_a_duplicate_in_a_later_batch_with_other_content_is_reported_as_different(db, tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [row("BD-1", 0), row("BD-2", 1), row("BD-1", 0, city="Muizen")])
    report = import_rows(db, read_rows(path), batch_size=2)
    assert report.inserted == ["BD-1", "BD-2"] and report.duplicates == [(3, "BD-1", False)]
    assert not report.ok
