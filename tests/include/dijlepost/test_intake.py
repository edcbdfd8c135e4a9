"""Letters handed over by department systems (`include.dijlepost.intake`) against a real PostgreSQL."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from include.dijlepost.intake import import_file, import_rows, validate_row, RowError
from include.dijlepost.outbox import RunContext

pytestmark = pytest.mark.integration


def make_nrn(yymmdd: str, serial: int) -> str:
    base = f"{yymmdd}{serial:03d}"
    return f"{base}{97 - int(base) % 97:02d}"


def make_kbo(first8: str) -> str:
    return f"{first8}{97 - int(first8) % 97:02d}"


NRN_A, NRN_B, NRN_C = make_nrn("850730", 33), make_nrn("640212", 415), make_nrn("911103", 77)
KBO = make_kbo("04035784")
BAD_NRN = NRN_A[:-2] + f"{int(NRN_A[-2:]) % 97 + 1:02d}"
NAMES = ["Janssens Jan", "Peeters An", "Maes BV", "Claes Lies", "Wouters Tom", "Mertens Eva", "Smet Bram",
         "Goossens Ria", "Willems Sofie", "Dubois Marc", "Lambert Ann", "Hermans Piet", "Jacobs Els"]
STREETS = [f"Bruul {n}" for n in range(1, 20)]


def row(letter_id: str, i: int = 0, **overrides) -> dict:
    r = {"letter_id": letter_id, "department": "finance", "letter_type": "invoice", "recipient_kind": "citizen",
         "recipient_id": NRN_A, "recipient_name": NAMES[i % len(NAMES)], "street": STREETS[i % len(STREETS)],
         "postal_code": "2800", "city": "Mechelen", "language": "nl",
         "payload": {"amount_cents": 1250 + i, "due": "2025-07-01"}}
    r.update(overrides)
    return {k: v for k, v in r.items() if v is not ...}


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


CSV_FIELDS = ["letter_id", "department", "letter_type", "recipient_kind", "recipient_id", "recipient_name",
              "street", "postal_code", "city", "country", "language", "registered", "payload"]


def csv_line(r: dict) -> str:
    out = io.StringIO()
    values = {**r, "payload": json.dumps(r["payload"]) if "payload" in r else ""}
    if "registered" in values:
        values["registered"] = "ja" if values["registered"] is True else ("nee" if values["registered"] is False
                                                                          else values["registered"])
    csv.DictWriter(out, CSV_FIELDS, lineterminator="\n").writerow(values)
    return out.getvalue()


def letters(db) -> dict[str, dict]:
    cur = db.execute("SELECT letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name, "
                     "street, postal_code, city, country, language, registered, payload, status FROM letters")
    names = [d[0] for d in cur.description]
    out = {r[0]: dict(zip(names, r)) for r in cur.fetchall()}
    db.commit()
    return out


def accepted_events(db) -> list[tuple]:
    rows = db.execute("SELECT letter_id, details, task_id FROM letter_events WHERE event = 'accepted' "
                      "ORDER BY letter_id").fetchall()
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
        row("FIN-1", 3),                                                                        # 1 good
        row("GAS-1", 4, department="gas", letter_type="gas_decision", recipient_kind="enterprise",
            recipient_id=KBO, registered=True, language="fr"),                                  # 2 good
        row("FIN-BADNRN", 5, recipient_id=BAD_NRN),                                             # 3
        row("FIN-DEPT", 6, department="financ"),                                               # 4
        row("FIN-TYPE", 7, letter_type="gas_finding"),                                          # 5
        row("FIN-NOCITY", 8, city=...),                                                         # 6
        row("FIN-PC", 9, postal_code="280"),                                                    # 7
        row("FIN-FR", 10, country="fr", postal_code="75001", city="Paris"),                     # 8 good
        '{"letter_id": "FIN-BROKEN", "recipient_name": "Jacobs Els", ',                          # 9
        "",                                                                                     # 10 blank
        row("FIN-1", 3),                                                                        # 11 same dup
        row("GAS-1", 4, department="gas", letter_type="gas_decision", recipient_kind="enterprise",
            recipient_id=KBO, registered=True, language="nl"),                                  # 12 diff dup
        row("DB-SAME", 1, recipient_id=NRN_B),                                                  # 13
        row("DB-DIFF", 2, recipient_id=NRN_C, street="Kerkstraat 99"),                          # 14
        row("FIN-NAME-ONLY-SPACES", 11, recipient_name="   "),                                  # 15
        "[1, 2]",                                                                               # 16
    ]
    return write_jsonl(tmp_path / "letters.jsonl", lines)


def test_jsonl_import_inserts_good_rows_and_reports_the_rest_by_line(db, mixed_jsonl):
    report = import_file(db, mixed_jsonl)

    assert sorted(report.inserted) == ["FIN-1", "FIN-FR", "GAS-1"]
    errors = dict(report.errors)
    assert sorted(errors) == [3, 4, 5, 6, 7, 9, 15, 16]
    assert errors[3].startswith("recipient_id:") and "national register or BIS number" in errors[3]
    assert errors[4].startswith("department:") and "'financ'" in errors[4]   # a typo is shown
    assert errors[5].startswith("letter_type:") and "finance" in errors[5]
    assert errors[6] == "city: missing"
    assert errors[7].startswith("postal_code:")
    assert "JSON" in errors[9]
    assert errors[15] == "recipient_name: missing"
    assert "object" in errors[16]
    assert report.duplicates == [(11, "FIN-1", True), (12, "GAS-1", False), (13, "DB-SAME", True),
                                 (14, "DB-DIFF", False)]
    assert report.ok is False

    stored = letters(db)
    assert sorted(stored) == ["DB-DIFF", "DB-SAME", "FIN-1", "FIN-FR", "GAS-1"]
    gas = stored["GAS-1"]
    assert (gas["department"], gas["recipient_kind"], gas["recipient_id"], gas["registered"], gas["language"]) \
        == ("gas", "enterprise", KBO, True, "fr")          # the first occurrence wins, not the duplicate
    assert stored["FIN-FR"]["country"] == "FR"
    assert stored["FIN-1"]["country"] == "BE" and stored["FIN-1"]["registered"] is False
    assert stored["FIN-1"]["payload"] == {"amount_cents": 1253, "due": "2025-07-01"}
    assert stored["DB-DIFF"]["street"] == STREETS[2]     # not overwritten by the different duplicate
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
    assert {(lid, same) for _, lid, same in second.duplicates} >= {("FIN-1", True), ("FIN-FR", True),
                                                                    ("GAS-1", True), ("DB-DIFF", False)}
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
        csv_line(row("C-1", 0, recipient_name="Janssens, Jan", registered=True)),     # 2 good, quoted comma
        csv_line(row("C-2", 1, recipient_kind="enterprise", recipient_id=KBO)),       # 3 good
        "\n",                                                                         # 4 blank
        csv_line(row("C-BAD", 2, recipient_id=BAD_NRN)),                              # 5
        csv_line(row("C-DEPT", 3, department="culture")),                             # 6
        csv_line(row("C-TYPE", 4, letter_type="premium_decision")),                   # 7
        csv_line(row("C-MISS", 5, street="")),                                        # 8
        csv_line(row("C-PC", 6, postal_code="28OO")),                                 # 9
        csv_line(row("C-1", 0, recipient_name="Janssens, Jan", registered=True)),     # 10 same dup
        csv_line(row("C-2", 1, recipient_kind="enterprise", recipient_id=KBO,
                     payload={"amount_cents": 1}),),                                  # 11 different dup
        csv_line(row("DB-SAME", 1, recipient_id=NRN_B)),                              # 12
        csv_line(row("DB-DIFF", 2, recipient_id=NRN_C, postal_code="2801")),          # 13
        csv_line(row("C-REG", 7, registered="misschien")),                            # 14
        csv_line(row("C-3", 8, street="Bruul 1\nbus 2")),                             # 15-16 good, multi-line
        csv_line(row("C-LANG", 9, language="en")),                                    # 17
    ]
    path = tmp_path / "letters.csv"
    path.write_text(header + "".join(body), encoding="utf-8")

    report = import_file(db, path)

    assert sorted(report.inserted) == ["C-1", "C-2", "C-3"]
    errors = dict(report.errors)
    assert sorted(errors) == [5, 6, 7, 8, 9, 14, 17]
    assert errors[5].startswith("recipient_id:")
    assert errors[6].startswith("department:")
    assert errors[7].startswith("letter_type:")
    assert errors[8] == "street: missing"
    assert errors[9].startswith("postal_code:")
    assert errors[14].startswith("registered:")
    assert errors[17].startswith("language:")
    assert report.duplicates == [(10, "C-1", True), (11, "C-2", False), (12, "DB-SAME", True),
                                 (13, "DB-DIFF", False)]
    stored = letters(db)
    assert stored["C-1"]["recipient_name"] == "Janssens, Jan" and stored["C-1"]["registered"] is True
    assert stored["C-2"]["recipient_kind"] == "enterprise" and stored["C-2"]["payload"]["amount_cents"] == 1251
    assert stored["C-3"]["street"] == "Bruul 1\nbus 2"
    assert_no_personal_values([m for _, m in report.errors], *ALL_PERSONAL)
    assert sorted(lid for lid, _, _ in accepted_events(db)) == ["C-1", "C-2", "C-3", "DB-DIFF", "DB-SAME"]


def test_csv_with_a_byte_order_mark_and_missing_columns(db, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text("\ufeffletter_id,department,letter_type,recipient_kind,recipient_id,recipient_name,street,"
                    f"postal_code,city,language\nBOM-1,economy_housing,premium_decision,citizen,{NRN_A},"
                    f"Maes BV,Bruul 3,2800,Mechelen,de\nBOM-2,gas,gas_finding,citizen,{NRN_B}\n", encoding="utf-8")
    report = import_file(db, path)
    assert report.inserted == ["BOM-1"]
    assert report.errors == [(3, "recipient_name: missing")]
    assert letters(db)["BOM-1"]["language"] == "de"


def test_shifted_csv_columns_do_not_leak_names_into_messages(db, tmp_path):
    """An unquoted comma in a name shifts the following columns; the refusal must not echo them."""
    path = tmp_path / "shifted.csv"
    path.write_text("letter_id,department,recipient_name,recipient_kind,letter_type,language,recipient_id,street,"
                    f"postal_code,city\nS-1,finance,Peeters, An,citizen,invoice,nl,{NRN_A},Bruul 1,2800,Mechelen\n"
                    f"S-2,finance,Dubois,Marc,invoice,nl,{NRN_A},Bruul 1,2800,Mechelen\n"
                    f"S-3,finance,Claes,citizen,Lies,nl,{NRN_A},Bruul 1,2800,Mechelen\n"
                    f"S-4,Wouters,citizen,invoice,nl,{NRN_A},Bruul 1,2800,Mechelen\n",
                    encoding="utf-8")
    report = import_file(db, path)
    assert report.inserted == [] and [n for n, _ in report.errors] == [2, 3, 4, 5]
    assert_no_personal_values([m for _, m in report.errors], "Peeters", " An", "'An'", "Marc", "Lies",
                              "Wouters", NRN_A, "Bruul")


# --------------------------------------------------------------------------- validate_row details


def test_validate_row_normalises_ids_and_booleans():
    formatted = f"{NRN_A[:2]}.{NRN_A[2:4]}.{NRN_A[4:6]}-{NRN_A[6:9]}.{NRN_A[9:]}"
    clean = validate_row({**row("V-1"), "recipient_id": formatted, "registered": "Oui", "payload": "{}",
                          "country": "be", "letter_id": " V-1 "})
    assert clean["recipient_id"] == NRN_A and clean["registered"] is True and clean["country"] == "BE"
    assert clean["letter_id"] == "V-1" and clean["payload"] == {}


@pytest.mark.parametrize("overrides,field", [
    ({"letter_id": "-starts-with-dash"}, "letter_id"),
    ({"letter_id": "x" * 65}, "letter_id"),
    ({"recipient_kind": "person"}, "recipient_kind"),
    ({"country": "BEL"}, "country"),
    ({"postal_code": "0800"}, "postal_code"),
    ({"postal_code": "28000"}, "postal_code"),
    ({"registered": 1}, "registered"),
    ({"payload": "[1]"}, "payload"),
    ({"payload": "{nope"}, "payload"),
    ({"recipient_kind": "enterprise"}, "recipient_id"),     # an NRN is not a KBO number
])
def test_validate_row_refuses_with_the_field_name(overrides, field):
    with pytest.raises(RowError) as info:
        validate_row({**row("V-2"), **overrides})
    assert str(info.value).startswith(f"{field}:")
    assert_no_personal_values([str(info.value)], NRN_A, "Bruul")


# --------------------------------------------------------------------------- concurrency


def test_concurrent_imports_of_the_same_file_insert_and_report_each_letter_once(db, pg_url, tmp_path):
    import threading

    import psycopg

    paths = [write_jsonl(tmp_path / f"round{r}.jsonl", [row(f"CC-{r}-{i:04d}", i) for i in range(300)])
             for r in range(4)]
    reports: list = []
    failures: list = []

    def importer(path, barrier):
        try:
            with psycopg.connect(pg_url) as conn:
                barrier.wait()
                reports.append((path, import_file(conn, path)))
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
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
        assert len(inserted) == 300 == len(set(inserted)), "a letter was reported inserted by both imports"
        assert all(rep.ok for rep in both)
        assert sorted(len(rep.duplicates) for rep in both) == [0, 300]
    events = db.execute("SELECT letter_id, count(*) FROM letter_events WHERE event = 'accepted' "
                        "GROUP BY letter_id HAVING count(*) > 1").fetchall()
    db.commit()
    assert events == []
    assert len(letters(db)) == 1200
