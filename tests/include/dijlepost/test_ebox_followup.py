"""Read status and the paper follow-up of unread important eBox letters, against real PostgreSQL,
the eBox sandbox over HTTPS and (for the print path) sshd."""

from __future__ import annotations

import json
import re
import threading
from datetime import date, timedelta

import psycopg
import pytest

from demo import dataset
from include.dijlepost import ebox_followup, pipeline
from include.dijlepost.ebox import delivery
from include.dijlepost.ebox.client import EboxClient
from include.dijlepost.intake import import_rows
from include.dijlepost.outbox import RunContext, claim
from include.dijlepost.printhouse import handoff
from include.dijlepost.printhouse.hook import PrintHouseHook
from include.dijlepost.rendering import LetterRenderer
from include.dijlepost.rollout import read_state
from include.dijlepost.waves import WAVES, Wave
from tests.support.contracts import swagger_checked  # noqa: F401  (fixture)
from tests.support.work import chunk_work

# Every request to the eBox here is checked against the published Swagger files too.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("swagger_checked")]
KEY = b"test-pseudonym-key-not-secret"
WAVE = WAVES["finance"]
IMPORTANT = set(WAVE.followup_letter_types)
CTX = RunContext(dag_id="letters_finance", run_id="manual__1", task_id="test", map_index=-1, try_number=1)
FCTX = RunContext(
    dag_id="letters_ebox_followup", run_id="scheduled__1", task_id="test", map_index=-1, try_number=1
)


@pytest.fixture(scope="module")
def renderer():
    return LetterRenderer(today=date(2026, 3, 2))


@pytest.fixture
def client(ebox):
    with EboxClient(ebox.config(backoff_base_seconds=0.01, max_attempts=2, timeout_seconds=5)) as c:
        yield c


def run_wave_until_delivery(db, client, renderer, tmp_path, run: str) -> list[int]:
    """claim -> activation -> decide -> render -> eBox delivery, as the wave DAG does."""
    c = claim(
        db,
        chunk_work(run, ctx=CTX),
        batch_size=1000,
        chunk_size=1000,
        lease=timedelta(hours=3),
    )
    delivery.check_activation(
        db, chunk_work(run, key=KEY, ctx=CTX), client=client, freshness=timedelta(days=7)
    )
    pipeline.decide_claim(db, chunk_work(run, wave=WAVE, key=KEY, ctx=CTX), state=read_state(db, "finance"))
    for chunk in c.chunks:
        pipeline.render_chunk(
            db, chunk_work(run, ctx=CTX, chunk=chunk), renderer=renderer, document_root=tmp_path / "docs"
        )
        delivery.deliver_chunk_to_ebox(
            db, chunk_work(run, wave=WAVE, key=KEY, ctx=CTX, chunk=chunk), client=client, renderer=renderer
        )
    return c.chunks


def deliver(db, ebox, client, renderer, tmp_path, n: int, seed_no: int) -> dict[str, dict]:
    data = dataset.build(
        seed=seed_no,
        mix={"finance": n},
        today=date(2026, 3, 2),
        prefix=f"F{seed_no}",
        ebox_share=1.0,
        mistakes=False,
    )
    assert not import_rows(db, enumerate(data.letters, start=1)).errors
    for kind, rid in data.ebox_active:
        ebox.state.register_recipient(kind, rid, active=True)
    run_wave_until_delivery(db, client, renderer, tmp_path, "letters_finance:manual__1")
    return letters(db)


def letters(db) -> dict[str, dict]:
    cur = db.execute(
        "SELECT letter_id, letter_type, status, channel, decision_rule, ebox_message_id, "
        "ebox_read_at, ebox_status_checked_at, followup_of, print_batch_id FROM letters"
    )
    names = [d[0] for d in cur.description]
    rows = {r[0]: dict(zip(names, r)) for r in cur.fetchall()}
    db.commit()
    return rows


def age_publications(db, days: int) -> None:
    db.execute(
        "UPDATE letters SET final_at = final_at - make_interval(days => %s) WHERE status = 'delivered_ebox'",
        (days,),
    )
    db.commit()


def events(db, event: str) -> list[tuple[str, dict]]:
    rows = db.execute(
        "SELECT letter_id, details FROM letter_events WHERE event = %s ORDER BY event_id", (event,)
    ).fetchall()
    db.commit()
    return rows


def originals_with_types(rows: dict[str, dict], types: set[str]) -> set[str]:
    return {lid for lid, r in rows.items() if r["followup_of"] is None and r["letter_type"] in types}


# --------------------------------------------------------------------------- configuration


