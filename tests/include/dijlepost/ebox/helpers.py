"""Shared bits of the eBox tests: a signing key, a config, and a multipart reader."""
from __future__ import annotations

import email.parser
import email.policy
import json
from functools import lru_cache

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from include.dijlepost.ebox.client import EboxConfig, Publication

CITIZEN_ID = "85073003328"
ENTERPRISE_ID = "0123456749"


@lru_cache(maxsize=None)
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem() -> str:
    return rsa_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem() -> str:
    return rsa_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def unit_config(**overrides) -> EboxConfig:
    fields = dict(
        message_registry_url="https://ebox.test/REST/ebox/enterprise/messageRegistry/v2/",
        federation_url="https://ebox.test/REST/ebox/enterprise/federation/v1/",
        token_url="https://ebox.test/REST/oauth/v5/token",
        client_id="dijlepost-test",
        private_key_pem=private_pem(),
        sender_organization_id="0200000043",
        sender_application_id="dijlepost",
        backoff_base_seconds=0.001,
    )
    fields.update(overrides)
    return EboxConfig(**fields)


def publication(**overrides) -> Publication:
    fields = dict(
        letter_id="L-0001", recipient_kind="citizen", recipient_id=CITIZEN_ID, language="nl",
        subject="Uw aanslagbiljet", message_type_id="MECH-FIN-INVOICE", registered=False,
        pdf=b"%PDF-1.7\n% a tiny test document\n", filename="L-0001.pdf",
    )
    fields.update(overrides)
    return Publication(**fields)


def multipart_parts(request: httpx.Request) -> dict[str, tuple[str | None, str, bytes]]:
    """name -> (filename, content type, bytes) of a multipart/form-data request."""
    raw = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.read()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
    return parts


def message_to_publish(request: httpx.Request) -> dict:
    return json.loads(multipart_parts(request)["messageToPublish"][2])
