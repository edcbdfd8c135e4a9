"""Database connections outside Airflow (CLI, demo, tests). Inside Airflow use `PostgresHook`."""
from __future__ import annotations

import psycopg

from include.dijlepost.settings import ConfigurationError


def connect(url: str | None):
    if not url:
        raise ConfigurationError("DIJLEPOST_DATABASE_URL is not set (e.g. postgresql://user@host:5432/db)")
    return psycopg.connect(url)
