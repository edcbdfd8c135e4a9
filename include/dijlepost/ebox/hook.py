"""Airflow hook for the eBox: turns the `ebox_default` Connection into an EboxConfig and a client.

The mapping lives in `config_from_connection`, a pure function, so it is tested without Airflow's
metadata database. Connection fields:

- host (or extra `message_registry_url`): Message Registry base URL
- extra `federation_url`, `token_url`: Federation base URL and OAuth2 token URL
- login (or extra `client_id`): the OAuth2 client id
- password (or extra `private_key`): the RSA private key in PEM; or extra `private_key_path`
- extra `certificate` (PEM) or `certificate_path`: the X.509 certificate of that key registered with
  the eBox for this environment. The client assertion's JOSE header carries its SHA-256 thumbprint
  as `x5t#S256`, and as `kid` unless the optional extra `key_id` gives the key id the eBox knows it by
- extra `sender_organization_id` (KBO), `sender_application_id`
- optional extras `ca_bundle`, `key_id`, `timeout_seconds`, `max_concurrency`, `max_attempts`,
  `backoff_base_seconds`, `assertion_leeway_seconds`, `assertion_lifetime_seconds`,
  `outage_budget_seconds`, `certificate_warning_days`
- certificate rotation: extra `next_certificate` (PEM) or `next_certificate_path`, optionally
  `next_private_key` or `next_private_key_path` (when the next certificate has a new key), and
  `certificate_switch_at` (ISO 8601; without a zone, Europe/Brussels)
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

from airflow.sdk import BaseHook
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from include.dijlepost.ebox.client import EboxClient, EboxConfig, EboxConfigurationError

SWITCH_ZONE = ZoneInfo("Europe/Brussels")  # a switch date without a zone is the city's time


class EboxExtras(BaseModel):
    """The Connection's extra field as the hook reads it: every value optional here (which ones are
    required, and what may stand in for them, is decided in `config_from_connection`), an empty
    string the same as absent, numbers given as JSON numbers or as quoted text."""

    model_config = ConfigDict(extra="ignore")  # PEM values keep their exact text

    message_registry_url: str | None = None
    federation_url: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    sender_organization_id: str | None = None
    sender_application_id: str | None = None
    private_key: str | None = None
    private_key_path: str | None = None
    certificate: str | None = None
    certificate_path: str | None = None
    next_certificate: str | None = None
    next_certificate_path: str | None = None
    next_private_key: str | None = None
    next_private_key_path: str | None = None
    certificate_switch_at: datetime | None = None
    key_id: str | None = None
    ca_bundle: str | None = None
    timeout_seconds: float | None = None
    max_concurrency: int | None = None
    max_attempts: int | None = None
    backoff_base_seconds: float | None = None
    assertion_leeway_seconds: int | None = None
    assertion_lifetime_seconds: int | None = None
    outage_budget_seconds: float | None = None
    certificate_warning_days: int | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("key_id", mode="before")
    @classmethod
    def _key_id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @field_validator("certificate_switch_at")
    @classmethod
    def _brussels_when_naive(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=SWITCH_ZONE) if value and value.tzinfo is None else value


def _kind(name: str) -> type:
    """The type an extra is read as (`int` for `int | None`)."""
    return get_args(EboxExtras.model_fields[name].annotation)[0]


# The extras that set an EboxConfig field of the same name as they are.
_SETTINGS = (
    "key_id",
    "ca_bundle",
    "certificate_switch_at",
    *(name for name in EboxExtras.model_fields if _kind(name) in (int, float)),
)


def _refusal(conn_id: str, exc: ValidationError) -> EboxConfigurationError:
    """The first problem of the extras, named by field and without the value (it may be key material)."""
    error = exc.errors(include_input=False)[0]
    name = str(error["loc"][0])
    kind = _kind(name)
    if kind is datetime:
        what = "must be an ISO 8601 date-time (e.g. 2027-03-01T06:00:00+01:00)"
    elif kind is int:
        what = "must be a whole number"
    elif kind is float:
        what = "must be a number"
    else:
        what = "must be text"
    return EboxConfigurationError(f"{conn_id}: extra '{name}' {what}", name)


def _read(conn_id: str, path: str, extra_name: str, field: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise EboxConfigurationError(
            f"{conn_id}: extra '{extra_name}' cannot be read ({exc.strerror})", field
        ) from None


def config_from_connection(
    conn_id: str, host: str | None, login: str | None, password: str | None, extra: dict[str, Any] | None
) -> EboxConfig:
    """Build an EboxConfig from the fields of an Airflow Connection.

    Raises EboxConfigurationError naming the connection and the field at fault, e.g.
    "ebox_default: extra 'federation_url' is missing"."""
    try:
        extras = EboxExtras.model_validate(extra or {})
    except ValidationError as exc:
        raise _refusal(conn_id, exc) from None
    fields: dict[str, Any] = {}
    origin: dict[str, str] = {}  # where each EboxConfig field came from, to name it in an error

    def take(field: str, *candidates: tuple[str, str | None]) -> None:
        for where, value in candidates:
            if value and value.strip():
                fields[field], origin[field] = value.strip(), where
                return
        raise EboxConfigurationError(f"{conn_id}: {candidates[-1][0]} is missing", field)

    take(
        "message_registry_url", ("extra 'message_registry_url'", extras.message_registry_url), ("host", host)
    )
    take("federation_url", ("extra 'federation_url'", extras.federation_url))
    take("token_url", ("extra 'token_url'", extras.token_url))
    take("client_id", ("extra 'client_id'", extras.client_id), ("login", login))
    take("sender_organization_id", ("extra 'sender_organization_id'", extras.sender_organization_id))
    take("sender_application_id", ("extra 'sender_application_id'", extras.sender_application_id))

    if extras.private_key:
        fields["private_key_pem"], origin["private_key_pem"] = extras.private_key, "extra 'private_key'"
    elif password and "-----BEGIN" in password:
        fields["private_key_pem"], origin["private_key_pem"] = password, "password"
    elif extras.private_key_path:
        fields["private_key_pem"] = _read(
            conn_id, extras.private_key_path, "private_key_path", "private_key_pem"
        )
        origin["private_key_pem"] = "extra 'private_key_path'"
    else:
        raise EboxConfigurationError(
            f"{conn_id}: the private key is missing (PEM in password or extra 'private_key', "
            "or a file in extra 'private_key_path')",
            "private_key_pem",
        )
    # The certificate is required; the next certificate and its key (a rotation) are not.
    for pem_name, path_name, field, required in (
        ("certificate", "certificate_path", "certificate_pem", True),
        ("next_certificate", "next_certificate_path", "next_certificate_pem", False),
        ("next_private_key", "next_private_key_path", "next_private_key_pem", False),
    ):
        pem, path = getattr(extras, pem_name), getattr(extras, path_name)
        if pem:
            fields[field], origin[field] = pem, f"extra '{pem_name}'"
        elif path:
            fields[field], origin[field] = _read(conn_id, path, path_name, field), f"extra '{path_name}'"
        elif required:
            raise EboxConfigurationError(
                f"{conn_id}: the certificate is missing (PEM in extra 'certificate', or a file in extra "
                "'certificate_path')",
                field,
            )
    for name in _SETTINGS:
        value = getattr(extras, name)
        if value is not None:
            fields[name], origin[name] = value, f"extra '{name}'"

    try:
        return EboxConfig(**fields)
    except EboxConfigurationError as exc:
        where = origin.get(exc.field or "", exc.field or "connection")
        raise EboxConfigurationError(f"{conn_id}: {where} is invalid: {exc}", exc.field) from None


class EboxHook(BaseHook):
    """Hook for the Belgian eBox; `get_client()` returns a ready EboxClient."""

    conn_name_attr = "ebox_conn_id"
    default_conn_name = "ebox_default"
    conn_type = "ebox"
    hook_name = "Belgian eBox"

    def __init__(self, ebox_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.ebox_conn_id = ebox_conn_id

    def get_config(self) -> EboxConfig:
        conn = self.get_connection(self.ebox_conn_id)
        return config_from_connection(
            self.ebox_conn_id, conn.host, conn.login, conn.password, conn.extra_dejson
        )

    def get_client(self, **overrides: Any) -> EboxClient:
        """A client of the Connection; keyword arguments replace fields of its config."""
        config = self.get_config()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        return EboxClient(config)

    def get_conn(self) -> EboxClient:
        return self.get_client()
