"""The processes that stand in for the city's infrastructure on one machine, started the same way by the
tests (tests/support/), the demo (`python -m demo`) and the benchmarks (benchmarks/). The Airflow
deployment that runs the DAGs against them is `sandboxes.airflow_cluster`.

- `start_embedded_postgres(pgdata)` and `ensure_database(...)`: an embedded PostgreSQL (pgserver) on a
  Unix socket, for a machine with no PostgreSQL server (the demo);
- `start_ebox_sandbox(directory)` and `start_printhouse(directory)`: the eBox sandbox over HTTPS and
  the print house's SFTP server (`python -m sandboxes.ebox`, `python -m sandboxes.printhouse`) as
  processes of their own, each a `Service`, returned once they serve;
- `start_sshd()`: OpenSSH's sshd on loopback as the print house (`SshdServer`; see below);
- `free_port()`: a free TCP port on 127.0.0.1 (the mail server of `sandboxes.mail` takes one too).

sshd plays the print house with OpenSSH's own host key verification, public-key authentication,
chroot and `internal-sftp`. It runs with its own config, host key and client key on a free port. sshd
is strict about the chroot: every component of its path must be root-owned and not group- or
world-writable, which rules out /tmp; the state directory therefore lives in /run (root-owned tmpfs)
and `stop()` removes it. It needs root, to chroot and to switch to the SFTP user.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg

from include.dijlepost.printhouse import sftp_connection

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """Terminate `process` (by its own id) and wait for it; killed if it is still there after `timeout` s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- embedded PostgreSQL ---------------------------------------------------------------------------
def start_embedded_postgres(pgdata: Path):
    """Start (or reuse) pgserver's PostgreSQL on a Unix socket in `pgdata`; returns the server, whose
    `cleanup()` stops it. Its own progress messages stay out of the caller's output."""
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back to /tmp.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

        pgdata = Path(pgdata)
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return pgserver.get_server(pgdata, cleanup_mode="stop")


def ensure_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE `name` unless it exists (psycopg URL of a database to connect to for that)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


# -- the sandboxes as processes --------------------------------------------------------------------
class Service:
    """A helper process in its own process group (a Ctrl-C in the caller's terminal does not reach it),
    its output appended to `log`, stopped by its own id."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict | None = None):
        self.name = name
        self.log = Path(log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)


def wait_until(what: str, check, service: Service, timeout: float = 60) -> None:
    """Wait until `check()` is true; a service that exits or never gets ready is stopped, not left behind."""
    import httpx

    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not service.alive():
                raise RuntimeError(f"{service.name} exited with {service.proc.returncode}; see {service.log}")
            try:
                if check():
                    return
            except (OSError, httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{what} not ready after {timeout}s; see {service.log}")
    except BaseException:
        service.stop()
        raise


def start_ebox_sandbox(
    directory: Path, log: Path | None = None, port: int | None = None, args: tuple[str, ...] = ()
):
    """`python -m sandboxes.ebox` serving HTTPS on 127.0.0.1; returns (service, an httpx.Client that
    trusts its CA, the `ebox_default` Connection as JSON) once it answers and has written its
    connection file."""
    import httpx

    directory = Path(directory)
    (directory / "connection.json").unlink(missing_ok=True)
    port = port or free_port()
    service = Service(
        "eBox sandbox",
        [sys.executable, "-m", "sandboxes.ebox", "--port", str(port), "--dir", str(directory), *args],
        log or directory.parent / "ebox-sandbox.log",
    )
    found: dict = {}

    def ready() -> bool:
        if "client" not in found:
            if not (directory / "ca.pem").exists():
                return False
            found["client"] = httpx.Client(
                base_url=f"https://127.0.0.1:{port}",
                timeout=120,
                verify=ssl.create_default_context(cafile=str(directory / "ca.pem")),
            )
        if found["client"].get("/_sandbox/health").status_code != 200:
            return False
        # The sandbox writes its connection once it serves: a health answer can come first.
        found["connection"] = json.loads((directory / "connection.json").read_text())
        return True

    wait_until("eBox sandbox", ready, service)
    return service, found["client"], found["connection"]


def start_printhouse(directory: Path, log: Path | None = None, port: int = 0, args: tuple[str, ...] = ()):
    """`python -m sandboxes.printhouse` (asyncssh SFTP) on 127.0.0.1; returns (service, the
    `printhouse_sftp` Connection as JSON) once it has written its connection file."""
    directory = Path(directory)
    (directory / "connection.json").unlink(missing_ok=True)
    service = Service(
        "print house SFTP",
        [sys.executable, "-m", "sandboxes.printhouse", "--dir", str(directory), "--port", str(port), *args],
        log or directory.parent / "printhouse.log",
    )
    wait_until("print house SFTP", lambda: (directory / "connection.json").exists(), service)
    return service, json.loads((directory / "connection.json").read_text())


# -- OpenSSH's sshd as the print house -------------------------------------------------------------
SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
SFTP_USER = "dijlepost-sftp"
STATE_PARENT = Path("/run")
PRIVSEP_DIR = Path("/run/sshd")
REMOTE_DIRS = ("inbox", "outbox")
TAKEN_DIR = "printed"
START_TIMEOUT_S = 10.0


@dataclass
class SshdServer:
    """A running sshd; `root` is the SFTP user's chroot on disk, holding inbox/, outbox/ and printed/."""

    host: str
    port: int
    username: str
    client_key_path: Path
    host_public_key: str
    root: Path
    state_dir: Path
    process: subprocess.Popen

    def airflow_connection(self) -> dict:
        """The Connection as JSON for `AIRFLOW_CONN_PRINTHOUSE_SFTP`."""
        return sftp_connection(
            self.host, self.port, self.username, str(self.client_key_path), self.host_public_key
        )

    def answer_as_print_house(self, behaviour=None) -> dict:
        """Play the print house on the served tree: take complete batches from the inbox (to printed/),
        check them and write acknowledgements (and, per `behaviour`, rejections and returned mail) to
        the outbox."""
        from sandboxes.printhouse.simulator import PrinterBehaviour, process_inbox

        return process_inbox(self.root, behaviour or PrinterBehaviour())

    def printed_letters(self):
        """How many times the print house printed each letter (a Counter by letter id)."""
        from sandboxes.printhouse.simulator import printed_letters

        return printed_letters(self.root)

    def log(self) -> str:
        return (self.state_dir / "sshd.log").read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, timeout=5)
        shutil.rmtree(self.state_dir, ignore_errors=True)


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")


