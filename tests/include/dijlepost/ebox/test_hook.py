"""Connection -> EboxConfig mapping, without Airflow's metadata database."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from include.dijlepost.ebox.client import EboxClient, EboxConfigurationError
from include.dijlepost.ebox.hook import EboxHook, config_from_connection
from tests.include.dijlepost.ebox.helpers import certificate_for, certificate_pem, private_pem

HOST = "https://services-acpt.socialsecurity.be/REST/ebox/enterprise/messageRegistry/v2/"
EXTRA = {
    "federation_url": "https://services-acpt.socialsecurity.be/REST/ebox/enterprise/federation/v1/",
    "token_url": "https://services-acpt.socialsecurity.be/REST/oauth/v5/token",
    "sender_organization_id": "0200000043",
    "sender_application_id": "dijlepost",
    "certificate": certificate_pem(),
}


def build(host=HOST, login="dijlepost-client", password=None, **extra):
    fields = {**EXTRA, **extra}
    return config_from_connection(
        "ebox_default",
        host,
        login,
        private_pem() if password is None else password,
        {k: v for k, v in fields.items() if v is not None},
    )


def test_a_complete_connection_maps_onto_the_config():
    config = build(timeout_seconds="12.5", max_concurrency=8, max_attempts="3", backoff_base_seconds=0.1)
    assert config.message_registry_url == HOST
    assert config.federation_url == EXTRA["federation_url"]
    assert config.token_url == EXTRA["token_url"]
    assert config.client_id == "dijlepost-client"
    assert config.private_key_pem == private_pem()
    assert (config.sender_organization_id, config.sender_application_id) == ("0200000043", "dijlepost")
    assert (config.timeout_seconds, config.max_concurrency, config.max_attempts) == (12.5, 8, 3)
    assert config.ca_bundle is None


def test_extras_take_precedence_over_host_login_and_password():
    config = build(
        host="https://ignored.example/",
        login="ignored",
        password="not a pem",
        message_registry_url=HOST,
        client_id="from-extra",
        private_key=private_pem(),
    )
    assert (config.message_registry_url, config.client_id) == (HOST, "from-extra")


def test_private_key_from_a_file(tmp_path):
    key_file = tmp_path / "ebox.pem"
    key_file.write_text(private_pem())
    assert build(password="", private_key_path=str(key_file)).private_key_pem == private_pem()


def test_certificate_from_a_file_and_key_id(tmp_path):
    cert_file = tmp_path / "ebox.crt"
    cert_file.write_text(certificate_pem())
    config = build(certificate=None, certificate_path=str(cert_file), key_id="mechelen-acpt-2026")
    assert config.certificate_pem == certificate_pem()
    assert config.assertion_header() == {
        "kid": "mechelen-acpt-2026",
        "x5t#S256": config.certificate_thumbprint(),
    }
    assert build().assertion_header()["kid"] == build().certificate_thumbprint()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"federation_url": None}, "ebox_default: extra 'federation_url' is missing"),
        ({"token_url": ""}, "ebox_default: extra 'token_url' is missing"),
        ({"sender_application_id": None}, "ebox_default: extra 'sender_application_id' is missing"),
        ({"host": None}, "ebox_default: host is missing"),
        ({"login": None}, "ebox_default: login is missing"),
        ({"password": ""}, "ebox_default: the private key is missing"),
        ({"password": "", "private_key_path": "/nonexistent.pem"}, "extra 'private_key_path' cannot be read"),
        ({"sender_organization_id": "12345"}, "ebox_default: extra 'sender_organization_id' is invalid"),
        ({"host": "http://plain.example/"}, "ebox_default: host is invalid"),
        (
            {"password": "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----"},
            "ebox_default: password is invalid",
        ),
        ({"timeout_seconds": "soon"}, "ebox_default: extra 'timeout_seconds' must be a number"),
        ({"max_concurrency": 2.5}, "ebox_default: extra 'max_concurrency' must be a whole number"),
        ({"max_attempts": 0}, "ebox_default: extra 'max_attempts' is invalid"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "ebox_default: extra 'ca_bundle' is invalid"),
        ({"certificate": None}, "ebox_default: the certificate is missing"),
        (
            {"certificate": None, "certificate_path": "/nonexistent.crt"},
            "extra 'certificate_path' cannot be read",
        ),
        (
            {"certificate": "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----"},
            "ebox_default: extra 'certificate' is invalid: certificate_pem is not a PEM X.509 certificate",
        ),
        (
            {"certificate": certificate_for(rsa.generate_private_key(public_exponent=65537, key_size=2048))},
            "certificate_pem is not the certificate of private_key_pem",
        ),
    ],
)
def test_a_missing_or_malformed_field_is_named(change, message):
    with pytest.raises(EboxConfigurationError) as caught:
        build(**change)
    assert message in str(caught.value)
    assert "BEGIN" not in str(caught.value)  # never echo key material


def test_hook_identity():
    assert (EboxHook.conn_name_attr, EboxHook.default_conn_name, EboxHook.conn_type, EboxHook.hook_name) == (
        "ebox_conn_id",
        "ebox_default",
        "ebox",
        "Belgian eBox",
    )


def test_hook_reads_the_connection_from_the_environment(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_EBOX_UNIT",
        json.dumps(
            {
                "conn_type": "ebox",
                "host": HOST,
                "login": "dijlepost-client",
                "password": private_pem(),
                "extra": EXTRA,
            }
        ),
    )
    hook = EboxHook(ebox_conn_id="ebox_unit")
    assert hook.get_config().message_registry_url == HOST
    with hook.get_client() as client:
        assert isinstance(client, EboxClient)
