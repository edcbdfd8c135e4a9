"""Airflow hook for the print house's SFTP server: the SFTP provider's hook, made strict.

Batches carry names and addresses, so the hook refuses a Connection that would let a stranger pose
as the print house: the server's public key must be pinned in the `host_key` extra, host key
checking may not be switched off, and the client authenticates with its own key only
(`key_file` or `private_key`). The remote folders come from the `inbox_dir` and `outbox_dir`
extras, and `printed_dir`, where the print house moves a batch it has taken (`folders`).
`get_conn()` / `get_managed_conn()` give a paramiko `SFTPClient`, as in the provider.

Only the pinned key is trusted. The provider's `SSHHook.get_conn` makes the paramiko client and,
in the same method, loads the Airflow worker's `~/.ssh/known_hosts` into it ahead of the pin;
paramiko looks there first, so a key listed there would be accepted over the pin. The provider's one
switch that skips the file, `allow_host_key_change`, also makes the client accept any key of a host
it knows no key for. So `get_conn` is the one provider method this hook replaces: its client starts
from the pinned key alone and rejects every other. The rest is the provider's (the Connection's
parsing, the SFTP session, managed connections); the extra connections of the concurrent transfers
are made by this hook too (`_build_worker_hook`).

SSH compression is off unless the `compress` extra is `true` (the provider turns it on unless the
extra is `false`; OpenSSH's own client has it off). A print batch is rendered PDFs, whose content is
compressed already; zlib still halves a batch (every PDF carries the same fonts), but it costs the
worker about 0.8 ms of CPU per letter, a tenth of rendering the letter, on the cores that render.
The print stage of two render cores needs about 25 Mbit/s uncompressed, so only a link slower than
that per two render cores gains from it (docs/print-house.md).
"""

from __future__ import annotations

from typing import Any

import paramiko
from airflow.providers.sftp.hooks.sftp import SFTPHook
from airflow.providers.ssh.hooks.ssh import SSH_PORT, SSHHook
from airflow.sdk.exceptions import AirflowException
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_fixed, wait_random

from include.dijlepost.printhouse.upload import PrintHouseFolders

DEFAULT_CONN_TIMEOUT_S = 30


class InsecurePrintHouseConnection(AirflowException):
    """The print-house Connection would not verify the server or would not use key authentication."""


def _is_true(value: Any) -> bool:
    # Same reading of boolean extras as the SSH provider.
    return str(value).lower() == "true"


def _compression(conn_id: str, extra: dict[str, Any]) -> bool:
    value = extra.get("compress")
    if value is None:
        return False
    if str(value).lower() not in ("true", "false"):
        raise AirflowException(
            f"Connection {conn_id!r}: the compress extra must be true or false, not {value!r}"
        )
    return _is_true(value)


_retry_unless_refused = retry_if_exception(
    lambda exc: not isinstance(exc, (paramiko.BadHostKeyException, paramiko.AuthenticationException))
)


class _PinnedHostKeySSHHook(SSHHook):
    """The provider's SSH connection, verified against the pinned host key only.

    Sits between `SFTPHook` and `SSHHook` in `PrintHouseHook`'s method order, so the SFTP hook's
    `get_conn()` and `get_managed_conn()` open their SSH connection here."""

    def get_conn(self) -> paramiko.SSHClient:
        if self.client:
            transport = self.client.get_transport()
            if transport and transport.is_active():
                return self.client
        if self.host_key is None or self.no_host_key_check or self.allow_host_key_change:
            raise InsecurePrintHouseConnection("the print house's host key must be pinned and always checked")
        client = paramiko.SSHClient()
        # No load_system_host_keys(): ~/.ssh/known_hosts does not count.
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        name = self.remote_host if self.port == SSH_PORT else f"[{self.remote_host}]:{self.port}"
        client.get_host_keys().add(name, self.host_key.get_name(), self.host_key)
        connect_kwargs: dict[str, Any] = {
            "hostname": self.remote_host,
            "port": self.port,
            "username": self.username,
            "timeout": self.conn_timeout,
            "compress": self.compress,
            "sock": self.host_proxy,
            "look_for_keys": False,
            "allow_agent": False,
            "banner_timeout": self.banner_timeout,
            "auth_timeout": self.auth_timeout,
        }
        if self.pkey:
            connect_kwargs["pkey"] = self.pkey
        if self.key_file:
            connect_kwargs["key_filename"] = self.key_file
        if self.disabled_algorithms:
            connect_kwargs["disabled_algorithms"] = self.disabled_algorithms
        # The provider's retries, for a server that is briefly unreachable; a wrong host key is not retried.
        for attempt in Retrying(
            reraise=True,
            wait=wait_fixed(3) + wait_random(0, 2),
            stop=stop_after_attempt(self.conn_retry_attempts),
            retry=_retry_unless_refused,
        ):
            with attempt:
                client.connect(**connect_kwargs)
        transport = client.get_transport()
        if self.keepalive_interval:
            transport.set_keepalive(self.keepalive_interval)
        if self.ciphers:
            transport.get_security_options().ciphers = self.ciphers
        self.client = client
        return client