def test_policies_follow_the_wave_configuration():
    rules = {p.department: p for p in ebox_followup.policies()}
    assert set(rules) == {w.department for w in WAVES.values() if w.followup_letter_types}
    assert rules["finance"].letter_types == ("reminder", "tax_assessment")
    assert rules["gas"].letter_types == ("gas_decision",)
    assert all(p.after == timedelta(days=14) for p in rules.values())


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"followup_letter_types": ("gas_decision",)}, "followup_letter_types"),
        ({"followup_letter_types": ("reminder",), "followup_after_days": 0}, "followup_after_days"),
        ({"followup_without_message_id": {"reminder": "maybe"}}, "followup_without_message_id"),
        ({"followup_without_message_id": {"invoice": "no_copy"}}, "followup_without_message_id"),
    ],
)
def test_a_misconfigured_wave_is_refused_with_the_field(overrides, field):
    wave = Wave(**{**WAVE.__dict__, **overrides})
    with pytest.raises(ValueError, match=field):
        ebox_followup.policies([wave])


def test_copy_ids_fit_the_letter_id_rule_and_differ_per_attempt():
    pattern = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    assert ebox_followup.copy_letter_id("FIN-2026-000001") == "FIN-2026-000001-P"
    longest = "L" * 64
    ids = {ebox_followup.copy_letter_id(longest, a) for a in range(3)} | {
        ebox_followup.copy_letter_id("X", 1)
    }
    assert len(ids) == 4 and all(pattern.match(i) for i in ids)


# --------------------------------------------------------------------------- read status


def test_read_status_is_fetched_in_bounded_batches_and_stored(db, ebox, client, renderer, tmp_path):
    rows = deliver(db, ebox, client, renderer, tmp_path, 7, seed_no=51)
    published = {lid: r for lid, r in rows.items() if r["status"] == "delivered_ebox"}
    assert len(published) == 7 and all(r["ebox_message_id"] for r in published.values())
    read = sorted(published)[:3]
    for lid in read:
        assert ebox.state.mark_read(published[lid]["ebox_message_id"])

    result = ebox_followup.fetch_read_status(db, client, FCTX, batch_size=3)
    assert (result["calls"], result["checked"], result["read"], result["unread"]) == (3, 7, 3, 4)
    after = letters(db)
    assert {lid for lid, r in after.items() if r["ebox_read_at"] is not None} == set(read)
    assert all(r["ebox_status_checked_at"] is not None for r in after.values())
    assert sorted(lid for lid, _ in events(db, "ebox_read")) == read

    # Checked a moment ago: a rerun the same day asks nothing; read letters are never asked again.
    assert ebox_followup.fetch_read_status(db, client, FCTX)["candidates"] == 0
    again = ebox_followup.fetch_read_status(db, client, FCTX, recheck_after=timedelta(0))
    assert again["candidates"] == 4 and again["read"] == 0
    assert len(events(db, "ebox_read")) == 3


def test_batch_size_above_the_ebox_limit_is_refused(db, client):
    with pytest.raises(ValueError, match="batch_size"):
        ebox_followup.fetch_read_status(db, client, FCTX, batch_size=1001)


# --------------------------------------------------------------------------- paper copies


def test_unread_important_letters_get_exactly_one_paper_copy(db, ebox, client, renderer, tmp_path):
    rows = deliver(db, ebox, client, renderer, tmp_path, 12, seed_no=52)
    important = originals_with_types(rows, IMPORTANT)
    assert important and important != set(rows), "the data set must mix important and other types"
    read_one = sorted(important)[0]
    ebox.state.mark_read(rows[read_one]["ebox_message_id"])

    # Within the period nothing is copied, read or not.
    ebox_followup.fetch_read_status(db, client, FCTX)
    assert ebox_followup.create_paper_copies(db, FCTX)["created"] == 0
    # Checked before the period ended and never since: an old "unread" is not enough.
    age_publications(db, 15)
    db.execute("UPDATE letters SET ebox_status_checked_at = final_at + interval '1 day'")
    db.commit()
    assert ebox_followup.create_paper_copies(db, FCTX)["created"] == 0

    ebox_followup.fetch_read_status(db, client, FCTX, recheck_after=timedelta(0))
    result = ebox_followup.create_paper_copies(db, FCTX)
    expected = important - {read_one}
    assert result["created"] == len(expected) and result["by_reason"] == {"unread": len(expected)}
    after = letters(db)
    copies = {r["followup_of"]: lid for lid, r in after.items() if r["followup_of"]}
    assert set(copies) == expected
    for original, copy_id in copies.items():
        assert copy_id == f"{original}-P" and after[copy_id]["status"] == "pending"
    same = db.execute(
        "SELECT count(*) FROM letters o JOIN letters c ON c.followup_of = o.letter_id "
        "WHERE (o.department, o.letter_type, o.recipient_kind, o.recipient_id, o.recipient_name, "
        "o.street, o.postal_code, o.city, o.country, o.language, o.registered, o.payload) IS NOT "
        "DISTINCT FROM (c.department, c.letter_type, c.recipient_kind, c.recipient_id, "
        "c.recipient_name, c.street, c.postal_code, c.city, c.country, c.language, c.registered, "
        "c.payload)"
    ).fetchone()[0]
    assert same == len(expected)
    assert {lid for lid, _ in events(db, "ebox_followup_copy_created")} == expected
    assert {d["followup_of"] for _, d in events(db, "created_as_followup")} == expected

    # Reruns, later days, a fresh status check: never a second copy.
    for _ in range(2):
        ebox_followup.fetch_read_status(db, client, FCTX, recheck_after=timedelta(0))
        assert ebox_followup.create_paper_copies(db, FCTX)["created"] == 0
    assert len(events(db, "ebox_followup_copy_created")) == len(expected)


