"""The letters_evaluation DAG run end to end with `dag.test()` (in a subprocess) against the test
PostgreSQL: a Sunday gets its day and its week (which day a run evaluates: tests/include/.../test_evaluation.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.dags.conftest import ROOT, base_airflow_env, pg_connection

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture
def run_evaluation(airflow_home, airflow_metadata_url, pipeline_url, tmp_path):
    env = base_airflow_env(airflow_home, airflow_metadata_url)
    env.update(
        {
            "AIRFLOW_CONN_DIJLEPOST_DB": json.dumps(pg_connection(pipeline_url)),
            "DIJLEPOST_REPORTS_DIR": str(tmp_path / "reports"),
            "DIJLEPOST_TARIFF_POSTAGE_EUR": "1.00",
        }
    )

    def _run(conf: dict | None = None) -> str:
        argv = [sys.executable, "-m", "demo.run_waves"]
        if conf:
            argv += ["--conf", json.dumps(conf)]
        proc = subprocess.run(
            [*argv, "letters_evaluation"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-4000:]
        return log

    return _run


def test_a_sunday_gets_its_day_and_its_week(db, run_evaluation, tmp_path):
    db.execute("DELETE FROM evaluation_figures")
    db.execute(
        "INSERT INTO letters (letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name, "
        "street, postal_code, city, language, status, final_at, pdf_pages) VALUES ('F1', 'finance', 'invoice', "
        "'citizen', '85073003328', 'X', 'Bruul 1', '2800', 'Mechelen', 'nl', 'delivered_ebox', "
        "'2026-03-14T10:00:00Z', 1)"
    )
    db.commit()
    log = run_evaluation({"day": "2026-03-15"})
    assert "event=evaluation_done period=day start=2026-03-15" in log
    assert "event=evaluation_done period=week start=2026-03-09" in log
    rows = db.execute(
        "SELECT period_kind, period_start::text, ebox, savings_eur::text FROM evaluation_figures "
        "WHERE department = 'finance' ORDER BY 1, 2"
    ).fetchall()
    db.commit()
    # F1 (Saturday) is in the week, not in Sunday's figures; 1.00 postage (from the environment) + 0.20 printing.
    assert rows == [("day", "2026-03-15", 0, "0.00"), ("week", "2026-03-09", 1, "1.20")]
    assert (tmp_path / "reports" / "week" / "2026-03-09" / "report.html").exists()
