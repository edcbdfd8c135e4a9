"""Shared fixtures. Integration tests use the real PostgreSQL at DIJLEPOST_TEST_PG (default
127.0.0.1:5432, trust auth), a real eBox sandbox over HTTPS and a real OpenSSH sshd on loopback."""

from __future__ import annotations

import os

pytest_plugins = [
    "tests.support.database",
    "tests.support.ebox_sandbox",
    "tests.support.sshd",
    "tests.support.browser",
]

os.environ.setdefault("DIJLEPOST_PSEUDONYM_KEY", "test-pseudonym-key-not-secret")