def test_the_copy_goes_through_the_wave_to_the_print_house(
    db, ebox, client, renderer, tmp_path, printhouse_dirs, monkeypatch
):
    rows = deliver(db, ebox, client, renderer, tmp_path, 6, seed_no=53)
    important = originals_with_types(rows, IMPORTANT)
    assert important
    age_publications(db, 20)
    ebox_followup.fetch_read_status(db, client, FCTX)
    assert ebox_followup.create_paper_copies(db, FCTX)["created"] == len(important)
    published_before = len(ebox.state.publications())

    run2 = "letters_finance:manual__2"
    chunks = run_wave_until_delivery(db, client, renderer, tmp_path, run2)
    assert chunks
    after = letters(db)
    copies = {lid: r for lid, r in after.items() if r["followup_of"]}
    assert {(r["channel"], r["decision_rule"]) for r in copies.values()} == {
        ("paper", "unread_ebox_followup")
    }
    assert len(ebox.state.publications()) == published_before  # the copy never goes to the eBox
    monkeypatch.setenv("AIRFLOW_CONN_PRINTHOUSE_SFTP", json.dumps(printhouse_dirs.airflow_connection()))
    for chunk in chunks:
        handoff.hand_over(
            db,
            chunk_work(run2, wave=WAVE, ctx=CTX, chunk=chunk),
            hook=PrintHouseHook(),
            work_dir=tmp_path / "work",
        )
    after = letters(db)
    assert {after[c]["status"] for c in copies} == {"handed_to_print"}
    assert {after[o]["status"] for o in important} == {"delivered_ebox"}
    # Handed to print, the copy is final: the next follow-up run copies nothing.
    assert ebox_followup.create_paper_copies(db, FCTX)["created"] == 0


def test_a_letter_without_message_id_counts_as_unread_for_important_types(
    db, ebox, client, renderer, tmp_path
):
    rows = deliver(db, ebox, client, renderer, tmp_path, 8, seed_no=54)
    important = originals_with_types(rows, IMPORTANT)
    other = originals_with_types(rows, set(WAVE.letter_types) - IMPORTANT)
    assert important and other
    # What a 409 answer to a recipient who did open the eBox leaves behind (the first answer was lost).
    db.execute("UPDATE letters SET ebox_message_id = NULL")
    db.commit()
    age_publications(db, 14)
    assert ebox_followup.fetch_read_status(db, client, FCTX)["candidates"] == 0
    result = ebox_followup.create_paper_copies(db, FCTX)
    assert result["by_reason"] == {"no_message_id": len(important)}
    assert {r["followup_of"] for r in letters(db).values() if r["followup_of"]} == important


