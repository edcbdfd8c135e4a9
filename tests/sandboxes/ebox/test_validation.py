"""The sandbox's request validation, called directly: each rule of the eBox notes and the Swagger."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest

from sandboxes.ebox.state import DEFAULT_MESSAGE_TYPES
from sandboxes.ebox.validation import (
    ApiError,
    RegisteredClient,
    Upload,
    validate_publication,
    validate_status_request,
)
from tests.include.dijlepost.ebox.helpers import CITIZEN_ID

PDF = b"%PDF-1.7 validation test"
CLIENT = RegisteredClient("c", "unused", "0200000043", "dijlepost", frozenset())


def digest(data: bytes, padded: bool = True) -> str:
    value = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    return value if padded else value.rstrip("=")


def valid_message() -> dict:
    return {
        "recipient": {"eboxType": "citizen", "eboxIdValue": CITIZEN_ID},
        "subject": {"nl": "Uw aanslag"},
        "bodyMainContent": False,
        "replyAuthorized": False,
        "messageTypeId": "MECH-FIN-INVOICE",
        "senderOrganizationId": "0200000043",
        "senderApplicationId": "dijlepost",
        "attachments": [
            {
                "httpPartName": "upfile1",
                "mainContent": True,
                "attachmentSigned": False,
                "digest": {"digestMethod": "sha_256", "digestValue": digest(PDF)},
            }
        ],
    }


def uploads(**overrides) -> dict[str, Upload]:
    parts = {"upfile1": Upload("brief.pdf", "application/pdf", PDF)}
    parts.update(overrides)
    return parts


def check(message, parts=None) -> dict:
    return validate_publication(json.dumps(message), uploads() if parts is None else parts, CLIENT)


def test_a_valid_message_is_accepted_and_summarised():
    record = check(valid_message())
    assert record["recipient_kind"] == "citizen" and record["recipient_id"] == CITIZEN_ID
    assert (record["language"], record["subject"]) == ("nl", "Uw aanslag")
    assert record["attachments"][0]["sha256"] == digest(PDF, padded=False)


def test_unpadded_digest_is_accepted_too():
    message = valid_message()
    message["attachments"][0]["digest"]["digestValue"] = digest(PDF, padded=False)
    check(message)


def test_a_body_as_main_content_is_accepted():
    message = valid_message()
    message.update(bodyMainContent=True, bodyContent={"nl": "Zie bijlage"})
    message["attachments"][0]["mainContent"] = False
    check(message)


def _mutated(change):
    message = valid_message()
    change(message)
    return message


CASES = {
    "null value": (lambda m: m.update(messageTypeId=None), "INVALID_INPUT", "$.messageTypeId is null"),
    "nested null": (
        lambda m: m["attachments"][0].update(attachmentSigned=None),
        "INVALID_INPUT",
        "$.attachments[0].attachmentSigned is null",
    ),
    "missing subject": (lambda m: m.pop("subject"), "INVALID_INPUT", "$.subject is required"),
    "missing replyAuthorized": (lambda m: m.pop("replyAuthorized"), "INVALID_INPUT", "replyAuthorized"),
    "missing bodyMainContent": (lambda m: m.pop("bodyMainContent"), "INVALID_INPUT", "bodyMainContent"),
    "unknown property": (lambda m: m.update(colour="red"), "INVALID_INPUT", "colour"),
    "two languages": (
        lambda m: m.update(subject={"nl": "a", "fr": "b"}),
        "INVALID_INPUT",
        "exactly one language",
    ),
    "english": (lambda m: m.update(subject={"en": "a"}), "INVALID_INPUT", "unsupported language"),
    "subject 256": (lambda m: m.update(subject={"nl": "x" * 256}), "INVALID_INPUT", "at most 255"),
    "empty subject": (lambda m: m.update(subject={"nl": " "}), "INVALID_INPUT", "empty"),
    "body language": (lambda m: m.update(bodyContent={"fr": "x"}), "INVALID_INPUT", "language of $.subject"),
    "main body without body": (lambda m: m.update(bodyMainContent=True), "INVALID_INPUT", "no $.bodyContent"),
    "two main contents": (
        lambda m: m.update(bodyMainContent=True, bodyContent={"nl": "x"}),
        "INVALID_INPUT",
        "exactly one main content",
    ),
    "no main content": (
        lambda m: m["attachments"][0].update(mainContent=False),
        "INVALID_INPUT",
        "exactly one main content",
    ),
    "recipient type": (lambda m: m["recipient"].update(eboxType="CITIZEN"), "INVALID_INPUT", "eboxType"),
    "recipient id": (lambda m: m["recipient"].update(eboxIdValue="123"), "INVALID_INPUT", "11-digit"),
    "sender pattern": (
        lambda m: m.update(senderOrganizationId="2200000043"),
        "INVALID_INPUT",
        "[0-1][0-9]{9}",
    ),
    "other sender": (lambda m: m.update(senderOrganizationId="0123456749"), "INVALID_SENDER", "organisation"),
    "other application": (lambda m: m.update(senderApplicationId="x"), "INVALID_SENDER", "application"),
    "boolean as string": (lambda m: m.update(replyAuthorized="false"), "INVALID_INPUT", "true or false"),
    "payment data": (lambda m: m.update(paymentData={"amount": 1}), "NOT_IMPLEMENTED", "paymentData"),
    "digest": (
        lambda m: m["attachments"][0]["digest"].update(digestValue=digest(b"other")),
        "DIGEST_DO_NOT_MATCH",
        "upfile1",
    ),
    "digest method": (
        lambda m: m["attachments"][0]["digest"].update(digestMethod="sha_1"),
        "INVALID_INPUT",
        "sha_256",
    ),
    "unknown part": (
        lambda m: m["attachments"][0].update(httpPartName="upfile2"),
        "INVALID_INPUT",
        "names no uploaded part",
    ),
    "business value": (
        lambda m: m.update(businessDataList=[{"key": "k", "values": [{"nl": "é" * 129}]}]),
        "INVALID_INPUT",
        "256 bytes",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule(name):
    change, code, fragment = CASES[name]
    with pytest.raises(ApiError) as caught:
        check(_mutated(change))
    assert (caught.value.status, caught.value.code) == (400, code)
    assert fragment in caught.value.message


def test_an_uploaded_part_must_be_listed():
    with pytest.raises(ApiError, match="not listed"):
        check(valid_message(), uploads(upfile2=Upload("annex.pdf", "application/pdf", b"%PDF")))


def test_not_json_is_invalid_input():
    with pytest.raises(ApiError, match="not valid JSON"):
        validate_publication("{", uploads(), CLIENT)


# -- the message-type registry --------------------------------------------------------------------

REGISTRY = {t.message_type_id: t for t in DEFAULT_MESSAGE_TYPES}


def test_a_registered_message_type_is_accepted():
    record = validate_publication(json.dumps(valid_message()), uploads(), CLIENT, REGISTRY)
    assert record["message_type_id"] == "MECH-FIN-INVOICE"


def test_an_unknown_message_type_is_refused_by_name():
    message = {**valid_message(), "messageTypeId": "MECH-FIN-INVOICES"}
    with pytest.raises(ApiError) as caught:
        validate_publication(json.dumps(message), uploads(), CLIENT, REGISTRY)
    assert (caught.value.status, caught.value.code) == (400, "INVALID_INPUT")
    assert "'MECH-FIN-INVOICES' is not a registered message type" in caught.value.message


def test_a_message_type_of_another_sender_is_refused():
    other = RegisteredClient("o", "unused", "0200000043", "another-application", frozenset())
    message = {**valid_message(), "senderApplicationId": "another-application"}
    with pytest.raises(ApiError) as caught:
        validate_publication(json.dumps(message), uploads(), other, REGISTRY)
    assert caught.value.code == "INVALID_SENDER"


def test_the_expiry_follows_the_validity_of_the_type():
    published = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    assert REGISTRY["MECH-FIN-TAX"].expiry(published) == datetime(2031, 1, 31, 10, 0, tzinfo=UTC)
    assert REGISTRY["MECH-EW-INSPECTION"].expiry(published) == datetime(2026, 7, 31, 10, 0, tzinfo=UTC)


# -- searchMessageStatus --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            [{"messageId": "", "eboxId": {"eboxType": "citizen", "eboxIdValue": CITIZEN_ID}}],
            "[0].messageId is empty",
        ),
        (
            [{"messageId": "m", "eboxId": {"eboxType": "citizen", "eboxIdValue": {"x": 1}}}],
            "[0].eboxId.eboxIdValue must be a string",
        ),
        (
            [{"messageId": "m", "eboxId": {"eboxType": "CITIZEN", "eboxIdValue": CITIZEN_ID}}],
            "[0].eboxId.eboxType must be citizen or enterprise",
        ),
        (
            [{"messageId": "m", "eboxId": {"eboxType": "enterprise", "eboxIdValue": CITIZEN_ID}}],
            "must be a 10-digit KBO number",
        ),
        ([{"messageId": "m"}], "[0].eboxId must be an EboxId object"),
        (["m"], "[0] must be an object"),
        ({"messageId": "m"}, "body must be an array"),
    ],
)
def test_a_bad_status_request_is_refused_by_field(body, expected):
    with pytest.raises(ApiError) as caught:
        validate_status_request(body)
    assert (caught.value.status, caught.value.code) == (400, "INVALID_INPUT")
    assert expected in caught.value.message


def test_a_good_status_request_is_read():
    assert validate_status_request(
        [{"messageId": "m", "eboxId": {"eboxType": "citizen", "eboxIdValue": CITIZEN_ID}}]
    ) == [("m", "citizen", CITIZEN_ID)]
