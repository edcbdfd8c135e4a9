"""What the client sends, checked against the definitions of the published Swagger files (when
the shared contracts are present, as in CI)."""

from __future__ import annotations

import re

import pytest

from include.dijlepost.ebox.client import build_message_to_publish
from tests.include.dijlepost.ebox.helpers import publication, unit_config
from tests.support.contracts import EBOX_CONTRACTS, published_definitions

CONTRACTS = EBOX_CONTRACTS


@pytest.fixture(scope="module")
def registry() -> dict:
    return published_definitions("message-registry-2.1.yaml")


@pytest.fixture(scope="module")
def federation() -> dict:
    return published_definitions("federation-1.3.yaml")


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
    assert re.fullmatch(
        definition["properties"]["senderOrganizationId"]["pattern"], message["senderOrganizationId"]
    )
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
        definition["properties"]["eboxType"]["example"],
        definition["properties"]["eboxIdType"]["example"],
    )
