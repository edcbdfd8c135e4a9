"""The sandbox against the PUBLISHED eBox Swagger files, with schemathesis, and the client's recorded
requests against the same files.

Schemathesis generates requests for every operation of the Message Registry 2.1 and the Federation
1.3 files (a few examples each, reproducible, over HTTPS on loopback, with a valid token) and checks
the sandbox's answers: never a server error, and always the contract's shape. The operations the
sandbox implements get schemathesis's status code, content type and response schema checks; every
other published operation must answer a `StatusMessage` of its file (400 NOT_IMPLEMENTED), never a
framework error body.
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from schemathesis import openapi
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from include.dijlepost.ebox.client import EboxClient
from tests.include.dijlepost.ebox.helpers import CITIZEN_ID, ENTERPRISE_ID, publication
from tests.support.contracts import DOCUMENTS, EBOX_CONTRACTS, SwaggerContract

pytestmark = pytest.mark.integration

# Operations the sandbox serves, by file: the full schemathesis checks apply to them.
IMPLEMENTED = {
    "message-registry-2.1.yaml": {
        ("POST", "/publishMessage"),
        ("POST", "/searchMessageStatus"),
        ("GET", "/referenceData/messageTypes"),
        ("GET", "/referenceData/messageTypes/{messageTypeId}"),
    },
    "federation-1.3.yaml": {("POST", "/eboxPreferences/search")},
}
EXAMPLES_IMPLEMENTED = 8
EXAMPLES_OTHER = 2
FULL_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _published(name: str) -> dict:
    path = EBOX_CONTRACTS / name
    if not path.exists():
        pytest.skip(f"{path} is not available here")
    return yaml.safe_load(path.read_text())


def _status_message_validator(document: dict) -> Draft4Validator:
    registry = Registry().with_resource(
        "urn:published", Resource.from_contents(document, default_specification=DRAFT4)
    )
    return Draft4Validator({"$ref": "urn:published#/definitions/StatusMessage"}, registry=registry)


@pytest.fixture
def token(ebox) -> str:
    with EboxClient(ebox.config()) as client:
        return client._access_token()


@pytest.mark.parametrize("name", sorted(IMPLEMENTED))
def test_the_sandbox_conforms_to_the_published_swagger(ebox, token, name):
    document = _published(name)
    prefix = next(prefix for prefix, file in DOCUMENTS.items() if file == name)
    base_url = ebox.base_url + prefix
    status_message = _status_message_validator(document)
    schema = openapi.from_dict(document)
    seen: Counter = Counter()
    problems: list[str] = []

    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        implemented = key in IMPLEMENTED[name]

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_IMPLEMENTED if implemented else EXAMPLES_OTHER,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case):
            response = case.call(
                base_url=base_url,
                headers={"Authorization": f"Bearer {token}"},
                verify=str(ebox.ca_path),
                timeout=10,
            )
            seen[key] += 1
            where = f"{key[0]} {key[1]} -> {response.status_code}"
            if implemented:
                try:
                    case.validate_response(response, checks=FULL_CHECKS)
                except AssertionError as exc:  # schemathesis's FailureGroup lists what failed
                    problems.append(f"{where}: {exc}")
                return
            try:
                body = response.json()
            except ValueError:
                problems.append(f"{where}: not JSON: {response.text[:200]!r}")
                return
            errors = [e.message for e in status_message.iter_errors(body)]
            if response.status_code >= 500 or errors or "detail" in body:
                problems.append(f"{where}: not a StatusMessage of {name}: {errors or body}")

        exercise()
    assert problems == []
    assert set(seen) >= IMPLEMENTED[name]
    published = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete", "options", "head")
    }
    assert set(seen) == published  # every published operation was exercised


def test_the_clients_recorded_requests_conform_to_the_published_swagger(ebox, monkeypatch):
    contract = SwaggerContract(EBOX_CONTRACTS) if SwaggerContract.available() else None
    if contract is None:
        pytest.skip(f"the published Swagger files are not in {EBOX_CONTRACTS}")
    from include.dijlepost.ebox import client as client_module

    monkeypatch.setattr(client_module, "_MESSAGE_TYPES_CACHE", {})
    recorded: list[httpx.Request] = []
    ebox.state.register_recipient("enterprise", ENTERPRISE_ID)
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    ebox.state.set_faults(token_fail_next=1, retry_after_seconds=0)
    with EboxClient(ebox.config(backoff_base_seconds=0.001)) as client:
        client._http.event_hooks["request"].append(recorded.append)
        assert "MECH-FIN-INVOICE" in client.message_types()
        assert client.lookup_activation("enterprise", [ENTERPRISE_ID])[ENTERPRISE_ID].active
        assert client.lookup_activation("citizen", [CITIZEN_ID])[CITIZEN_ID].active
        first = client.publish(publication(language="fr", subject="Décision à l'égard de la prime"))
        assert client.publish(publication()).kind == "already_published"
        assert (
            client.publish(
                publication(
                    letter_id="L-2",
                    recipient_kind="enterprise",
                    recipient_id=ENTERPRISE_ID,
                    language="de",
                    subject="Prämienentscheidung",
                )
            ).kind
            == "published"
        )
        assert len(client.search_message_status([(first.message_id, "citizen", CITIZEN_ID)])) == 1
    for request in recorded:
        contract.check_request(request)  # raises ContractViolation naming the operation and the field
    assert contract.checked == Counter(
        {
            "GET getAllMessagesTypes request": 1,
            "POST getEboxPreferencesByList request": 1,
            "POST postMessage request": 3,
            "POST getStatus request": 1,
        }
    )
    paths = Counter(request.url.path.rsplit("/", 1)[-1] for request in recorded)
    assert paths["token"] == 2  # the injected 503, then a fresh assertion
    assert paths["search"] == 2  # the citizen search has no published description (NOTES: unverified)
