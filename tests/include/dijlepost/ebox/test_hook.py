"""Connection -> EboxConfig mapping, without Airflow's metadata database."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

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


def _certificate(key, not_before: dt.datetime, not_after: dt.datetime) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dijlepost rotation test")])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


def _pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


NOW = dt.datetime.now(dt.UTC)


def test_the_next_certificate_takes_over_at_the_switch_date(tmp_path):
    next_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    next_cert = _certificate(next_key, NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=400))
    (tmp_path / "next.pem").write_text(_pem(next_key))
    config = build(
        next_certificate=next_cert,
        next_private_key_path=str(tmp_path / "next.pem"),
        certificate_switch_at="2030-03-01T06:00:00",  # no zone: Europe/Brussels
    )
    assert config.certificate_switch_at.utcoffset() == dt.timedelta(hours=1)
    before, after = config.certificate_switch_at - dt.timedelta(seconds=1), config.certificate_switch_at
    assert (
        config.certificate(at=before).public_bytes(serialization.Encoding.PEM).decode() == certificate_pem()
    )
    assert config.certificate(at=after).public_bytes(serialization.Encoding.PEM).decode() == next_cert
    assert config.assertion_header(after)["x5t#S256"] != config.assertion_header(before)["x5t#S256"]
    assert config.signing_key(at=after).private_numbers() == next_key.private_numbers()


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            {"next_certificate": "garbage", "certificate_switch_at": "2030-01-01T00:00:00Z"},
            "next_certificate",
        ),
        ({"certificate_switch_at": "next tuesday"}, "certificate_switch_at"),
        ({"next_private_key": "x"}, "next_private_key_pem is set without next_certificate_pem"),
    ],
)
def test_a_bad_rotation_setting_is_named(extra, message):
    with pytest.raises(EboxConfigurationError, match=message):
        build(**extra)


def test_the_next_certificate_must_come_with_its_switch_date_and_key():
    with pytest.raises(EboxConfigurationError, match="certificate_switch_at"):
        build(next_certificate=certificate_pem())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(EboxConfigurationError, match="next_certificate_pem is not the certificate of"):
        build(
            next_certificate=_certificate(other, NOW, NOW + dt.timedelta(days=9)),
            certificate_switch_at="2030-01-01T00:00:00Z",
        )


def test_an_expired_certificate_is_refused_and_one_about_to_expire_warned_about(caplog):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    expired = _certificate(key, NOW - dt.timedelta(days=400), NOW - dt.timedelta(days=1))
    config = build(password=_pem(key), certificate=expired)
    with pytest.raises(EboxConfigurationError, match="expired on .* put the renewed certificate"):
        EboxClient(config)
    soon = _certificate(key, NOW - dt.timedelta(days=300), NOW + dt.timedelta(days=10))
    with caplog.at_level("INFO"):
        EboxClient(build(password=_pem(key), certificate=soon, certificate_warning_days=30)).close()
    assert "expires on" in caplog.text and "event=alert_ebox_certificate_expiring" in caplog.text
    assert "in 9 days" in caplog.text or "in 10 days" in caplog.text
    # With its successor set to take over before it expires, no warning.
    config = build(
        password=_pem(key),
        certificate=soon,
        next_certificate=_certificate(key, NOW, NOW + dt.timedelta(days=400)),
        certificate_switch_at=(NOW + dt.timedelta(days=5)).isoformat(),
    )
    assert config.check_certificate() is None
    # An expired current certificate after the switch date is no obstacle: the next one is in use.
    config = build(
        password=_pem(key),
        certificate=expired,
        next_certificate=_certificate(key, NOW - dt.timedelta(days=2), NOW + dt.timedelta(days=400)),
        certificate_switch_at=(NOW - dt.timedelta(days=2)).isoformat(),
    )
    assert config.check_certificate() is None


def test_the_extras_model_reads_empty_as_absent_and_numbers_as_text_or_json():
    from include.dijlepost.ebox.hook import EboxExtras

    extras = EboxExtras.model_validate(
        {"ca_bundle": "  ", "key_id": 2026, "max_attempts": "3", "timeout_seconds": 12, "unknown": "kept out"}
    )
    assert extras.ca_bundle is None and extras.key_id == "2026"
    assert (extras.max_attempts, extras.timeout_seconds) == (3, 12.0)
    assert not hasattr(extras, "unknown")
    config = build(key_id=2026, ca_bundle="")
    assert (config.key_id, config.ca_bundle) == ("2026", None)