class PrintHouseHook(SFTPHook, _PinnedHostKeySSHHook):
    """SFTP to the print house, with a pinned host key and key authentication, or not at all."""

    default_conn_name = "printhouse_sftp"
    hook_name = "Print house (SFTP)"
    ssh_conn_id: str

    def __init__(self, ssh_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        if kwargs.get("no_host_key_check"):
            raise InsecurePrintHouseConnection("the print house's host key must always be checked")
        extra = self.get_connection(ssh_conn_id).extra_dejson
        self._refuse_unverified(ssh_conn_id, extra, kwargs)
        if "conn_timeout" not in extra:
            # The provider's default is to wait forever for an unreachable server.
            kwargs.setdefault("conn_timeout", DEFAULT_CONN_TIMEOUT_S)
        super().__init__(ssh_conn_id=ssh_conn_id, no_host_key_check=False, **kwargs)
        # Only the configured key: never whatever happens to sit in the worker's ~/.ssh.
        self.look_for_keys = False
        self.inbox_dir: str = extra.get("inbox_dir") or "inbox"
        self.outbox_dir: str = extra.get("outbox_dir") or "outbox"
        self.printed_dir: str = extra.get("printed_dir") or "printed"
        self.compress = _compression(ssh_conn_id, extra)

    def _build_worker_hook(self) -> PrintHouseHook:
        """A hook for one worker of the concurrent transfers, set up as this one (as the provider's is).

        The provider builds a plain `SFTPHook`, whose connection would read known_hosts."""
        worker = type(self)(
            ssh_conn_id=self.ssh_conn_id,
            remote_host=self.remote_host,
            username=self.username,
            key_file=None if self.pkey else self.key_file,
            port=self.port,
            conn_timeout=self.conn_timeout,
            cmd_timeout=self.cmd_timeout,
            keepalive_interval=self.keepalive_interval,
            banner_timeout=self.banner_timeout,
            disabled_algorithms=self.disabled_algorithms,
            ciphers=self.ciphers,
            auth_timeout=self.auth_timeout,
            host_proxy_cmd=self.host_proxy_cmd,
            conn_retry_attempts=self.conn_retry_attempts,
        )
        worker.host_key = self.host_key
        worker.no_host_key_check = self.no_host_key_check
        worker.allow_host_key_change = self.allow_host_key_change
        worker.pkey = self.pkey
        worker.compress = self.compress
        return worker

    @property
    def folders(self) -> PrintHouseFolders:
        """The print house's inbox, taken folder and outbox, as the hand-over looks them up."""
        return PrintHouseFolders(inbox=self.inbox_dir, taken=self.printed_dir, outbox=self.outbox_dir)

    @staticmethod
    def _refuse_unverified(conn_id: str, extra: dict[str, Any], kwargs: dict[str, Any]) -> None:
        if _is_true(extra.get("no_host_key_check")) or _is_true(extra.get("ignore_hostkey_verification")):
            raise InsecurePrintHouseConnection(
                f"Connection {conn_id!r} disables host key checking; remove no_host_key_check and pin "
                "the print house's key in the host_key extra"
            )
        if _is_true(extra.get("allow_host_key_change")):
            raise InsecurePrintHouseConnection(
                f"Connection {conn_id!r} sets allow_host_key_change, which accepts unknown host keys"
            )
        if not str(extra.get("host_key") or "").strip():
            raise InsecurePrintHouseConnection(
                f"Connection {conn_id!r} has no host_key extra; set it to the print house's public host "
                "key line, e.g. 'ssh-ed25519 AAAA...'"
            )
        if not (extra.get("key_file") or extra.get("private_key") or kwargs.get("key_file")):
            raise InsecurePrintHouseConnection(
                f"Connection {conn_id!r} has no key_file or private_key extra; the print house accepts "
                "key authentication only"
            )
