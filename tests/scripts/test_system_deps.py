"""scripts/system-deps: what it says is missing, and the command it gives, without installing anything."""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "system-deps"


def run(args, path):
    env = {**os.environ, "PATH": path}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


def test_on_a_machine_with_everything_it_only_checks(tmp_path):
    done = run(["--check"], os.environ["PATH"])
    assert done.returncode == 0, done.stderr
    assert "ready" in done.stdout


def test_missing_packages_are_named_with_the_command_that_installs_them(tmp_path):
    # A PATH with the shell's own tools only: no pdftoppm, ssh-keygen, redis, useradd.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "id", "dirname", "seq", "sleep"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    done = run(["--check"], str(bin_dir))
    assert done.returncode == 1
    missing = done.stderr.splitlines()[0]
    for package in ("openssh-client", "poppler-utils", "redis-server", "passwd"):
        assert package in missing
    assert (
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
        in done.stderr
    )
    assert "poppler-utils" in done.stderr.split("apt-get install", 1)[1]
