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
from typing import Any
from zoneinfo import ZoneInfo

try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 2 layout
    from airflow.hooks.base import BaseHook

from include.dijlepost.ebox.client import EboxClient, EboxConfig, EboxConfigurationError

_NUMBER_EXTRAS = {
    "timeout_seconds": float,
    "max_concurrency": int,
    "max_attempts": int,
    "backoff_base_seconds": float,
    "assertion_leeway_seconds": int,
    "assertion_lifetime_seconds": int,
    "outage_budget_seconds": float,
    "certificate_warning_days": int,
}
SWITCH_ZONE = ZoneInfo("Europe/Brussels")  # a switch date without a zone is the city's time


def config_from_connection(
    conn_id: str, host: str | None, login: str | None, password: str | None, extra: dict[str, Any] | None
) -> EboxConfig:
    """Build an EboxConfig from the fields of an Airflow Connection.

    Raises EboxConfigurationError naming the connection and the field at fault, e.g.
    "ebox_default: extra 'federation_url' is missing"."""
    extra = dict(extra or {})
    # Where each EboxConfig field came from, to name it in an error message.
    origin: dict[str, str] = {}
    fields: dict[str, Any] = {}

    def take(field: str, *candidates: tuple[str, Any]) -> None:
        for where, value in candidates:
            if isinstance(value, str) and value.strip():
                fields[field], origin[field] = value.strip(), where
                return
        raise EboxConfigurationError(f"{conn_id}: {candidates[-1][0]} is missing", field)

    take(
        "message_registry_url",
        ("extra 'message_registry_url'", extra.get("message_registry_url")),
        ("host", host),
    )
    take("federation_url", ("extra 'federation_url'", extra.get("federation_url")))
    take("token_url", ("extra 'token_url'", extra.get("token_url")))
    take("client_id", ("extra 'client_id'", extra.get("client_id")), ("login", login))
    take("sender_organization_id", ("extra 'sender_organization_id'", extra.get("sender_organization_id")))
    take("sender_application_id", ("extra 'sender_application_id'", extra.get("sender_application_id")))

    key_path = extra.get("private_key_path")
    if isinstance(extra.get("private_key"), str) and extra["private_key"].strip():
        fields["private_key_pem"], origin["private_key_pem"] = extra["private_key"], "extra 'private_key'"
    elif password and "-----BEGIN" in password:
        fields["private_key_pem"], origin["private_key_pem"] = password, "password"
    elif key_path:
        try:
            fields["private_key_pem"] = Path(key_path).read_text()
        except OSError as exc:
            raise EboxConfigurationError(
                f"{conn_id}: extra 'private_key_path' cannot be read ({exc.strerror})", "private_key_pem"
            ) from None
        origin["private_key_pem"] = "extra 'private_key_path'"
    else:
        raise EboxConfigurationError(
            f"{conn_id}: the private key is missing (PEM in password or extra 'private_key', "
            "or a file in extra 'private_key_path')",
            "private_key_pem",
        )

    if isinstance(extra.get("certificate"), str) and extra["certificate"].strip():
        fields["certificate_pem"], origin["certificate_pem"] = extra["certificate"], "extra 'certificate'"
    elif extra.get("certificate_path"):
        try:
            fields["certificate_pem"] = Path(extra["certificate_path"]).read_text()
        except OSError as exc:
            raise EboxConfigurationError(
                f"{conn_id}: extra 'certificate_path' cannot be read ({exc.strerror})", "certificate_pem"
            ) from None
        origin["certificate_pem"] = "extra 'certificate_path'"
    else:
        raise EboxConfigurationError(
            f"{conn_id}: the certificate is missing (PEM in extra 'certificate', or a file in extra "
            "'certificate_path')",
            "certificate_pem",
        )
    for pem_field, path_field, field in (
        ("next_certificate", "next_certificate_path", "next_certificate_pem"),
        ("next_private_key", "next_private_key_path", "next_private_key_pem"),
    ):
        if isinstance(extra.get(pem_field), str) and extra[pem_field].strip():
            fields[field], origin[field] = extra[pem_field], f"extra '{pem_field}'"
        elif extra.get(path_field):
            try:
                fields[field] = Path(extra[path_field]).read_text()
            except OSError as exc:
                raise EboxConfigurationError(
                    f"{conn_id}: extra '{path_field}' cannot be read ({exc.strerror})", field
                ) from None
            origin[field] = f"extra '{path_field}'"
    if extra.get("certificate_switch_at") not in (None, ""):
        origin["certificate_switch_at"] = "extra 'certificate_switch_at'"
        try:
            switch = datetime.fromisoformat(str(extra["certificate_switch_at"]).strip())
        except ValueError:
            raise EboxConfigurationError(
                f"{conn_id}: extra 'certificate_switch_at' must be an ISO 8601 date-time "
                "(e.g. 2027-03-01T06:00:00+01:00)",
                "certificate_switch_at",
            ) from None
        fields["certificate_switch_at"] = switch if switch.tzinfo else switch.replace(tzinfo=SWITCH_ZONE)
    if extra.get("key_id") not in (None, ""):
        fields["key_id"], origin["key_id"] = str(extra["key_id"]), "extra 'key_id'"
    if extra.get("ca_bundle"):
        fields["ca_bundle"], origin["ca_bundle"] = str(extra["ca_bundle"]), "extra 'ca_bundle'"
    for name, number in _NUMBER_EXTRAS.items():
        if name not in extra or extra[name] in (None, ""):
            continue
        origin[name] = f"extra '{name}'"
        try:
            # The UI stores extras as typed JSON, but hand-written ones often quote numbers.
            value = number(extra[name])
            if number is int and value != float(extra[name]):
                raise ValueError
        except (TypeError, ValueError):
            raise EboxConfigurationError(
                f"{conn_id}: extra '{name}' must be a {'whole ' if number is int else ''}number", name
            ) from None
        fields[name] = value

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