def test_the_letter_type_setting_decides_the_follow_up_of_a_letter_without_message_id(
    db, ebox, client, renderer, tmp_path
):
    rows = deliver(db, ebox, client, renderer, tmp_path, 12, seed_no=56)
    reminders = originals_with_types(rows, {"reminder"})
    assessments = originals_with_types(rows, {"tax_assessment"})
    assert reminders and assessments
    db.execute("UPDATE letters SET ebox_message_id = NULL")  # delivered from lost first answers
    db.commit()
    age_publications(db, 14)
    wave = Wave(**{**WAVE.__dict__, "followup_without_message_id": {"reminder": "no_copy"}})
    rules = ebox_followup.policies([wave])
    result = ebox_followup.create_paper_copies(db, FCTX, rules)
    # tax_assessment keeps the default (paper_copy); reminders trust the eBox.
    assert result["by_reason"] == {"no_message_id": len(assessments), "no_message_id_no_copy": len(reminders)}
    assert {r["followup_of"] for r in letters(db).values() if r["followup_of"]} == assessments
    not_created = db.execute(
        "SELECT letter_id, details FROM letter_events WHERE event = 'ebox_followup_not_created'"
    ).fetchall()
    db.commit()
    assert {lid for lid, _ in not_created} == reminders
    assert all(d["setting"] == "followup_without_message_id[reminder] = no_copy" for _, d in not_created)
    # Said once: the next run neither copies nor records again.
    assert ebox_followup.create_paper_copies(db, FCTX, rules)["by_reason"] == {}
    assert db.execute(
        "SELECT count(*) FROM letter_events WHERE event = 'ebox_followup_not_created'"
    ).fetchone()[0] == len(reminders)
    db.commit()


def test_letters_past_the_horizon_are_left_alone(db, ebox, client, renderer, tmp_path):
    deliver(db, ebox, client, renderer, tmp_path, 5, seed_no=55)
    age_publications(db, 61)
    assert ebox_followup.fetch_read_status(db, client, FCTX)["candidates"] == 0
    assert ebox_followup.create_paper_copies(db, FCTX)["created"] == 0


def test_concurrent_runs_create_one_copy_and_record_it_once(db, pg_url, ebox, client, renderer, tmp_path):
    rows = deliver(db, ebox, client, renderer, tmp_path, 8, seed_no=56)
    important = originals_with_types(rows, IMPORTANT)
    age_publications(db, 15)
    ebox_followup.fetch_read_status(db, client, FCTX)

    # Run A has inserted the copy of the first letter but not committed when run B starts.
    first = sorted(important)[0]
    a = psycopg.connect(pg_url)
    with a.cursor() as cur:
        assert ebox_followup._insert_copy(cur, first) == f"{first}-P"
    results = {}

    def run_b():
        with psycopg.connect(pg_url) as conn:
            results["b"] = ebox_followup.create_paper_copies(conn, FCTX)

    b_thread = threading.Thread(target=run_b)
    b_thread.start()
    b_thread.join(timeout=1.0)
    assert b_thread.is_alive(), "run B must wait on run A's uncommitted copy"
    a.commit()
    a.close()
    b_thread.join(timeout=30)
    assert results["b"]["created"] == len(important) - 1
    assert first not in {lid for lid, _ in events(db, "ebox_followup_copy_created")}


def test_many_runs_at_once_create_one_copy_per_letter(db, pg_url, ebox, client, renderer, tmp_path):
    rows = deliver(db, ebox, client, renderer, tmp_path, 8, seed_no=58)
    important = originals_with_types(rows, IMPORTANT)
    assert important
    age_publications(db, 15)
    ebox_followup.fetch_read_status(db, client, FCTX)
    made = []

    def run():
        with psycopg.connect(pg_url) as conn:
            made.append(ebox_followup.create_paper_copies(conn, FCTX)["created"])

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(made) == len(important)
    copies = [r["followup_of"] for r in letters(db).values() if r["followup_of"]]
    assert sorted(copies) == sorted(important)
    assert sorted(lid for lid, _ in events(db, "ebox_followup_copy_created")) == sorted(important)


def test_a_taken_copy_id_gets_another_id(db, ebox, client, renderer, tmp_path):
    rows = deliver(db, ebox, client, renderer, tmp_path, 6, seed_no=57)
    victim = sorted(originals_with_types(rows, IMPORTANT))[0]
    # A department system already used "<id>-P" for an unrelated letter.
    db.execute(
        "INSERT INTO letters (letter_id, department, letter_type, recipient_kind, recipient_id, "
        "recipient_name, street, postal_code, city, language) SELECT %s, department, letter_type, "
        "recipient_kind, recipient_id, recipient_name, street, postal_code, city, language "
        "FROM letters WHERE letter_id = %s",
        (f"{victim}-P", victim),
    )
    db.commit()
    age_publications(db, 15)
    ebox_followup.fetch_read_status(db, client, FCTX)
    ebox_followup.create_paper_copies(db, FCTX)
    (copy_id,) = [lid for lid, r in letters(db).items() if r["followup_of"] == victim]
    assert copy_id == ebox_followup.copy_letter_id(victim, 1) != f"{victim}-P"
