"""Runtime settings read from the environment (never from the repository).

Airflow tasks get their external systems from Airflow Connections (`dijlepost_db`, `ebox_default`,
`printhouse_sftp`); the few values below are process settings that the CLI, the demo and the tasks
share. Everything has a safe default except the pseudonym key, which must be set outside a test or
demo run so that pseudonyms cannot be recomputed by someone who only has the logs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = PROJECT_ROOT / "include" / "templates"


class ConfigurationError(RuntimeError):
    """A setting is missing or malformed; the message says which one."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    pseudonym_key: bytes
    document_root: Path
    print_work_dir: Path
    # How a render task makes its PDFs durable: "volume" (one syncfs of the document volume per chunk)
    # or "file" (an fsync per PDF, for a file system whose syncfs does not reach the storage, such as
    # a FUSE-mounted bucket; see docs/scaling.md).
    document_sync: str = "volume"

    @classmethod
    def from_env(cls) -> "Settings":
        key = os.environ.get("DIJLEPOST_PSEUDONYM_KEY", "")
        if len(key) < 16:
            raise ConfigurationError(
                "DIJLEPOST_PSEUDONYM_KEY must be set to a secret of at least 16 characters "
                "(it keys the recipient pseudonyms written to logs and the audit trail)"
            )
        var = Path(os.environ.get("DIJLEPOST_VAR_DIR", PROJECT_ROOT / "var"))
        document_sync = os.environ.get("DIJLEPOST_DOCUMENT_SYNC", "volume")
        if document_sync not in ("volume", "file"):
            raise ConfigurationError(f"DIJLEPOST_DOCUMENT_SYNC must be 'volume' or 'file', not {document_sync!r}")
        return cls(
            database_url=os.environ.get("DIJLEPOST_DATABASE_URL") or None,
            pseudonym_key=key.encode(),
            document_root=Path(os.environ.get("DIJLEPOST_DOCUMENT_ROOT", var / "documents")),
            print_work_dir=Path(os.environ.get("DIJLEPOST_PRINT_WORK_DIR", var / "print-batches")),
            document_sync=document_sync,
        )
