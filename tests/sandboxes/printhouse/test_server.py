"""The asyncssh print-house sandbox works with the same hook and upload protocol as production."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from base64 import b64decode

import paramiko
import pytest

from include.dijlepost.printhouse.hook import PrintHouseHook
from include.dijlepost.printhouse.upload import upload_batch
from include.dijlepost.settings import PROJECT_ROOT
from sandboxes.printhouse.server import PrintHouseSftpServer


@pytest.fixture
def batch_file(tmp_path):
    path = tmp_path / "gas-registered-0123456789abcdef.zip"
    path.write_bytes(os.urandom(1024 * 1024 + 5))
    return path


def pinned_client(server: PrintHouseSftpServer) -> paramiko.SSHClient:
    """A bare paramiko client that trusts only the sandbox's host key (the default policy rejects)."""
    client = paramiko.SSHClient()
    key_type, key_data = server.host_public_key.split()
    host_key = paramiko.PKey.from_type_string(key_type, b64decode(key_data))
    client.get_host_keys().add(f"[{server.host}]:{server.port}", key_type, host_key)
    return client


def test_upload_through_the_sandbox(tmp_path, monkeypatch, batch_file):
    with PrintHouseSftpServer(tmp_path / "printhouse") as server:
        monkeypatch.setenv("AIRFLOW_CONN_PRINTHOUSE_SFTP", json.dumps(server.airflow_connection()))
        hook = PrintHouseHook()
        with hook.get_managed_conn() as sftp:
            first = upload_batch(sftp, batch_file, hook.inbox_dir)
            again = upload_batch(sftp, batch_file, hook.inbox_dir)
            # The chroot: the client sees only the served tree.
            assert sorted(sftp.listdir("/..")) == ["inbox", "outbox", "printed"]

        assert not first.already_present and again.already_present
        assert os.listdir(server.root / "inbox") == [batch_file.name]
        uploaded = (server.root / "inbox" / batch_file.name).read_bytes()
        assert hashlib.sha256(uploaded).digest() == hashlib.sha256(batch_file.read_bytes()).digest()


def test_sandbox_keeps_its_identity_and_admits_one_user_with_one_key(tmp_path):
    directory = tmp_path / "printhouse"
    with PrintHouseSftpServer(directory) as server:
        host_key = server.host_public_key
        assert host_key.startswith("ssh-ed25519 AAAA")
        assert stat.S_IMODE(server.client_key_path.stat().st_mode) == 0o600
        stranger_key = tmp_path / "stranger"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger_key)], check=True)
        attempts = [("someone-else", server.client_key_path), (server.username, stranger_key)]
        for username, key in attempts:
            client = pinned_client(server)
            with pytest.raises(paramiko.AuthenticationException):
                client.connect(
                    server.host,
                    server.port,
                    username=username,
                    key_filename=str(key),
                    look_for_keys=False,
                    allow_agent=False,
                    timeout=5,
                )
            client.close()

    with PrintHouseSftpServer(directory) as restarted:
        assert restarted.host_public_key == host_key


def test_sandbox_command_line_writes_the_connection(tmp_path, monkeypatch, batch_file):
    directory = tmp_path / "printhouse"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandboxes.printhouse", "--dir", str(directory), "--port", "0"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        connection_file = directory / "connection.json"
        deadline = time.monotonic() + 15
        while not connection_file.exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "sandbox did not write connection.json"
            time.sleep(0.05)
        conn = json.loads(connection_file.read_text())
        assert conn["conn_type"] == "sftp" and conn["port"] > 0
        assert conn["extra"]["no_host_key_check"] is False

        monkeypatch.setenv("AIRFLOW_CONN_PRINTHOUSE_SFTP", json.dumps(conn))
        hook = PrintHouseHook()
        with hook.get_managed_conn() as sftp:
            upload_batch(sftp, batch_file, hook.inbox_dir)
        assert os.listdir(directory / "root" / "inbox") == [batch_file.name]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
