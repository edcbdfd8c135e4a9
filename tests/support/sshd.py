"""Pytest plugin: a real OpenSSH sshd on loopback playing the print house (`sandboxes.services.start_sshd`).

The paper-path integration tests upload through `PrintHouseHook` to this server, so host key
verification, public-key authentication, the chroot and `internal-sftp` are OpenSSH's own, as at
the print house. The server runs for the whole session; `printhouse_dirs` gives each test an empty
inbox and outbox. Tests run as root (here and in CI) because sshd needs root to chroot and to switch
to the SFTP user.
"""

from __future__ import annotations

import os
import shutil

import pytest

from sandboxes.services import REMOTE_DIRS, SSH_KEYGEN, SSHD, TAKEN_DIR, SshdServer, start_sshd
from tests.support.tools import require_tool

__all__ = ["REMOTE_DIRS", "SshdServer", "printhouse_dirs", "sshd", "start_sshd"]


@pytest.fixture(scope="session")
def sshd():
    require_tool(str(SSHD), "openssh-server")
    require_tool(SSH_KEYGEN, "openssh-client")
    if os.geteuid() != 0:
        pytest.fail("the sshd fixture must run as root: sshd needs root to chroot the SFTP user")
    server = start_sshd()
    yield server
    server.stop()


@pytest.fixture
def printhouse_dirs(sshd):
    """The session's sshd with an empty inbox and outbox (and nothing the simulated print house printed)."""
    from sandboxes.printhouse.simulator import print_log_path

    (sshd.root / TAKEN_DIR).mkdir(exist_ok=True)
    print_log_path(sshd.root).unlink(missing_ok=True)
    for name in (*REMOTE_DIRS, TAKEN_DIR):
        for entry in (sshd.root / name).iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return sshd
