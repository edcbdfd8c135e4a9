"""PrintHouseHook refuses Connections that would not verify the print house or not use a key."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowException
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from include.dijlepost.printhouse.hook import InsecurePrintHouseConnection, PrintHouseHook
from include.dijlepost.printhouse.upload import PrintHouseFolders

HOST_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)


def connection(**extra) -> dict:
    base = {"key_file": "/secrets/printhouse_key", "host_key": HOST_KEY}
    base.update(extra)
    return {
        "conn_type": "sftp",
        "host": "sftp.printhouse.example",
        "port": 22,
        "login": "mechelen",
        "extra": {k: v for k, v in base.items() if v is not None},
    }


@pytest.fixture
def set_connection(monkeypatch):
    def set_(conn: dict) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_PRINTHOUSE_SFTP", json.dumps(conn))

    return set_


def test_strict_connection_is_accepted(set_connection):
    set_connection(connection(outbox_dir="/out/mechelen"))
    hook = PrintHouseHook()
    assert hook.ssh_conn_id == "printhouse_sftp"
    assert (hook.inbox_dir, hook.outbox_dir) == ("inbox", "/out/mechelen")
    assert hook.host_key is not None and hook.host_key.get_name() == "ssh-ed25519"
    assert not hook.no_host_key_check and not hook.look_for_keys
    assert hook.conn_timeout == 30
    assert PrintHouseHook.hook_name == "Print house (SFTP)"


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"no_host_key_check": True}, "disables host key checking"),
        ({"no_host_key_check": "true", "host_key": None}, "disables host key checking"),
        ({"ignore_hostkey_verification": "True"}, "disables host key checking"),
        ({"allow_host_key_change": True}, "allow_host_key_change"),
        ({"host_key": None}, "no host_key"),
        ({"host_key": "  "}, "no host_key"),
        ({"key_file": None}, "key authentication only"),
    ],
)
def test_insecure_connection_is_refused(set_connection, extra, message):
    set_connection(connection(**extra))
    with pytest.raises(InsecurePrintHouseConnection, match=message):
        PrintHouseHook()


def test_disabling_the_check_in_code_is_refused(set_connection):
    set_connection(connection())
    with pytest.raises(InsecurePrintHouseConnection):
        PrintHouseHook(no_host_key_check=True)


@pytest.mark.parametrize(
    "extra, compress",
    [
        ({}, False),  # off unless asked for, unlike the provider
        ({"compress": "false"}, False),
        ({"compress": "true"}, True),
        ({"compress": True}, True),
        ({"compress": "False"}, False),
    ],
)
def test_ssh_compression_is_off_unless_the_connection_asks_for_it(set_connection, extra, compress):
    set_connection(connection(**extra))
    assert PrintHouseHook().compress is compress


def test_an_unreadable_compress_extra_is_refused_by_name(set_connection):
    set_connection(connection(compress="yes"))
    with pytest.raises(AirflowException, match="compress extra must be true or false, not 'yes'"):
        PrintHouseHook()


def test_the_print_house_folders_come_from_the_connection(set_connection):
    set_connection(connection())
    assert PrintHouseHook().folders == PrintHouseFolders(inbox="inbox", taken="printed", outbox="outbox")
    set_connection(
        connection(inbox_dir="/in/mechelen", printed_dir="/taken/mechelen", outbox_dir="/out/mechelen")
    )
    assert PrintHouseHook().folders == PrintHouseFolders(
        inbox="/in/mechelen", taken="/taken/mechelen", outbox="/out/mechelen"
    )


def test_a_host_key_check_switched_off_after_construction_is_still_refused(set_connection):
    """The SSH client is built from the pinned key only; a hook altered after its checks connects nowhere."""
    set_connection(connection())
    hook = PrintHouseHook()
    hook.no_host_key_check = True
    with pytest.raises(InsecurePrintHouseConnection):
        hook.get_conn()
