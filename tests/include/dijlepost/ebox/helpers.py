"""Shared bits of the eBox tests: a signing key and its certificate, a config, and a multipart reader."""

from __future__ import annotations

import datetime as dt
import json
from functools import cache

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from include.dijlepost.ebox.client import EboxConfig, Publication
from tests.support.contracts import multipart_parts

CITIZEN_ID = "85073003328"
ENTERPRISE_ID = "0123456749"


@cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem() -> str:
    return (
        rsa_key()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


def public_pem() -> str:
    return (
        rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def certificate_for(key: rsa.RSAPrivateKey, name: str = "dijlepost test") -> str:
    """A self-signed PEM certificate of `key`."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


@cache
def certificate_pem() -> str:
    return certificate_for(rsa_key())


def unit_config(**overrides) -> EboxConfig:
    fields = {
        "message_registry_url": "https://ebox.test/REST/ebox/enterprise/messageRegistry/v2/",
        "federation_url": "https://ebox.test/REST/ebox/enterprise/federation/v1/",
        "token_url": "https://ebox.test/REST/oauth/v5/token",
        "client_id": "dijlepost-test",
        "private_key_pem": private_pem(),
        "certificate_pem": certificate_pem(),
        "sender_organization_id": "0200000043",
        "sender_application_id": "dijlepost",
        "backoff_base_seconds": 0.001,
    }
    fields.update(overrides)
    return EboxConfig(**fields)


def publication(**overrides) -> Publication:
    fields = {
        "letter_id": "L-0001",
        "recipient_kind": "citizen",
        "recipient_id": CITIZEN_ID,
        "language": "nl",
        "subject": "Uw aanslagbiljet",
        "message_type_id": "MECH-FIN-INVOICE",
        "registered": False,
        "pdf": b"%PDF-1.7\n% a tiny test document\n",
        "filename": "L-0001.pdf",
    }
    fields.update(overrides)
    return Publication(**fields)


def message_to_publish(request: httpx.Request) -> dict:
    return json.loads(multipart_parts(request)["messageToPublish"][2])
