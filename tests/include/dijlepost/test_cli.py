"""The `dijlepost` command line (`include.dijlepost.cli.main`) against a real PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import random

import pytest

from demo.sample_payloads import sample_payload
from include.dijlepost import clock
from include.dijlepost.cli import EXIT_CONFIG, EXIT_NOT_RUN, EXIT_OK, EXIT_REFUSED, main
from include.dijlepost.recipients import pseudonym

pytestmark = pytest.mark.integration


def make_nrn(yymmdd: str, serial: int) -> str:
    base = f"{yymmdd}{serial:03d}"
    return f"{base}{97 - int(base) % 97:02d}"


def make_kbo(first8: str) -> str:
    return f"{first8}{97 - int(first8) % 97:02d}"


NRN, NRN_2, KBO = make_nrn("850730", 33), make_nrn("700101", 123), make_kbo("04035784")
BAD_NRN = NRN[:-2] + f"{int(NRN[-2:]) % 97 + 1:02d}"
KEY = os.environ["DIJLEPOST_PSEUDONYM_KEY"].encode()


@pytest.fixture
def run(pg_url, pipeline_url, capsys):
    """The CLI on the session database; `letters import` as the pipeline's login, as documented (it
    refuses a superuser), the administrator's commands as the owner."""

    def _run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        url = pipeline_url if argv[:2] == ("letters", "import") else pg_url
        code = main(["--database-url", url, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def letter(letter_id: str, **overrides) -> dict:
    """A row `letters import` accepts; the payload fits the template of its letter type."""
    row = {
        "letter_id": letter_id,
        "department": "finance",
        "letter_type": "invoice",
        "recipient_kind": "citizen",
        "recipient_id": NRN,
        "recipient_name": "Janssens Jan",
        "street": "Bruul 1",
        "postal_code": "2800",
        "city": "Mechelen",
        "language": "nl",
        **overrides,
    }
    row.setdefault("payload", sample_payload(row["letter_type"], random.Random(letter_id), clock.today()))
    return row


def jsonl(path, *rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def one(db, sql, *params):
    row = db.execute(sql, params).fetchone()
    db.commit()
    return row


# --------------------------------------------------------------------------- db


def test_db_migrate_reports_an_up_to_date_schema(db, run):
    code, out, _ = run("db", "migrate")
    assert code == EXIT_OK
    assert "none (schema up to date)" in out


def test_missing_database_url_is_a_configuration_error(monkeypatch, capsys):
    monkeypatch.delenv("DIJLEPOST_DATABASE_URL", raising=False)
    assert main(["db", "migrate"]) == EXIT_CONFIG
    assert "DIJLEPOST_DATABASE_URL" in capsys.readouterr().err


def test_database_url_from_the_environment(db, pg_url, monkeypatch, capsys):
    monkeypatch.setenv("DIJLEPOST_DATABASE_URL", pg_url)
    assert main(["letters", "status"]) == EXIT_OK
    assert "department" in capsys.readouterr().out


# --------------------------------------------------------------------------- letters import / status / show


def test_import_of_a_clean_file_exits_0_and_is_idempotent(db, run, tmp_path):
    path = jsonl(
        tmp_path / "ok.jsonl", letter("CLI-1"), letter("CLI-2", department="gas", letter_type="gas_finding")
    )
    code, out, err = run("letters", "import", path)
    assert (code, err) == (EXIT_OK, "")
    assert "imported 2 letters, 0 duplicates, 0 refused" in out

    code, out, err = run("letters", "import", path)
    assert code == EXIT_OK
    assert "imported 0 letters, 2 duplicates, 0 refused" in out
    assert "ok.jsonl:1: duplicate CLI-1: already in the outbox, not inserted again" in err
    assert one(db, "SELECT count(*) FROM letters")[0] == 2


def test_import_with_refused_rows_exits_1_naming_line_and_field_only(db, run, tmp_path):
    path = jsonl(
        tmp_path / "mixed.jsonl",
        letter("CLI-1"),
        letter("CLI-BAD", recipient_id=BAD_NRN),
        letter("CLI-PC", postal_code="28"),
    )
    code, out, err = run("letters", "import", path)
    assert code == EXIT_REFUSED
    assert "imported 1 letter, 0 duplicates, 2 refused" in out
    assert "mixed.jsonl:2: refused: recipient_id: not a valid national register or BIS number" in err
    assert "mixed.jsonl:3: refused: postal_code:" in err
    for personal in (BAD_NRN, NRN, "Janssens", "Bruul"):
        assert personal not in out + err


def test_import_of_a_duplicate_with_different_content_exits_1(db, run, tmp_path):
    run("letters", "import", jsonl(tmp_path / "a.jsonl", letter("CLI-1")))
    code, _out, err = run(
        "letters", "import", jsonl(tmp_path / "b.jsonl", letter("CLI-1", postal_code="2801"))
    )
    assert code == EXIT_REFUSED
    assert "b.jsonl:1: duplicate CLI-1: already in the outbox WITH DIFFERENT CONTENT" in err
    assert one(db, "SELECT postal_code FROM letters WHERE letter_id = 'CLI-1'")[0] == "2800"


def test_import_of_a_csv_file(db, run, tmp_path):
    path = tmp_path / "letters.csv"
    payload = json.dumps(letter("CSV-1", letter_type="gas_decision")["payload"]).replace('"', '""')
    path.write_text(
        "letter_id,department,letter_type,recipient_kind,recipient_id,recipient_name,street,"
        f"postal_code,city,language,registered,payload\nCSV-1,gas,gas_decision,enterprise,{KBO},Maes BV,"
        f'Bruul 2,2800,Mechelen,nl,ja,"{payload}"\n',
        encoding="utf-8",
    )
    code, out, _ = run("letters", "import", str(path))
    assert code == EXIT_OK and "imported 1 letter," in out
    assert one(db, "SELECT registered, recipient_id FROM letters WHERE letter_id = 'CSV-1'") == (True, KBO)


def test_import_of_a_missing_file_could_not_run(db, run, tmp_path):
    code, out, err = run("letters", "import", str(tmp_path / "nope.jsonl"))
    assert code == EXIT_NOT_RUN == 2 and "does not exist" in err and out == ""


HEADER = b"letter_id,department,letter_type,recipient_kind,recipient_id,recipient_name,street,postal_code,city,language\n"


@pytest.mark.parametrize(
    "name,content,says",
    [
        ("letters.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx'"),
        ("latin1.csv", HEADER + b"L-1,finance\nL\xe9,finance\n", "line 3: not UTF-8 (byte 0xE9 at column 2)"),
        ("empty.csv", b"", "no letters in the file (it is empty)"),
        ("header.csv", HEADER, "no letters in the file (only the header line)"),
        ("empty.jsonl", b"\n", "no letters in the file"),
    ],
)
def test_import_of_a_file_that_cannot_be_read_as_a_whole_could_not_run(
    db, run, tmp_path, name, content, says
):
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run("letters", "import", str(path))
    assert code == EXIT_NOT_RUN
    assert f"error: {name}: {says}" in err and "nothing imported" in err and "Traceback" not in err
    assert out == ""
    assert one(db, "SELECT count(*) FROM letters")[0] == 0


def test_import_without_a_database_could_not_run(db, tmp_path, capsys):
    path = jsonl(tmp_path / "ok.jsonl", letter("CLI-1"))
    code = main(
        [
            "--database-url",
            "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2",
            "letters",
            "import",
            path,
        ]
    )
    err = capsys.readouterr().err
    assert code == EXIT_NOT_RUN and "cannot reach the database" in err and "Traceback" not in err


def test_import_of_hostile_rows_refuses_each_by_line_imports_the_rest_and_echoes_nothing(db, run, tmp_path):
    secret = "Vermeulen-Geheim"
    lines = [
        json.dumps(letter("H-1")),
        json.dumps(letter("H-2", department=["finance"])),
        json.dumps(letter("H-3", country=32)),
        json.dumps(letter("H-4"))[:-1] + ', "payload": {"amount_due": NaN}}',
        json.dumps(letter("H-5", recipient_name=f"{secret}\x00")),
        json.dumps(letter("H-6", recipient_name={"first": secret})),
        json.dumps({**letter("H-7"), "letter_id": True}),
        json.dumps(letter("H-8", recipient_name=secret * 700_000)),
        json.dumps(letter("H-9", payload={**letter("H-9")["payload"], "amount_due": "-5.00"})),
        json.dumps(letter("H-10", payload={**letter("H-10")["payload"], "amount_due": "1e308"})),
        json.dumps(letter("H-11", payload={**letter("H-11")["payload"], "amount_due": "NaN"})),
        json.dumps(letter("H-12")),
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = run("letters", "import", str(path))
    assert code == EXIT_REFUSED == 1
    assert "imported 2 letters, 0 duplicates, 10 refused" in out
    refused = [l for l in err.splitlines() if ": refused: " in l]
    assert [l.split(": refused: ")[1].split(":")[0] for l in refused] == [
        "department",
        "country",
        "not valid JSON",
        "recipient_name",
        "recipient_name",
        "letter_id",
        "line longer than 1048576 bytes",
        "payload.amount_due",
        "payload.amount_due",
        "payload.amount_due",
    ]
    assert [l.split(":")[1] for l in refused] == [str(n) for n in range(2, 12)]
    assert "Traceback" not in err
    for personal in (secret, NRN, "Janssens", "Bruul"):
        assert personal not in out + err
    assert one(db, "SELECT array_agg(letter_id ORDER BY letter_id) FROM letters")[0] == ["H-1", "H-12"]


def test_letters_status_groups_by_department_and_status(db, run, tmp_path):
    run(
        "letters",
        "import",
        jsonl(
            tmp_path / "s.jsonl",
            letter("S-1"),
            letter("S-2"),
            letter("S-3", department="gas", letter_type="gas_finding"),
        ),
    )
    db.execute(
        "UPDATE letters SET status = 'quarantined', final_at = now(), quarantine_reason = 'x', "
        "decision_rule = 'incomplete_address' WHERE letter_id = 'S-2'"
    )
    db.commit()
    code, out, _ = run("letters", "status")
    assert code == EXIT_OK
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["department", "status", "channel", "rule", "letters"]
    assert ["finance", "quarantined", "-", "incomplete_address", "1"] in lines
    assert sorted(lines[1:]) == [
        ["finance", "pending", "-", "-", "1"],
        ["finance", "quarantined", "-", "incomplete_address", "1"],
        ["gas", "pending", "-", "-", "1"],
    ]

    code, out, _ = run("letters", "status", "--department", "gas")
    assert [line.split() for line in out.splitlines()[1:]] == [["gas", "pending", "-", "-", "1"]]


def test_letters_status_says_why_a_letter_was_quarantined_not_the_rule_it_had_before(db, run, tmp_path):
    """A paper letter the print house rejected, or one that failed to render, is not shown with the
    routing rule (`no_ebox`) that sent it to paper, but with who quarantined it."""
    from include.dijlepost.outbox import RunContext, record_events

    run("letters", "import", jsonl(tmp_path / "q.jsonl", letter("Q-1"), letter("Q-2"), letter("Q-3")))
    db.execute(
        "INSERT INTO print_batches (batch_id, department, postage_class, letter_count, hand_over_on) "
        "VALUES ('finance-standard-0000000000000001', 'finance', 'standard', 1, current_date)"
    )
    db.execute(
        "UPDATE letters SET status = 'quarantined', final_at = now(), channel = 'paper', "
        "decision_rule = 'no_ebox', quarantine_reason = 'print house: unreadable', print_status = 'rejected', "
        "print_batch_id = 'finance-standard-0000000000000001', print_acknowledged_at = now(), "
        "print_reason = 'unreadable' WHERE letter_id = 'Q-1'"
    )
    db.execute(
        "UPDATE letters SET status = 'quarantined', final_at = now(), channel = 'paper', "
        "decision_rule = 'no_ebox', quarantine_reason = 'render: a field is too long' WHERE letter_id = 'Q-2'"
    )
    with db.cursor() as cur:
        record_events(
            cur, RunContext(), [("Q-2", "quarantined", {"stage": "render", "reason": "render: ..."})]
        )
    db.commit()
    _, out, _ = run("letters", "status")
    lines = sorted(line.split() for line in out.splitlines()[1:])
    assert lines == [
        ["finance", "pending", "-", "-", "1"],
        ["finance", "quarantined", "paper", "at", "render", "1"],
        ["finance", "quarantined", "paper", "rejected_by_print_house", "1"],
    ]


def test_import_and_verify_speak_plainly(db, run, tmp_path):
    code, out, _ = run("letters", "import", jsonl(tmp_path / "one.jsonl", letter("ONE-1")))
    assert "imported 1 letter, 0 duplicates, 0 refused" in out
    code, out, _ = run("audit", "verify")
    assert code == EXIT_OK
    assert "privacy: none of the 1 events holds a recipient's id, name or street" in out


def test_letters_show_prints_state_and_history_without_personal_data(db, run, tmp_path):
    run("letters", "import", jsonl(tmp_path / "s.jsonl", letter("SHOW-1")))
    code, out, _ = run("letters", "show", "SHOW-1")
    assert code == EXIT_OK
    assert "letter_id: SHOW-1" in out and "status: pending" in out and "department: finance" in out
    assert "accepted" in out and "letters_import" in out
    for personal in (NRN, "Janssens", "Bruul", "2800", "Mechelen"):
        assert personal not in out


def test_times_the_cli_prints_are_europe_brussels_whatever_the_server_s_zone(db, run, tmp_path):
    """An event written at 12:00 UTC in winter reads 13:00 CET; a phase change at 12:00 UTC in summer
    reads 14:00 CEST, in `letters show` and `rollout history` alike."""
    run("letters", "import", jsonl(tmp_path / "t.jsonl", letter("TZ-1")))
    run("rollout", "set", "gas", "shadow", "--reason", "summer", "--by", "ann")
    db.execute("ALTER DATABASE " + one(db, "SELECT current_database()")[0] + " SET TimeZone = 'UTC'")
    db.execute("ALTER TABLE letter_events DISABLE TRIGGER USER")
    db.execute("UPDATE letter_events SET at = '2026-01-15 12:00:00+00' WHERE letter_id = 'TZ-1'")
    db.execute("ALTER TABLE letter_events ENABLE TRIGGER USER")
    db.execute("UPDATE rollout_history SET changed_at = '2026-07-15 12:00:00+00'")
    db.commit()
    _, out, _ = run("letters", "show", "TZ-1")
    assert "2026-01-15 13:00:00 CET  accepted" in out, out
    _, out, _ = run("rollout", "history", "--department", "gas")
    assert out.startswith("2026-07-15 14:00 CEST  gas"), out


def test_letters_show_of_an_unknown_letter_exits_1(db, run):
    code, _, err = run("letters", "show", "NOPE-1")
    assert code == EXIT_REFUSED and "NOPE-1" in err


# --------------------------------------------------------------------------- rollout


def test_rollout_show_lists_every_department(db, run):
    code, out, _ = run("rollout", "show")
    assert code == EXIT_OK
    phases = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert phases == {"economy_housing": "live", "finance": "live", "gas": "live"}


def test_rollout_set_changes_the_phase_with_history(db, run):
    code, out, err = run("rollout", "set", "gas", "shadow", "--reason", "shadow week", "--by", "tester")
    assert (code, err) == (EXIT_OK, "")
    assert "gas: live -> shadow" in out
    assert one(db, "SELECT phase, changed_by, reason FROM rollout_phases WHERE department = 'gas'") == (
        "shadow",
        "tester",
        "shadow week",
    )
    assert one(
        db, "SELECT from_phase, to_phase, changed_by FROM rollout_history ORDER BY id DESC LIMIT 1"
    ) == ("live", "shadow", "tester")
    _, out, _ = run("rollout", "show")
    assert any(line.split()[:2] == ["gas", "shadow"] for line in out.splitlines())


@pytest.mark.parametrize(
    "argv,message",
    [
        (["finance", "liv", "--reason", "typo"], "unknown phase"),
        (["finance", "paper", "--reason", "   "], "reason is required"),
    ],
)
def test_rollout_set_refusals_exit_1_and_change_nothing(db, run, argv, message):
    code, out, err = run("rollout", "set", *argv, "--by", "tester")
    assert code == EXIT_REFUSED and message in err and out == ""
    assert one(db, "SELECT phase FROM rollout_phases WHERE department = 'finance'")[0] == "live"
    assert one(db, "SELECT count(*) FROM rollout_history")[0] == 0


@pytest.fixture
def rollout_admin(db):
    """Reset what migration 0006 added (pilot percentage, exemption history), before and after."""

    def reset():
        db.rollback()
        db.execute("UPDATE rollout_phases SET pilot_percent = 0")
        db.execute("TRUNCATE paper_exemption_history RESTART IDENTITY")
        db.commit()

    reset()
    yield db
    reset()


def test_rollout_set_refuses_an_unknown_department_with_the_rules_of_rollout_py(db, run):
    code, out, err = run("rollout", "set", "culture", "live", "--reason", "x", "--by", "tester")
    assert code == EXIT_REFUSED and out == ""
    assert "unknown department 'culture'; expected one of finance, gas, economy_housing" in err
    assert one(db, "SELECT count(*) FROM rollout_history")[0] == 0


def test_rollout_set_pilot_percent(rollout_admin, run):
    db = rollout_admin
    code, out, err = run(
        "rollout", "set", "gas", "pilot", "--reason", "a fifth", "--by", "tester", "--pilot-percent", "20"
    )
    assert (code, err) == (EXIT_OK, "") and "gas: live -> pilot" in out
    assert one(db, "SELECT phase, pilot_percent FROM rollout_phases WHERE department = 'gas'") == (
        "pilot",
        20,
    )
    _, out, _ = run("rollout", "show")
    assert any(line.split()[:2] == ["gas", "pilot"] and "pilot%=20" in line for line in out.splitlines())


@pytest.mark.parametrize(
    "percent,message",
    [
        ("101", "outside 0..100"),
        ("-3", "not a whole number"),
        ("half", "not a whole number"),
        ("0", "needs a pilot group"),
        ("²", "digits 0-9 only"),
        ("１０", "digits 0-9 only"),
        ("٣", "digits 0-9 only"),
        ("1_0", "digits 0-9 only"),
        ("+5", "digits 0-9 only"),
        ("1" * 5000, "of 5000 characters"),
    ],
)
def test_rollout_set_refuses_a_bad_pilot_percent_and_changes_nothing(rollout_admin, run, percent, message):
    db = rollout_admin
    code, out, err = run(
        "rollout", "set", "gas", "pilot", "--reason", "x", "--by", "t", "--pilot-percent", percent
    )
    assert code == EXIT_REFUSED and message in err and out == ""
    assert one(db, "SELECT phase, pilot_percent FROM rollout_phases WHERE department = 'gas'") == ("live", 0)
    assert one(db, "SELECT count(*) FROM rollout_history")[0] == 0


def test_rollout_set_refuses_a_change_to_the_phase_it_already_has(rollout_admin, run):
    db = rollout_admin
    code, out, err = run("rollout", "set", "gas", "live", "--reason", "again", "--by", "t")
    assert (
        code == EXIT_REFUSED
        and out == ""
        and "gas is already in phase live" in err
        and "nothing to change" in err
    )
    assert one(db, "SELECT count(*) FROM rollout_history")[0] == 0
    run("rollout", "set", "gas", "pilot", "--reason", "a tenth", "--by", "t", "--pilot-percent", "10")
    code, _, err = run(
        "rollout", "set", "gas", "pilot", "--reason", "same", "--by", "t", "--pilot-percent", "10 %"
    )
    assert code == EXIT_REFUSED and "already in phase pilot" in err
    code, out, _ = run(
        "rollout", "set", "gas", "pilot", "--reason", "a fifth", "--by", "t", "--pilot-percent", "20"
    )
    assert code == EXIT_OK and "gas: pilot -> pilot" in out
    assert one(db, "SELECT count(*) FROM rollout_history")[0] == 2


def test_rollout_set_refuses_a_reason_too_long_to_keep(rollout_admin, run):
    db = rollout_admin
    code, _out, err = run("rollout", "set", "gas", "paper", "--reason", "x" * 501, "--by", "t")
    assert code == EXIT_REFUSED and "the reason is 501 characters long; at most 500" in err
    assert "x" * 100 not in err
    assert one(db, "SELECT count(*) FROM rollout_history")[0] == 0


def test_rollout_history_lists_changes_newest_first(rollout_admin, run):
    run("rollout", "set", "gas", "shadow", "--reason", "measure", "--by", "ann")
    run("rollout", "set", "gas", "pilot", "--reason", "ten percent", "--by", "bob", "--pilot-percent", "10")
    run("rollout", "set", "finance", "paper", "--reason", "printer test", "--by", "cas")
    code, out, _ = run("rollout", "history", "--department", "gas")
    lines = out.splitlines()
    assert code == EXIT_OK and len(lines) == 2
    assert (
        "gas" in lines[0] and "shadow -> pilot" in lines[0] and "by bob pilot=0+10%: ten percent" in lines[0]
    )
    assert "live -> shadow" in lines[1] and "by ann" in lines[1] and "measure" in lines[1]
    code, out, _ = run("rollout", "history", "--limit", "1")
    assert out.count("\n") == 1 and "finance" in out and "printer test" in out
    code, _, err = run("rollout", "history", "--department", "culture")
    assert code == EXIT_REFUSED and "unknown department" in err


def test_rollout_shadow_report_shows_the_share_and_the_saving(rollout_admin, run, monkeypatch):
    db = rollout_admin
    monkeypatch.setenv("DIJLEPOST_TARIFF_POSTAGE_EUR", "1.00")
    monkeypatch.setenv("DIJLEPOST_TARIFF_REGISTERED_SURCHARGE_EUR", "5.00")
    monkeypatch.setenv("DIJLEPOST_TARIFF_PRINT_PER_LETTER_EUR", "0.20")
    monkeypatch.setenv("DIJLEPOST_TARIFF_PRINT_PER_EXTRA_PAGE_EUR", "0.10")
    monkeypatch.setenv("DIJLEPOST_TARIFF_PRINT_PER_EXTRA_SHEET_EUR", "0.05")
    run("rollout", "set", "economy_housing", "shadow", "--reason", "measure", "--by", "t")
    rows = [("ebox", False, 1)] * 3 + [
        ("ebox", True, 3),
        ("paper", False, 1),
        ("paper", False, 2),
        (None, False, None),
    ]
    with db.cursor() as cur:
        for i, (shadow, registered, pages) in enumerate(rows):
            cur.execute(
                "INSERT INTO letters (letter_id, department, letter_type, recipient_kind, recipient_id, "
                "recipient_name, street, postal_code, city, language, registered, rollout_phase, channel, "
                "decision_rule, decision_reason, shadow_channel, decided_at, pdf_pages, status, claim_run_id) "
                "VALUES (%s, 'economy_housing', 'premium_decision', 'citizen', %s, 'Test', 'Bruul 1', '2800', "
                "'Mechelen', 'nl', %s, 'shadow', %s, 'r', 'why', %s, now(), %s, 'processing', 'run-1')",
                (f"EH-{i}", NRN, registered, "paper" if shadow else None, shadow, pages),
            )
    db.commit()
    code, out, err = run("rollout", "shadow-report", "economy_housing")
    assert (code, err) == (EXIT_OK, "")
    # by hand: 4 would-be-eBox letters of 6 sendable; postage 3 x 1.00 + (1.00 + 5.00) registered;
    # printing 3 x 0.20 + (0.20 + 2 extra pages x 0.10 + 1 extra sheet x 0.05: 3 pages duplex)
    assert "phase now: shadow" in out
    assert "letters decided                      7" in out
    assert "would have gone to eBox              4   (66.7 % of the sendable letters)" in out
    assert "quarantined                          1" in out
    assert "postage saved          EUR       9.00" in out
    assert "printing saved         EUR       1.05" in out
    assert "total saved            EUR      10.05" in out
    assert "DIJLEPOST_TARIFF_POSTAGE_EUR" in out  # the source of the tariffs is named
    code, out, _ = run("rollout", "shadow-report", "gas")
    assert code == EXIT_OK and "letters decided                      0" in out and "no letters decided" in out
    code, _, err = run("rollout", "shadow-report", "culture")
    assert code == EXIT_REFUSED and "unknown department" in err
    monkeypatch.setenv("DIJLEPOST_TARIFF_POSTAGE_EUR", "free")
    code, _, err = run("rollout", "shadow-report", "economy_housing")
    assert code == EXIT_REFUSED and "DIJLEPOST_TARIFF_POSTAGE_EUR='free'" in err


def test_rollout_exemptions_list_and_history(rollout_admin, run):
    p = pseudonym(KEY, "citizen", NRN)
    run("rollout", "exempt", "add", "citizen", NRN, "--reason", "digipunt", "--by", "clerk")
    code, out, _ = run("rollout", "exemptions")
    assert code == EXIT_OK and p in out and "by clerk: digipunt" in out and NRN not in out
    run("rollout", "exempt", "remove", "citizen", NRN, "--reason", "internet at home", "--by", "desk")
    code, out, _ = run("rollout", "exemptions")
    assert out == ""
    code, out, _ = run("rollout", "exemptions", "--history")
    lines = out.splitlines()
    assert len(lines) == 2 and "remove" in lines[0] and "by desk: internet at home" in lines[0]
    assert "add" in lines[1] and p in lines[1] and NRN not in out


def test_rollout_exempt_remove_needs_a_reason(rollout_admin, run):
    run("rollout", "exempt", "add", "citizen", NRN, "--reason", "digipunt", "--by", "clerk")
    code, _, err = run("rollout", "exempt", "remove", "citizen", NRN, "--reason", "  ", "--by", "clerk")
    assert code == EXIT_REFUSED and "reason is required to remove" in err
    assert one(rollout_admin, "SELECT count(*) FROM paper_exemptions")[0] == 1


def test_rollout_set_with_a_missing_pilot_file_is_refused(db, run, tmp_path):
    code, _, err = run(
        "rollout", "set", "gas", "pilot", "--reason", "x", "--pilot-file", str(tmp_path / "no.csv")
    )
    assert code == EXIT_REFUSED and "does not exist" in err
    assert one(db, "SELECT count(*) FROM rollout_history")[0] == 0


def test_rollout_set_pilot_file_stores_pseudonyms(db, run, tmp_path):
    pilot = tmp_path / "pilot.txt"
    pilot.write_text(
        f"citizen,{NRN}\n\nenterprise,{KBO}\ncitizen,{NRN_2[:2]}.{NRN_2[2:4]}.{NRN_2[4:6]}-"
        f"{NRN_2[6:9]}.{NRN_2[9:]}\n"
    )
    code, out, _ = run(
        "rollout", "set", "finance", "pilot", "--reason", "pilot", "--by", "t", "--pilot-file", str(pilot)
    )
    assert code == EXIT_OK
    allowlist = one(db, "SELECT pilot_allowlist FROM rollout_phases WHERE department = 'finance'")[0]
    assert sorted(allowlist) == sorted(
        [pseudonym(KEY, "citizen", NRN), pseudonym(KEY, "enterprise", KBO), pseudonym(KEY, "citizen", NRN_2)]
    )
    assert NRN not in out


def test_rollout_set_pilot_file_with_a_bad_line_changes_nothing(db, run, tmp_path):
    pilot = tmp_path / "pilot.txt"
    pilot.write_text(f"citizen,{NRN}\ncitizen,{BAD_NRN}\n")
    code, _out, err = run(
        "rollout", "set", "finance", "pilot", "--reason", "pilot", "--pilot-file", str(pilot)
    )
    assert code == EXIT_REFUSED
    assert "pilot.txt:2: refused" in err and BAD_NRN not in err
    assert one(db, "SELECT phase FROM rollout_phases WHERE department = 'finance'")[0] == "live"


def test_rollout_exempt_add_and_remove(db, run):
    p = pseudonym(KEY, "citizen", NRN)
    formatted = f"{NRN[:2]}.{NRN[2:4]}.{NRN[4:6]}-{NRN[6:9]}.{NRN[9:]}"
    code, out, _ = run(
        "rollout", "exempt", "add", "citizen", formatted, "--reason", "digipunt", "--by", "clerk"
    )
    assert code == EXIT_OK and p in out and "done" in out and NRN not in out
    assert one(db, "SELECT recipient_pseudonym, added_by, reason FROM paper_exemptions") == (
        p,
        "clerk",
        "digipunt",
    )

    code, out, _ = run("rollout", "exempt", "add", "citizen", NRN, "--reason", "again", "--by", "clerk")
    assert code == EXIT_OK and "nothing to change" in out

    code, out, _ = run(
        "rollout", "exempt", "remove", "citizen", NRN, "--reason", "back to eBox", "--by", "clerk"
    )
    assert code == EXIT_OK and "done" in out
    assert one(db, "SELECT count(*) FROM paper_exemptions")[0] == 0
    code, out, _ = run("rollout", "exempt", "remove", "citizen", NRN, "--reason", "again", "--by", "clerk")
    assert code == EXIT_OK and "nothing to change" in out


def test_rollout_exempt_refuses_an_invalid_id_without_echoing_it(db, run):
    code, out, err = run("rollout", "exempt", "add", "citizen", BAD_NRN, "--reason", "x", "--by", "clerk")
    assert code == EXIT_REFUSED and "refused" in err and BAD_NRN not in err + out
    assert one(db, "SELECT count(*) FROM paper_exemptions")[0] == 0


def test_rollout_exempt_refuses_an_empty_reason(db, run):
    code, _, err = run("rollout", "exempt", "add", "enterprise", KBO, "--reason", " ", "--by", "clerk")
    assert code == EXIT_REFUSED and "reason" in err
    assert one(db, "SELECT count(*) FROM paper_exemptions")[0] == 0


def test_rollout_exempt_without_a_pseudonym_key_is_a_configuration_error(db, run, monkeypatch):
    monkeypatch.setenv("DIJLEPOST_PSEUDONYM_KEY", "short")
    code, _, err = run("rollout", "exempt", "add", "citizen", NRN, "--reason", "x", "--by", "clerk")
    assert code == EXIT_CONFIG and "DIJLEPOST_PSEUDONYM_KEY" in err
    assert one(db, "SELECT count(*) FROM paper_exemptions")[0] == 0


def test_a_resent_file_names_ten_duplicates_and_counts_the_rest(db, run, tmp_path):
    path = jsonl(tmp_path / "again.jsonl", *[letter(f"CLI-R{i:02d}") for i in range(15)])
    assert run("letters", "import", path)[0] == EXIT_OK
    code, out, err = run("letters", "import", path)
    assert code == EXIT_OK
    assert "imported 0 letters, 15 duplicates, 0 refused" in out
    assert len([l for l in err.splitlines() if ": duplicate CLI-R" in l]) == 10
    assert "and 5 more identical duplicates" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["rollout", "history", "--limit", "１０"],
        ["rollout", "history", "--limit", "0"],
        ["rollout", "shadow-report", "gas", "--days", "²"],
        ["rollout", "exemptions", "--limit", "-5"],
    ],
)
def test_rollout_counts_are_whole_numbers_in_ascii_digits(db, run, argv, capsys):
    with pytest.raises(SystemExit) as refused:
        run(*argv)
    assert refused.value.code == 2
    assert "is not a whole number of at least 1 in digits 0-9" in capsys.readouterr().err


def _parsers(parser):
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_command_and_option_of_the_cli_says_what_it_is_for(capsys):
    from include.dijlepost.cli import build_parser

    parsers = list(_parsers(build_parser()))
    assert len(parsers) >= 18
    for parser in parsers:
        assert parser.description, f"{parser.prog}: no description"
        for action in parser._actions:
            assert action.help, f"{parser.prog} {action.option_strings or action.dest}: no help text"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("db", "letters", "rollout", "audit"):
        line = next(ln for ln in out.splitlines() if ln.split()[:1] == [command])
        assert len(line.split()) > 3, line  # the command and a line on what it is for
    assert "{db,letters,rollout,audit}" not in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_import_shows_a_progress_bar_on_a_terminal_and_nothing_extra_in_a_pipe(tmp_path):
    from include.dijlepost.cli import _with_progress

    path = tmp_path / "big.jsonl"
    path.write_text("".join(f'{{"n": {i}}}\n' for i in range(200)))
    rows = [(i + 1, {"n": i}) for i in range(200)]
    pipe = io.StringIO()
    assert list(_with_progress(iter(rows), path, pipe)) == rows
    assert pipe.getvalue() == ""
    terminal = _Terminal()
    assert list(_with_progress(iter(rows), path, terminal)) == rows
    shown = terminal.getvalue()
    assert "checking big.jsonl" in shown and "200/200" in shown and "big.jsonl: checked; inserting" in shown
