"""Uploading batches through PrintHouseHook to a real OpenSSH sshd (chrooted, SFTP only)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from pathlib import Path

import paramiko
import pytest
from airflow.providers.sftp.hooks.sftp import SFTPHook
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from include.dijlepost.printhouse.hook import InsecurePrintHouseConnection, PrintHouseHook
from include.dijlepost.printhouse.upload import RemoteBatchConflict, upload_batch

pytestmark = pytest.mark.integration


@pytest.fixture
def printhouse(printhouse_dirs, monkeypatch):
    """The sshd with empty folders, set as the `printhouse_sftp` Connection."""
    monkeypatch.setenv("AIRFLOW_CONN_PRINTHOUSE_SFTP", json.dumps(printhouse_dirs.airflow_connection()))
    return printhouse_dirs


@pytest.fixture
def batch_file(tmp_path):
    path = tmp_path / "finance-non_prior-0123456789abcdef.zip"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_connection(monkeypatch, conn: dict) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PRINTHOUSE_SFTP", json.dumps(conn))


def other_public_key(kind: str) -> str:
    if kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def test_full_upload(printhouse, batch_file, caplog):
    hook = PrintHouseHook()
    with caplog.at_level(logging.INFO, logger="dijlepost.printhouse"), hook.get_managed_conn() as sftp:
        result = upload_batch(sftp, batch_file, hook.inbox_dir)

    assert result.remote_path == f"inbox/{batch_file.name}"
    assert (result.size, result.already_present) == (batch_file.stat().st_size, False)
    uploaded = printhouse.root / "inbox" / batch_file.name
    assert sha256(uploaded) == sha256(batch_file)
    assert os.listdir(printhouse.root / "inbox") == [batch_file.name]
    messages = [r.getMessage() for r in caplog.records if r.name == "dijlepost.printhouse"]
    assert any(batch_file.stem in m and str(result.size) in m for m in messages)


def test_private_key_in_the_connection(printhouse, batch_file, monkeypatch):
    conn = printhouse.airflow_connection()
    conn["extra"]["private_key"] = Path(conn["extra"].pop("key_file")).read_text()
    set_connection(monkeypatch, conn)
    hook = PrintHouseHook()
    with hook.get_managed_conn() as sftp:
        upload_batch(sftp, batch_file, hook.inbox_dir)
    assert sha256(printhouse.root / "inbox" / batch_file.name) == sha256(batch_file)


@pytest.mark.parametrize("extra, negotiated", [({}, "none"), ({"compress": "true"}, "zlib@openssh.com")])
def test_ssh_compression_is_what_the_connection_asks_for(
    printhouse, batch_file, monkeypatch, extra, negotiated
):
    conn = printhouse.airflow_connection()
    conn["extra"].update(extra)
    set_connection(monkeypatch, conn)
    hook = PrintHouseHook()
    with hook.get_managed_conn() as sftp:
        transport = sftp.get_channel().get_transport()
        upload_batch(sftp, batch_file, hook.inbox_dir)
        # zlib@openssh.com starts after authentication; by now it is in use
        assert (transport.local_compression, transport.remote_compression) == (negotiated, negotiated)
    assert sha256(printhouse.root / "inbox" / batch_file.name) == sha256(batch_file)


def test_second_upload_is_recognised(printhouse, batch_file):
    uploaded = printhouse.root / "inbox" / batch_file.name
    hook = PrintHouseHook()
    with hook.get_managed_conn() as sftp:
        first = upload_batch(sftp, batch_file, hook.inbox_dir)
        before = uploaded.stat()
        again = upload_batch(sftp, batch_file, hook.inbox_dir)

    assert not first.already_present and again.already_present
    assert again.remote_path == first.remote_path
    # Not rewritten: a new upload would have replaced the file by renaming a fresh .part over it.
    after = uploaded.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert os.listdir(printhouse.root / "inbox") == [batch_file.name]


def test_interrupted_upload_is_completed_by_rerun(printhouse, batch_file):
    data = batch_file.read_bytes()
    half = len(data) // 2
    part = printhouse.root / "inbox" / f"{batch_file.name}.part"

    # First attempt: half the bytes arrive as .part, then the connection drops without a goodbye.
    hook = PrintHouseHook()
    sftp = hook.get_conn()
    remote = sftp.open(f"inbox/{batch_file.name}.part", "wb")
    remote.set_pipelined(True)
    remote.write(data[:half])
    remote.flush()
    remote.stat()  # answered after the writes before it: the half is on the server
    transport_socket = sftp.get_channel().get_transport().sock
    transport_socket.shutdown(socket.SHUT_RDWR)
    transport_socket.close()
    assert part.stat().st_size == half
    assert not (printhouse.root / "inbox" / batch_file.name).exists()

    rerun = PrintHouseHook()
    with rerun.get_managed_conn() as sftp:
        result = upload_batch(sftp, batch_file, rerun.inbox_dir)

    assert not result.already_present
    assert os.listdir(printhouse.root / "inbox") == [batch_file.name]
    assert sha256(printhouse.root / "inbox" / batch_file.name) == sha256(batch_file)


def test_different_file_under_final_name_is_never_overwritten(printhouse, batch_file):
    existing = printhouse.root / "inbox" / batch_file.name
    existing.write_bytes(b"an earlier, different delivery")
    hook = PrintHouseHook()
    with hook.get_managed_conn() as sftp, pytest.raises(RemoteBatchConflict):
        upload_batch(sftp, batch_file, hook.inbox_dir)
    assert existing.read_bytes() == b"an earlier, different delivery"
    assert os.listdir(printhouse.root / "inbox") == [batch_file.name]


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_wrong_host_key_is_refused(printhouse, batch_file, monkeypatch, kind):
    conn = printhouse.airflow_connection()
    conn["extra"]["host_key"] = other_public_key(kind)
    set_connection(monkeypatch, conn)

    hook = PrintHouseHook(conn_retry_attempts=1)
    with pytest.raises(paramiko.BadHostKeyException), hook.get_managed_conn() as sftp:
        upload_batch(sftp, batch_file, hook.inbox_dir)
    assert os.listdir(printhouse.root / "inbox") == []


def test_no_host_key_check_is_refused(printhouse, monkeypatch):
    conn = printhouse.airflow_connection()
    del conn["extra"]["host_key"]
    conn["extra"]["no_host_key_check"] = True
    set_connection(monkeypatch, conn)
    with pytest.raises(InsecurePrintHouseConnection, match="host key checking"):
        PrintHouseHook()


def write_known_hosts(home: Path, server, public_key: str) -> None:
    """A user known_hosts file, as ssh would write it, listing `public_key` for the print house."""
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "known_hosts").write_text(f"[{server.host}]:{server.port} {public_key}\n")


def test_a_known_hosts_entry_never_replaces_the_pinned_key(printhouse, batch_file, monkeypatch, tmp_path):
    """The worker's ~/.ssh/known_hosts trusts the server's key, the Connection pins another: refused.
    (The SSH provider alone would accept it: paramiko looks in known_hosts first.)"""
    write_known_hosts(tmp_path, printhouse, printhouse.host_public_key)
    monkeypatch.setenv("HOME", str(tmp_path))
    conn = printhouse.airflow_connection()
    conn["extra"]["host_key"] = other_public_key("ed25519")
    set_connection(monkeypatch, conn)

    hook = PrintHouseHook(conn_retry_attempts=1)
    with pytest.raises(paramiko.BadHostKeyException), hook.get_managed_conn() as sftp:
        upload_batch(sftp, batch_file, hook.inbox_dir)
    assert os.listdir(printhouse.root / "inbox") == []


def test_the_pinned_key_is_verified_whatever_known_hosts_says(printhouse, batch_file, monkeypatch, tmp_path):
    """known_hosts lists a different key for the print house (stale, or planted): the connection is
    still verified against the pinned key, and only against it."""
    write_known_hosts(tmp_path, printhouse, other_public_key("ed25519"))
    monkeypatch.setenv("HOME", str(tmp_path))

    hook = PrintHouseHook(conn_retry_attempts=1)
    with hook.get_managed_conn() as sftp:
        upload_batch(sftp, batch_file, hook.inbox_dir)
        server_key = sftp.get_channel().get_transport().get_remote_server_key()
    assert f"{server_key.get_name()} {server_key.get_base64()}" == printhouse.host_public_key
    assert sha256(printhouse.root / "inbox" / batch_file.name) == sha256(batch_file)


def test_concurrent_transfers_verify_every_connection_against_the_pinned_key(
    printhouse, monkeypatch, tmp_path
):
    """The provider's concurrent transfers open a connection per worker; each is verified against the
    pinned key only, as the hook's own: a stale known_hosts entry changes nothing."""
    write_known_hosts(tmp_path, printhouse, other_public_key("ed25519"))
    monkeypatch.setenv("HOME", str(tmp_path))
    sent = tmp_path / "sent"
    sent.mkdir()
    for name in ("a.zip", "b.zip", "c.zip"):
        (sent / name).write_bytes(os.urandom(64 * 1024))

    hook = PrintHouseHook(conn_retry_attempts=1)
    hook.store_directory_concurrently("inbox/batches", str(sent), workers=2)
    received = tmp_path / "received"
    hook.retrieve_directory_concurrently("inbox/batches", str(received), workers=2)

    assert sorted(os.listdir(printhouse.root / "inbox" / "batches")) == ["a.zip", "b.zip", "c.zip"]
    assert {p.name: sha256(p) for p in received.iterdir()} == {p.name: sha256(p) for p in sent.iterdir()}


def test_the_ssh_provider_alone_lets_known_hosts_override_the_pinned_key(printhouse, monkeypatch, tmp_path):
    """Why the hook makes its own SSH client: the provider's SFTPHook, given the same Connection,
    accepts a key that known_hosts lists and the pin does not. If a provider release stops doing so,
    this fails, and the hook's get_conn can become the provider's."""
    write_known_hosts(tmp_path, printhouse, printhouse.host_public_key)
    monkeypatch.setenv("HOME", str(tmp_path))
    conn = printhouse.airflow_connection()
    conn["extra"]["host_key"] = other_public_key("ed25519")
    set_connection(monkeypatch, conn)

    with SFTPHook(ssh_conn_id="printhouse_sftp", conn_retry_attempts=1).get_managed_conn() as sftp:
        server_key = sftp.get_channel().get_transport().get_remote_server_key()
    assert f"{server_key.get_name()} {server_key.get_base64()}" == printhouse.host_public_key
