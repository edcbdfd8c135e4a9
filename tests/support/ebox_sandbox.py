"""Pytest plugin: a real eBox sandbox over HTTPS for the whole session.

`ebox_sandbox` is the started SandboxServer, shared by every test of the session; `ebox` is the same
server with its state reset (recipients, publications, Idempotency-Keys, tokens, faults, message
types, size limit) first.
"""

from __future__ import annotations

import pytest

from sandboxes.ebox import SandboxServer


@pytest.fixture(scope="session")
def ebox_sandbox():
    with SandboxServer() as server:
        yield server


@pytest.fixture
def ebox(ebox_sandbox):
    ebox_sandbox.state.reset()
    return ebox_sandbox
