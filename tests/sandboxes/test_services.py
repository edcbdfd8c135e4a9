"""The stand-ins that tests, demo and benchmarks start (`sandboxes.services`): each serves when returned, and
stops by its id."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paramiko
import psycopg
import pytest

from sandboxes.services import (
    Service,
    ensure_database,
    free_port,
    start_ebox_sandbox,
    start_embedded_postgres,
    start_printhouse,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_the_ebox_sandbox_process_serves_https_with_its_own_ca_and_stops(tmp_path):
    service, client, connection = start_ebox_sandbox(tmp_path / "ebox")
    try:
        assert client.get("/_sandbox/health").status_code == 200
        assert connection["conn_type"] and str(client.base_url).startswith("https://127.0.0.1:")
    finally:
        service.stop()
        client.close()
    assert not service.alive()


def test_the_printhouse_process_writes_its_pinned_connection_and_accepts_its_key(tmp_path):
    service, connection = start_printhouse(tmp_path / "printhouse")
    try:
        extra = connection["extra"]
        assert extra["no_host_key_check"] is False
        kind, blob = extra["host_key"].split()[:2]
        with paramiko.SSHClient() as ssh:
            # the pinned host key, never whatever the server shows
            ssh.get_host_keys().add(
                f"[{connection['host']}]:{connection['port']}",
                kind,
                paramiko.PKey.from_type_string(kind, base64.b64decode(blob)),
            )
            ssh.connect(
                connection["host"],
                connection["port"],
                connection["login"],
                key_filename=extra["key_file"],
                allow_agent=False,
                look_for_keys=False,
            )
            assert {"inbox", "outbox"} <= set(ssh.open_sftp().listdir("/"))
    finally:
        service.stop()
    assert not service.alive()


def test_a_service_that_exits_before_it_is_ready_is_reported_with_its_log(tmp_path):
    service = Service("broken", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "broken.log")
    with pytest.raises(RuntimeError, match=r"broken exited with 3; see .*broken\.log"):
        wait_until("broken", lambda: False, service, timeout=30)
    assert not service.alive()


def test_a_service_that_never_gets_ready_is_stopped(tmp_path):
    service = Service("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "s.log")
    with pytest.raises(TimeoutError, match="sleeper not ready"):
        wait_until("sleeper", lambda: False, service, timeout=1)
    assert not service.alive()


def test_the_embedded_postgres_starts_creates_a_database_once_and_stops():
    # pgserver runs PostgreSQL as its own system user when started by root: a directory it can reach.
    parent = Path(tempfile.mkdtemp(prefix="dijlepost-pgserver-", dir="/tmp"))
    parent.chmod(0o755)
    try:
        server = start_embedded_postgres(parent / "pgdata")
        admin = f"postgresql://postgres:@/postgres?host={parent / 'pgdata'}"
        ensure_database(admin, "demo_check")
        ensure_database(admin, "demo_check")  # a second time: nothing to do
        with psycopg.connect(f"postgresql://postgres:@/demo_check?host={parent / 'pgdata'}") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        server.cleanup()
        assert not (parent / "pgdata" / "postmaster.pid").exists()
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    assert os.path.exists(parent) is False


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout():
    ignoring = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", ignoring], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"  # SIGTERM is ignored from here on
    started = time.monotonic()
    stop_process(process, timeout=0.5)
    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_a_free_port_is_one_nothing_listens_on():
    port = free_port()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
