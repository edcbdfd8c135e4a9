"""The sandbox's vocabulary against the published Swagger files (when the shared contracts are
present, as in CI), and its routes against docs/ebox-sandbox-openapi.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.routing import APIRoute

from include.dijlepost.waves import WAVES
from sandboxes.ebox import validation
from sandboxes.ebox.app import create_app
from sandboxes.ebox.state import DEFAULT_MESSAGE_TYPES, SandboxState
from tests.support.contracts import published_definitions

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def registry() -> dict:
    return published_definitions("message-registry-2.1.yaml")


@pytest.fixture(scope="module")
def federation() -> dict:
    return published_definitions("federation-1.3.yaml")


def test_the_federation_search_vocabulary(federation):
    definition = federation["EboxIdSameTypeList"]
    assert validation.FEDERATION_KINDS["enterprise"] == (
        definition["properties"]["eboxType"]["example"],
        definition["properties"]["eboxIdType"]["example"],
    )


def test_the_sandbox_knows_the_swagger_vocabulary(registry):
    assert set(registry["MessageToPublish"]["properties"]) == validation.MESSAGE_TO_PUBLISH_KEYS
    assert set(registry["AttachmentToPublish"]["properties"]) == validation.ATTACHMENT_KEYS
    assert set(registry["Attachment"]["properties"]["mediaType"]["enum"]) == validation.MEDIA_TYPES
    assert set(validation.LANGUAGES) == set(registry["TranslatedString"]["properties"])
    assert set(registry["PublicationStatusMessage"]["required"]) == {"messageId", "expirationDate"}


def test_the_openapi_document_describes_every_sandbox_route():
    document = yaml.safe_load((PROJECT_ROOT / "docs" / "ebox-sandbox-openapi.yaml").read_text())
    documented = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    app = create_app(SandboxState())
    served = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    assert documented == served


def test_the_default_registry_holds_every_message_type_the_waves_use(registry):
    held = {t.message_type_id: t for t in DEFAULT_MESSAGE_TYPES}
    used = {type_id for wave in WAVES.values() for type_id in wave.ebox_message_types.values()}
    assert used <= set(held)
    unit_enum = registry["ValidityPeriod"]["properties"]["validityPeriodUnit"]["enum"]
    assert {t.validity_unit for t in DEFAULT_MESSAGE_TYPES} <= set(unit_enum)
    for wave in WAVES.values():  # every letter type of a wave has a type
        assert set(wave.letter_types) <= set(wave.ebox_message_types), wave.department
