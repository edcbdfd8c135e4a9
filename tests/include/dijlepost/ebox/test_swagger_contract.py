"""The Swagger check itself: it runs on the client's real traffic, and it rejects what the published
files reject (so that the autouse check in this folder can fail)."""

from __future__ import annotations

import json

import httpx
import pytest

from include.dijlepost.ebox.client import EboxClient, build_message_to_publish
from tests.include.dijlepost.ebox.helpers import CITIZEN_ID, ENTERPRISE_ID, publication, unit_config
from tests.support.contracts import ContractViolation

REGISTRY = "https://ebox.test/REST/ebox/enterprise/messageRegistry/v2"
FEDERATION = "https://ebox.test/REST/ebox/enterprise/federation/v1"


@pytest.fixture
def checker(swagger_checked):
    if swagger_checked is None:
        pytest.skip("the published Swagger files are not available here")
    return swagger_checked


def publish_request(
    message: dict, files: dict | None = None, message_type: str = "application/json; charset=UTF-8"
) -> httpx.Request:
    files = {"upfile1": ("L-1.pdf", b"%PDF-1.7", "application/pdf")} if files is None else files
    return httpx.Request(
        "POST",
        f"{REGISTRY}/publishMessage",
        files={"messageToPublish": (None, json.dumps(message).encode(), message_type), **files},
    )


def good_message() -> dict:
    return build_message_to_publish(publication(registered=True), unit_config())


def test_a_publication_built_by_the_client_passes(checker):
    checker.check_request(publish_request(good_message()))


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda m: m.pop("recipient"), "'recipient' is a required property"),
        (lambda m: m.update(bodyMainContent="no"), "is not of type 'boolean'"),
        (lambda m: m.update(registeredMail=None), "None is not of type 'boolean'"),
        (lambda m: m.update(senderOrganizationId="ABC"), "does not match"),
        (lambda m: m["recipient"].update(eboxType="CITIZEN"), "is not one of"),
        (lambda m: m["attachments"][0]["digest"].update(digestMethod="md5"), "is not one of"),
        (lambda m: m.update(colour="blue"), "Additional properties are not allowed"),
        (lambda m: m["subject"].update(en="Your tax"), "Additional properties are not allowed"),
    ],
)
def test_a_publication_the_swagger_refuses_is_refused(checker, change, expected):
    message = good_message()
    change(message)
    with pytest.raises(ContractViolation, match=expected):
        checker.check_request(publish_request(message))


def test_the_message_part_must_declare_its_charset(checker):
    with pytest.raises(ContractViolation, match="declares no charset"):
        checker.check_request(publish_request(good_message(), message_type="application/json"))
    with pytest.raises(ContractViolation, match="declares no charset"):
        checker.check_request(
            httpx.Request(
                "POST",
                f"{REGISTRY}/publishMessage",
                data={"messageToPublish": json.dumps(good_message())},
                files={"upfile1": ("x.pdf", b"%PDF", "application/pdf")},
            )
        )


def test_query_parameters_are_checked(checker):
    checker.check_request(
        httpx.Request("GET", f"{REGISTRY}/referenceData/messageTypes", params={"page": 2, "pageSize": 100})
    )
    with pytest.raises(ContractViolation, match="pageSize"):
        checker.check_request(
            httpx.Request("GET", f"{REGISTRY}/referenceData/messageTypes", params={"pageSize": 500})
        )


def test_form_parts_are_checked_against_the_parameters(checker):
    with pytest.raises(ContractViolation, match="upfile7"):
        checker.check_request(
            publish_request(good_message(), files={"upfile7": ("x.pdf", b"%PDF", "application/pdf")})
        )
    with pytest.raises(ContractViolation, match="messageToPublish is required"):
        checker.check_request(
            httpx.Request(
                "POST", f"{REGISTRY}/publishMessage", files={"upfile1": ("x.pdf", b"%PDF", "application/pdf")}
            )
        )
    with pytest.raises(ContractViolation, match="Content-Type"):
        checker.check_request(httpx.Request("POST", f"{REGISTRY}/publishMessage", json=good_message()))


def test_json_bodies_and_unknown_paths(checker):
    checker.check_request(
        httpx.Request(
            "POST",
            f"{REGISTRY}/searchMessageStatus",
            json=[{"messageId": "m", "eboxId": {"eboxType": "citizen", "eboxIdValue": CITIZEN_ID}}],
        )
    )
    with pytest.raises(ContractViolation, match="is not of type 'string'"):
        checker.check_request(
            httpx.Request("POST", f"{REGISTRY}/searchMessageStatus", json=[{"messageId": 7}])
        )
    with pytest.raises(ContractViolation, match="eboxIdValueList"):
        checker.check_request(
            httpx.Request(
                "POST",
                f"{FEDERATION}/eboxPreferences/search",
                json={"eboxType": "ENTERPRISE", "eboxIdType": "EnterpriseNumber"},
            )
        )
    with pytest.raises(ContractViolation, match="not an operation"):
        checker.check_request(httpx.Request("POST", f"{REGISTRY}/publishMessages", json={}))


def test_answers_are_checked_by_status(checker):
    request = httpx.Request("POST", f"{REGISTRY}/publishMessage")
    checker.check_response(
        httpx.Response(
            201, json={"messageId": "m", "expirationDate": "2027-01-01T00:00:00Z"}, request=request
        )
    )
    with pytest.raises(ContractViolation, match="expirationDate"):
        checker.check_response(httpx.Response(201, json={"messageId": "m"}, request=request))
    with pytest.raises(ContractViolation, match="'id' is a required property"):
        checker.check_response(
            httpx.Response(409, json={"code": "CONFLICT", "message": "x"}, request=request)
        )
    with pytest.raises(ContractViolation, match="not documented"):
        checker.check_response(httpx.Response(200, json={}, request=request))


@pytest.mark.integration
def test_the_client_and_the_sandbox_are_checked_on_every_call(checker, ebox):
    ebox.state.register_recipient("enterprise", ENTERPRISE_ID, exclusively_ebox=True)
    ebox.state.register_recipient("citizen", CITIZEN_ID, no_digital_user=True)
    before = checker.checked.copy()
    with EboxClient(ebox.config(backoff_base_seconds=0.001, max_attempts=2)) as client:
        assert client.lookup_activation("enterprise", [ENTERPRISE_ID])[ENTERPRISE_ID].active
        first = client.publish(publication())
        assert first.kind == "no_digital_user"
        assert client.publish(publication()).kind == "already_published"
        ebox.state.set_faults(fail_next=1, error_status=500)
        enterprise = client.publish(
            publication(letter_id="L-2", recipient_kind="enterprise", recipient_id=ENTERPRISE_ID)
        )
        assert enterprise.kind == "published"
        assert len(client.search_message_status([(first.message_id, "citizen", CITIZEN_ID)])) == 1
    seen = checker.checked - before
    assert seen["POST getEboxPreferencesByList request"] == 1
    assert seen["POST getEboxPreferencesByList answer 200"] == 1
    assert seen["POST postMessage request"] == 4
    assert seen["POST postMessage answer 201"] == 2
    assert seen["POST postMessage answer 409"] == 1
    assert seen["POST postMessage answer 500"] == 1
    assert seen["POST getStatus request"] == seen["POST getStatus answer 201"] == 1
