"""Runtime settings read from the environment (never from the repository).

Airflow tasks get their external systems from Airflow Connections (`dijlepost_db`, `ebox_default`,
`printhouse_sftp`); the few values below are process settings that the CLI, the demo and the tasks
share. Everything has a safe default except the pseudonym key, which must be set outside a test or
demo run so that pseudonyms cannot be recomputed by someone who only has the logs.

| variable                   | setting          | default                        |
| -------------------------- | ---------------- | ------------------------------ |
| `DIJLEPOST_PSEUDONYM_KEY`  | `pseudonym_key`  | none: at least 16 characters   |
| `DIJLEPOST_DATABASE_URL`   | `database_url`   | none (the CLI's `--database-url` or the Airflow Connection) |
| `DIJLEPOST_VAR_DIR`        | `var_dir`        | `var/` in the project root     |
| `DIJLEPOST_DOCUMENT_ROOT`  | `document_root`  | `<var dir>/documents`          |
| `DIJLEPOST_PRINT_WORK_DIR` | `print_work_dir` | `<var dir>/print-batches`      |
| `DIJLEPOST_DOCUMENT_SYNC`  | `document_sync`  | `volume`                       |
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = PROJECT_ROOT / "include" / "templates"
ENV_PREFIX = "DIJLEPOST_"


class ConfigurationError(RuntimeError):
    """A setting is missing or malformed; the message says which one."""


# What a refused value is told, per setting (never the value itself: one of them is a secret).
_MESSAGES = {
    "pseudonym_key": "must be set to a secret of at least 16 characters "
    "(it keys the recipient pseudonyms written to logs and the audit trail)",
    "document_sync": "must be 'volume' or 'file'",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # Secrets: left out of repr() (and so of any log line or traceback that prints the settings), and
    # registered with Airflow's secrets masker by `airflow_support.settings()` (see `secrets`).
    pseudonym_key: bytes = Field(min_length=16, repr=False)
    database_url: str | None = Field(default=None, repr=False)  # may hold a password
    var_dir: Path = PROJECT_ROOT / "var"
    document_root: Path = Field(default_factory=lambda data: data["var_dir"] / "documents")
    print_work_dir: Path = Field(default_factory=lambda data: data["var_dir"] / "print-batches")
    # How a render task makes its PDFs durable: "volume" (one syncfs of the document volume per chunk)
    # or "file" (an fsync per PDF, for a file system whose syncfs does not reach the storage, such as
    # a FUSE-mounted bucket; see docs/scaling.md).
    document_sync: Literal["volume", "file"] = "volume"

    @field_validator("pseudonym_key", mode="before")
    @classmethod
    def _key_of_16_characters(cls, value):
        if isinstance(value, str):
            if len(value) < 16:  # characters, as documented, not bytes
                raise ValueError("too short")
            return value.encode()
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        return value or None

    def secrets(self) -> list[str]:
        """The secret values of these settings as they may appear in text: the pseudonym key (as
        set, and as hex) and the database URL's password, for a log masker."""
        from urllib.parse import unquote, urlsplit

        found = [self.pseudonym_key.decode("utf-8", "replace"), self.pseudonym_key.hex()]
        if self.database_url:
            password = urlsplit(self.database_url).password
            if password:
                found += [password, unquote(password)]
        return found

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of this process; a missing or bad value raises ConfigurationError naming it."""
        try:
            return cls()
        except ValidationError as exc:
            error = exc.errors(include_input=False)[0]
            field = str(error["loc"][0]) if error["loc"] else ""
            variable = ENV_PREFIX + field.upper()
            if field == "document_sync":
                value = exc.errors()[0].get("input")
                raise ConfigurationError(f"{variable} {_MESSAGES[field]}, not {value!r}") from None
            raise ConfigurationError(f"{variable} {_MESSAGES.get(field, error['msg'])}") from None