def _ensure_sftp_user() -> int:
    """Create the SFTP-only system user if missing; return its uid.

    Its password field must be '*' (matches no password), not useradd's default '!': with UsePAM no,
    sshd takes a '!' for a locked account and refuses even public-key logins.
    """
    try:
        pwd.getpwnam(SFTP_USER)
    except KeyError:
        _run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--password",
                "*",
                SFTP_USER,
            ]
        )
    else:
        for line in Path("/etc/shadow").read_text().splitlines():
            user, _, rest = line.partition(":")
            if user == SFTP_USER and rest.startswith("!"):
                _run(["usermod", "--password", "*", SFTP_USER])
    return pwd.getpwnam(SFTP_USER).pw_uid


def _check_chroot_chain(path: Path) -> None:
    for component in [path, *path.parents]:
        st = component.stat()
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise RuntimeError(
                f"sshd refuses a chroot under {component}: it must be root-owned and not group- or "
                "world-writable"
            )


def _openssh_version() -> tuple[int, int]:
    out = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True).stderr
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _keygen(path: Path, comment: str) -> None:
    _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _config(state: Path, chroot: Path, port: int) -> str:
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {state / 'ssh_host_ed25519_key'}",
        f"PidFile {state / 'sshd.pid'}",
        f"AuthorizedKeysFile {state / 'authorized_keys'}",
        "UsePAM no",
        "StrictModes yes",
        "PubkeyAuthentication yes",
        "AuthenticationMethods publickey",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        f"AllowUsers {SFTP_USER}",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
    ]
    if _openssh_version() >= (9, 8):
        # Refusal tests drop connections on purpose; penalties would then slow later tests down.
        lines.append("PerSourcePenalties no")
    lines += [
        f"Match User {SFTP_USER}",
        f"    ChrootDirectory {chroot}",
        "    ForceCommand internal-sftp -d /",
        "    AllowTcpForwarding no",
        "    PermitTTY no",
    ]
    return "\n".join(lines) + "\n"


def _wait_until_listening(process: subprocess.Popen, log: Path) -> None:
    # sshd logs this line once its listening socket is bound (-e sends the log to our file).
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        if "Server listening on" in log.read_text(errors="replace"):
            return
        time.sleep(0.02)
    process.kill()
    process.wait()
    raise RuntimeError(f"sshd did not start within {START_TIMEOUT_S}s:\n{log.read_text(errors='replace')}")


def start_sshd() -> SshdServer:
    """Start sshd in the foreground with a fresh state directory; the caller must `stop()` it."""
    uid = _ensure_sftp_user()
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)

    state = Path(tempfile.mkdtemp(prefix="dijlepost-sshd-", dir=STATE_PARENT))
    try:
        # 0755: the SFTP user must traverse it to read authorized_keys (sshd reads it as that user).
        state.chmod(0o755)
        chroot = _make_chroot(state / "chroot", uid)
        host_public_key = _make_keys(state)
        port = free_port()
        process = _launch_sshd(state, chroot, port)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise
    return SshdServer(
        host="127.0.0.1",
        port=port,
        username=SFTP_USER,
        client_key_path=state / "client_key",
        host_public_key=host_public_key,
        root=chroot,
        state_dir=state,
        process=process,
    )


def _make_chroot(chroot: Path, uid: int) -> Path:
    """The SFTP user's root: inbox/ and outbox/ it may write, printed/ it may not."""
    chroot.mkdir(mode=0o755)
    _check_chroot_chain(chroot)
    for name in REMOTE_DIRS:
        (chroot / name).mkdir(mode=0o755)
        os.chown(chroot / name, uid, -1)
    (chroot / TAKEN_DIR).mkdir(mode=0o755)
    return chroot


def _make_keys(state: Path) -> str:
    """A fresh host key and client key (the only authorized one); returns the host public key."""
    _keygen(state / "ssh_host_ed25519_key", "dijlepost-test-sshd")
    _keygen(state / "client_key", "dijlepost-test-client")
    shutil.copyfile(state / "client_key.pub", state / "authorized_keys")
    (state / "authorized_keys").chmod(0o644)
    return " ".join((state / "ssh_host_ed25519_key.pub").read_text().split()[:2])


def _launch_sshd(state: Path, chroot: Path, port: int) -> subprocess.Popen:
    """sshd with its own config, its log in the state directory; returned once it listens."""
    config = state / "sshd_config"
    config.write_text(_config(state, chroot, port))
    config.chmod(0o600)
    log = state / "sshd.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    _wait_until_listening(process, log)
    return process
