"""Where the published eBox contracts (the Swagger files of `shared/contracts/ebox/`) are.

They are not copied into the repository. Looked up, in order: `$DIJLEPOST_EBOX_CONTRACTS`, the
`shared/` folder beside the checkout (as on the development machines and in CI), `/work/shared`.
Tests that need them skip with the path they looked at when none is present.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_CANDIDATES = [
    Path(os.environ["DIJLEPOST_EBOX_CONTRACTS"]) if os.environ.get("DIJLEPOST_EBOX_CONTRACTS") else None,
    PROJECT_ROOT.parent / "shared" / "contracts" / "ebox",
    Path("/work/shared/contracts/ebox"),
]


def ebox_contracts_dir() -> Path:
    for candidate in _CANDIDATES:
        if candidate is not None and (candidate / "message-registry-2.1.yaml").exists():
            return candidate
    return _CANDIDATES[1]


EBOX_CONTRACTS = ebox_contracts_dir()
