"""The system tools some tests drive (sshd, pdftoppm, Chromium): present, or the test fails saying how
to install them. A missing tool is an error, never a skip: `make test` installs them with
scripts/system-deps, so a machine without one is a machine that is not set up."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str, package: str) -> str:
    """The path of `name` (a command on PATH or an absolute path to an executable); fails the test,
    naming the Debian `package` and the command that installs it, when it is not there."""
    path = name if os.path.isabs(name) else shutil.which(name)
    if path is None or not os.access(path, os.X_OK):
        pytest.fail(
            f"{name} is missing: install Debian's {package} with `scripts/system-deps` (as root) or "
            f"`apt-get install -y --no-install-recommends {package}`",
            pytrace=False,
        )
    return path
