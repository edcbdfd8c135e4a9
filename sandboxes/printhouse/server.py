"""A local stand-in for the print house's SFTP server, for `make demo` on a machine without sshd.

It speaks real SSH and SFTP (asyncssh), so the demo goes through the same `PrintHouseHook` and
upload protocol as production: the client pins the server's host key and logs in with its own key.
One user, public-key authentication only, SFTP only (no shell, exec or forwarding), confined to
`<dir>/root` holding `inbox/`, `outbox/` and `printed/` (where the print house moves what it takes). The keys persist in `<dir>/keys`, so a restarted
sandbox keeps its identity and an existing Connection stays valid.

    python -m sandboxes.printhouse --dir var/printhouse --port 2222

writes `<dir>/connection.json`, the value for `AIRFLOW_CONN_PRINTHOUSE_SFTP`. With `--print` it also
plays the print house: every `--poll` seconds it takes complete batches from the inbox, checks them
and writes acknowledgements (and, with `--reject-every` / `--return-every`, some rejections and
returned mail) to the outbox, and moves them out of the inbox to `printed/`; see `simulator.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import asyncssh

from include.dijlepost.printhouse import sftp_connection

log = logging.getLogger("sandboxes.printhouse")

REMOTE_DIRS = ("inbox", "outbox", "printed")
# paramiko and the SSH provider both accept ed25519 host keys (checked in the tests).
KEY_ALGORITHM = "ssh-ed25519"
START_TIMEOUT_S = 10


class _ChrootedSftp(asyncssh.SFTPServer):
    """SFTP confined to the sandbox root; links are refused so the tree holds plain files only."""

    def __init__(self, chan: asyncssh.SSHServerChannel, root: Path):
        super().__init__(chan, chroot=os.fsencode(root))

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("links are not allowed")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("links are not allowed")


class _OneUserServer(asyncssh.SSHServer):
    """Accepts exactly one user name with exactly one public key."""

    def __init__(self, username: str, client_key: asyncssh.SSHKey, connections: set):
        self._username = username
        self._client_key = client_key
        self._connections = connections
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # asyncssh then checks the client's signature, proving it holds the private key.
        return username == self._username and key.public_data == self._client_key.public_data


def _load_or_create_key(path: Path, comment: str) -> asyncssh.SSHKey:
    if path.exists():
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key(KEY_ALGORITHM, comment=comment)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("openssh"))
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key("openssh"))
    return key


class PrintHouseSftpServer:
    """The sandbox server, run on an asyncio loop in a background thread. Use as a context manager
    or call `start()` / `stop()`."""

    def __init__(
        self,
        directory: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        username: str = "printhouse",
        printer=None,
        poll_seconds: float = 1.0,
    ) -> None:
        # printer: a simulator.PrinterBehaviour to answer batches as the print house, or None.
        self.printer = printer
        self.poll_seconds = poll_seconds
        self._printer_stop = threading.Event()
        self._printer_thread: threading.Thread | None = None
        self.directory = Path(directory).resolve()
        self.root = self.directory / "root"
        self.host = host
        self.port = port
        self.username = username
        keys = self.directory / "keys"
        self.client_key_path = keys / "client_key"
        self._host_key_path = keys / "ssh_host_key"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self.host_public_key = ""

    def start(self) -> PrintHouseSftpServer:
        for name in REMOTE_DIRS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.client_key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        host_key = _load_or_create_key(self._host_key_path, "dijlepost-printhouse-sandbox")
        client_key = _load_or_create_key(self.client_key_path, "dijlepost-printhouse-client")
        # Only "<type> <base64>": that is what the provider's host_key extra parses.
        self.host_public_key = " ".join(host_key.export_public_key("openssh").decode().split()[:2])

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="printhouse-sftp", daemon=True)
        self._thread.start()
        try:
            self._acceptor = asyncio.run_coroutine_threadsafe(
                self._listen(host_key, client_key), self._loop
            ).result(START_TIMEOUT_S)
        except BaseException:
            self._stop_loop()
            raise
        self.port = self._acceptor.get_port()
        if self.printer is not None:
            self._printer_thread = threading.Thread(
                target=self._print_loop, name="printhouse-printer", daemon=True
            )
            self._printer_thread.start()
        log.info("print-house sandbox listening on %s:%d, root %s", self.host, self.port, self.root)
        return self

    async def _listen(self, host_key: asyncssh.SSHKey, client_key: asyncssh.SSHKey) -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            self.host,
            self.port,
            server_factory=lambda: _OneUserServer(self.username, client_key, self._connections),
            server_host_keys=[host_key],
            sftp_factory=lambda chan: _ChrootedSftp(chan, self.root),
            allow_scp=False,
            allow_pty=False,
            agent_forwarding=False,
            x11_forwarding=False,
            # No process or session factory: shell and exec requests are refused.
        )

    def airflow_connection(self) -> dict[str, Any]:
        """The Connection as JSON for `AIRFLOW_CONN_PRINTHOUSE_SFTP`."""
        return sftp_connection(
            self.host, self.port, self.username, str(self.client_key_path), self.host_public_key
        )

    def process_inbox(self) -> dict:
        """Answer every complete batch in the inbox now, as the print house (see simulator.py)."""
        from sandboxes.printhouse.simulator import PrinterBehaviour, process_inbox

        return process_inbox(self.root, self.printer or PrinterBehaviour())

    def _print_loop(self) -> None:
        while not self._printer_stop.wait(self.poll_seconds):
            try:
                done = self.process_inbox()
                if done["batches"]:
                    log.info("print house answered %d batch(es)", len(done["batches"]))
            except Exception:  # keep serving; the next poll tries again
                log.exception("print-house simulation failed")

    def stop(self) -> None:
        if self._printer_thread is not None:
            self._printer_stop.set()
            self._printer_thread.join()
            self._printer_thread = None
        if self._loop is None:
            return
        if self._acceptor is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(START_TIMEOUT_S)
            self._acceptor = None
        self._stop_loop()

    async def _close(self) -> None:
        self._acceptor.close()
        await self._acceptor.wait_closed()
        # The listener's close leaves accepted connections open; end them too.
        for conn in list(self._connections):
            conn.close()
            await conn.wait_closed()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> PrintHouseSftpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("var/printhouse"), help="state and served tree")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2222, help="0 picks a free port")
    parser.add_argument("--user", default="printhouse")
    parser.add_argument("--print", action="store_true", help="answer batches as the print house would")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between looks at the inbox")
    parser.add_argument("--reject-every", type=int, default=0, help="reject every n-th letter of a batch")
    parser.add_argument("--return-every", type=int, default=0, help="return every n-th accepted letter")
    args = parser.parse_args(argv)
    printer = None
    if args.print:
        from sandboxes.printhouse.simulator import PrinterBehaviour

        printer = PrinterBehaviour(reject_every=args.reject_every, return_every=args.return_every)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # asyncssh logs every channel at INFO; warnings are enough for a demo server.
    asyncssh.set_log_level(logging.WARNING)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    with PrintHouseSftpServer(
        args.dir, port=args.port, host=args.host, username=args.user, printer=printer, poll_seconds=args.poll
    ) as server:
        connection = server.directory / "connection.json"
        # Written then renamed, so whoever waits for the file never reads half of it.
        partial = connection.with_suffix(".json.tmp")
        partial.write_text(json.dumps(server.airflow_connection(), indent=2) + "\n")
        partial.replace(connection)
        log.info("connection written to %s", connection)
        stopped.wait()


if __name__ == "__main__":
    main()
