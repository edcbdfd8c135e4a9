"""The alerts: a failed task and a late wave run, e-mailed through the SMTP provider's notifier to a
real mail server on loopback (sandboxes/mail.py), with the alert line in the log either way."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

# Imported before any test runs: importing Airflow configures logging, which would drop the handler
# that `caplog` adds for a test.
import airflow.providers.smtp.notifications.smtp  # noqa: F401
import pytest

from include.dijlepost import airflow_support
from sandboxes.mail import MailSink, as_text

TO = ["ict-dijlepost@mechelen.example"]


@pytest.fixture
def mail(tmp_path, monkeypatch):
    with MailSink(tmp_path / "mail") as sink:
        monkeypatch.setenv("AIRFLOW_CONN_DIJLEPOST_ALERTS", json.dumps(sink.airflow_connection()))
        monkeypatch.setattr(airflow_support, "ALERT_EMAILS", TO)
        yield sink


def failure_context(error: Exception) -> dict:
    ti = SimpleNamespace(
        dag_id="letters_finance",
        task_id="chunk.deliver_to_ebox",
        map_index=3,
        try_number=4,
        log_url="http://127.0.0.1:8080/dags/letters_finance/runs/manual__1/tasks/chunk.deliver_to_ebox/mapped/3?try_number=4",
    )
    return {"ti": ti, "task_instance": ti, "run_id": "manual__1", "exception": error}


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dijlepost"]


def test_a_failed_task_is_e_mailed_with_its_log_and_no_personal_data(mail, caplog):
    with caplog.at_level(logging.INFO, logger="dijlepost"):
        airflow_support.on_failure(failure_context(ValueError("recipient 85073003328 Janssens Jan")))
    (message,) = mail.wait_for(1)
    text = as_text(message)
    assert message["To"] == TO[0] and message["From"] == "dijlepost@mechelen.example"
    assert message["Subject"] == (
        "dijlepost alert: letters_finance / chunk.deliver_to_ebox chunk 3 failed (try 4)"
    )
    assert "run: manual__1" in text and "error: ValueError" in text
    assert (
        "log: http://127.0.0.1:8080/dags/letters_finance/runs/manual__1/tasks/chunk.deliver_to_ebox/mapped/3?try_number=4"
        in text
    )
    assert " CET" in text or " CEST" in text  # the moment, in Europe/Brussels
    assert "85073003328" not in text and "Janssens" not in text  # the error's kind only, never its text
    assert lines(caplog)[0].startswith("event=alert_task_failed dag_id=letters_finance")
    assert lines(caplog)[1] == f"event=alert_sent notifier=SmtpNotifier to={TO[0]}"


def test_a_late_wave_run_is_e_mailed_with_its_times_in_brussels(mail, caplog):
    context = {
        "dag_run": {
            "dag_id": "letters_gas",
            "dag_run_id": "scheduled__2026-03-02T07:00:00+00:00",
            "state": "queued",
            "queued_at": "2026-03-02T07:00:05.120000Z",
            "start_date": None,
        },
        "deadline": {"id": "d-1", "deadline_time": "2026-03-02T08:30:05.120000Z"},
    }
    with caplog.at_level(logging.INFO, logger="dijlepost"):
        airflow_support.wave_late(context, minutes=90)
    (message,) = mail.wait_for(1)
    text = as_text(message)
    assert message["Subject"] == "dijlepost alert: letters_gas not finished 90 minutes after it was queued"
    assert "state now: queued" in text and "started at: -" in text  # queued, never started
    assert "queued at: 2026-03-02 08:00:05 CET" in text and "deadline: 2026-03-02 09:30:05 CET" in text
    assert lines(caplog)[0] == (
        "event=alert_wave_late dag_id=letters_gas run_id=scheduled__2026-03-02T07:00:00+00:00 state=queued minutes=90"
    )


def test_a_failure_airflow_passes_no_exception_for_says_where_to_look(mail):
    airflow_support.on_failure(failure_context(None))
    (message,) = mail.wait_for(1)
    assert "error: see the log" in as_text(message)


def test_without_recipients_the_alert_is_the_log_line_only(mail, caplog, monkeypatch):
    monkeypatch.setattr(airflow_support, "ALERT_EMAILS", [])
    with caplog.at_level(logging.INFO, logger="dijlepost"):
        airflow_support.on_failure(failure_context(RuntimeError("x")))
    assert [line.split()[0] for line in lines(caplog)] == ["event=alert_task_failed"]
    with pytest.raises(TimeoutError):
        mail.wait_for(1, timeout=1)


def test_a_mail_server_that_does_not_answer_is_logged_and_hides_nothing(mail, caplog, monkeypatch):
    mail.stop()
    with caplog.at_level(logging.INFO, logger="dijlepost"):
        airflow_support.on_failure(failure_context(RuntimeError("x")))
    assert lines(caplog)[0].startswith("event=alert_task_failed")
    assert lines(caplog)[1].startswith("event=alert_not_sent notifier=SmtpNotifier error=")


def test_each_wave_dag_has_a_deadline_alert_on_its_queued_runs():
    from airflow.sdk.definitions.deadline import DeadlineReference

    alert = airflow_support.wave_deadline()
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert (
        alert.interval
        == airflow_support.WAVE_DEADLINE
        < __import__("include.dijlepost.dag_factory").dijlepost.dag_factory.DAGRUN_TIMEOUT
    )
    assert alert.callback.path == "include.dijlepost.airflow_support.wave_late"
    assert alert.callback.kwargs == {"minutes": airflow_support.WAVE_DEADLINE.seconds // 60}


def test_the_deadline_alert_can_be_switched_off():
    assert airflow_support.wave_deadline(None) is None
