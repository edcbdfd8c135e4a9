"""What the client sends and what the sandbox accepts, checked against the published Swagger files
(when /work/shared/contracts/ebox is present, as in CI) and against docs/ebox-sandbox-openapi.yaml."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from fastapi.routing import APIRoute

from include.dijlepost.ebox import sandbox
from include.dijlepost.ebox.client import build_message_to_publish
from tests.support.contracts import EBOX_CONTRACTS
from tests.include.dijlepost.ebox.helpers import publication, unit_config

PROJECT_ROOT = Path(__file__).resolve().parents[4]
CONTRACTS = EBOX_CONTRACTS


def _swagger(name: str) -> dict:
    path = CONTRACTS / name
    if not path.exists():
        pytest.skip(f"{path} is not available here")
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def registry() -> dict:
    return _swagger("message-registry-2.1.yaml")["definitions"]


@pytest.fixture(scope="module")
def federation() -> dict:
    return _swagger("federation-1.3.yaml")["definitions"]


def _every_optional_key():
    return build_message_to_publish(publication(registered=True, message_type_id="T"), unit_config())


def test_message_to_publish_keys_exist_in_the_swagger(registry):
    message = _every_optional_key()
    definition = registry["MessageToPublish"]
    assert set(message) <= set(definition["properties"])
    assert set(definition["required"]) <= set(message)
    assert set(message["recipient"]) <= set(registry["EboxId"]["properties"])
    assert message["recipient"]["eboxType"] in registry["EboxId"]["properties"]["eboxType"]["enum"]
    assert set(message["subject"]) <= set(registry["TranslatedString"]["properties"])
    assert re.fullmatch(definition["properties"]["senderOrganizationId"]["pattern"], message["senderOrganizationId"])
    (attachment,) = message["attachments"]
    assert set(attachment) <= set(registry["AttachmentToPublish"]["properties"])
    assert set(registry["AttachmentToPublish"]["required"]) <= set(attachment)
    assert set(attachment["digest"]) == set(registry["Digest"]["required"])
    assert attachment["digest"]["digestMethod"] in registry["Digest"]["properties"]["digestMethod"]["enum"]


def test_federation_search_body_matches_the_swagger(federation):
    definition = federation["EboxIdSameTypeList"]
    body = {"eboxType": "ENTERPRISE", "eboxIdType": "EnterpriseNumber", "eboxIdValueList": []}
    assert set(body) == set(definition["properties"]) == set(definition["required"])
    assert (body["eboxType"], body["eboxIdType"]) == (
        definition["properties"]["eboxType"]["example"], definition["properties"]["eboxIdType"]["example"])
    assert sandbox.FEDERATION_KINDS["enterprise"] == (body["eboxType"], body["eboxIdType"])


def test_the_sandbox_knows_the_swagger_vocabulary(registry):
    assert sandbox.MESSAGE_TO_PUBLISH_KEYS == set(registry["MessageToPublish"]["properties"])
    assert sandbox.ATTACHMENT_KEYS == set(registry["AttachmentToPublish"]["properties"])
    assert sandbox.MEDIA_TYPES == set(registry["Attachment"]["properties"]["mediaType"]["enum"])
    assert set(sandbox.LANGUAGES) == set(registry["TranslatedString"]["properties"])
    assert set(registry["PublicationStatusMessage"]["required"]) == {"messageId", "expirationDate"}


def test_the_openapi_document_describes_every_sandbox_route():
    document = yaml.safe_load((PROJECT_ROOT / "docs" / "ebox-sandbox-openapi.yaml").read_text())
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item
                  if method in ("get", "post", "put", "patch", "delete")}
    app = sandbox.create_app(sandbox.SandboxState())
    served = {(route.path, method) for route in app.routes if isinstance(route, APIRoute)
              for method in route.methods}
    assert documented == served
