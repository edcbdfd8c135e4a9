"""The wave DAGs' Deadline Alert in a real Airflow (api-server, dag-processor, scheduler with
LocalExecutor): a wave run still not finished at its deadline is e-mailed through the SMTP provider's
notifier to a mail server on loopback (sandboxes/mail.py). A task failure's e-mail is shown by the
demo (tests/demo/test_ui.py) and tested in tests/include/dijlepost/test_alerts.py."""

from __future__ import annotations

import json

import pytest

from sandboxes.airflow_cluster import AirflowCluster
from sandboxes.mail import MailSink, as_text
from tests.dags.conftest import pg_connection

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(600)]


def test_a_wave_run_past_its_deadline_is_e_mailed(db, pg_url, tmp_path):
    # The run cannot finish: without the eBox Connection its first eBox task fails and waits a minute
    # for its retry. The deadline is the moment it was queued (0 minutes), so it is missed at once.
    with MailSink(tmp_path / "mail") as mail:
        env = {
            "AIRFLOW_CONN_DIJLEPOST_DB": json.dumps(pg_connection(pg_url)),
            "AIRFLOW_CONN_DIJLEPOST_ALERTS": json.dumps(mail.airflow_connection()),
            "DIJLEPOST_ALERT_EMAILS": "ict-dijlepost@mechelen.example",
            "DIJLEPOST_WAVE_DEADLINE_MINUTES": "0",
            "DIJLEPOST_RETRY_DELAY_SECONDS": "120",
        }
        with AirflowCluster(tmp_path / "airflow", env) as cluster:
            cluster.wait_for_dags(["letters_finance"])
            run_id = cluster.trigger("letters_finance")
            (message,) = mail.wait_for(1, timeout=240)
            state = cluster.run_state("letters_finance", run_id)
    text = as_text(message)
    assert state in ("queued", "running")  # the alert came while the run was still going
    assert message["Subject"] == "dijlepost alert: letters_finance not finished 0 minutes after it was queued"
    assert message["To"] == "ict-dijlepost@mechelen.example"
    assert f"run: {run_id}" in text
    assert "queued at: " in text and (" CET" in text or " CEST" in text)
