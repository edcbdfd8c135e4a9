"""Pytest plugin: a real OpenSSH sshd on loopback playing the print house.

The paper-path integration tests upload through `PrintHouseHook` to this server, so host key
verification, public-key authentication, the chroot and `internal-sftp` are OpenSSH's own, as at
the print house. The server runs for the whole session on a free port with its own config, host
key and client key; `printhouse_dirs` gives each test an empty inbox, outbox and `printed/` (where
the print house moves what it takes: root-owned, so the SFTP user can read but not change it) and
an empty print log.

sshd is strict about the chroot: every component of its path must be root-owned and not group- or
world-writable, which rules out /tmp and pytest's tmp_path. The state directory therefore lives in
/run (root-owned tmpfs) and is removed at session end. Tests run as root (here and in CI) because
sshd needs root to chroot and to switch to the SFTP user.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from include.dijlepost.printhouse import sftp_connection
from tests.support.tools import require_tool

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
        return sftp_connection(self.host, self.port, self.username, str(self.client_key_path),
                               self.host_public_key)

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
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
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
        _run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
              "--shell", "/usr/sbin/nologin", "--password", "*", SFTP_USER])
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        chroot = state / "chroot"
        chroot.mkdir(mode=0o755)
        _check_chroot_chain(chroot)
        for name in REMOTE_DIRS:
            (chroot / name).mkdir(mode=0o755)
            os.chown(chroot / name, uid, -1)
        (chroot / TAKEN_DIR).mkdir(mode=0o755)

        _keygen(state / "ssh_host_ed25519_key", "dijlepost-test-sshd")
        _keygen(state / "client_key", "dijlepost-test-client")
        shutil.copyfile(state / "client_key.pub", state / "authorized_keys")
        (state / "authorized_keys").chmod(0o644)
        host_public_key = " ".join(
            (state / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        )

        port = _free_port()
        config = state / "sshd_config"
        config.write_text(_config(state, chroot, port))
        config.chmod(0o600)
        log = state / "sshd.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            )
        _wait_until_listening(process, log)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise
    return SshdServer(
        host="127.0.0.1", port=port, username=SFTP_USER, client_key_path=state / "client_key",
        host_public_key=host_public_key, root=chroot, state_dir=state, process=process,
    )


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
