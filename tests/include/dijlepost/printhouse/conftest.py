"""Fixtures of the print-house tests against OpenSSH's sshd."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def printhouse(printhouse_dirs, monkeypatch, db):
    """sshd with empty folders as the `printhouse_sftp` Connection, and no print-house files recorded."""
    monkeypatch.setenv("AIRFLOW_CONN_PRINTHOUSE_SFTP", json.dumps(printhouse_dirs.airflow_connection()))
    db.execute("TRUNCATE print_house_files")
    db.commit()
    return printhouse_dirs
