"""Requests checked against the published contract; every error answer in its `StatusMessage` form.

The checks are at least as strict as the real service is documented to be (NOTES.md and the
Message Registry 2.1 / Federation 1.3 Swagger files), so that a letter that passes here is not
rejected there for shape: publishMessage (multipart parts, MessageToPublish, digests, the message
type, the size limit), searchMessageStatus and the federation searches.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from sandboxes.ebox.state import MessageType

MESSAGE_REGISTRY_PREFIX = "/REST/ebox/enterprise/messageRegistry/v2"
FEDERATION_PREFIX = "/REST/ebox/enterprise/federation/v1"
TOKEN_PATH = "/REST/oauth/v5/token"
ADMIN_PREFIX = "/_sandbox"
# The published integers are `format: int32` (page, validityPeriodNumber, ...).
INT32_MAX = 2**31 - 1

# Every operation of the two published files (path template under its prefix -> its methods): a
# method not listed on a published path answers 405 with `Allow`, a listed one the sandbox does not
# implement 400 NOT_IMPLEMENTED.
PUBLISHED_OPERATIONS: dict[str, dict[str, frozenset[str]]] = {
    FEDERATION_PREFIX: {
        "/api": frozenset({"GET", "OPTIONS"}),
        "/api/doc": frozenset({"GET"}),
        "/api/doc/jsonSchemas/{jsonSchema}": frozenset({"GET"}),
        "/api/doc/swagger.json": frozenset({"GET"}),
        "/eboxPreferences/search": frozenset({"POST"}),
        "/eboxPreferences": frozenset({"PATCH"}),
        "/messageProviders": frozenset({"GET"}),
        "/messageProviders/{messageProviderId}": frozenset({"GET", "PATCH"}),
        # Not in the published file (NOTES.md): the citizens' search, assumed like eboxPreferences/search.
        "/citizenEboxConsents/search": frozenset({"POST"}),
    },
    MESSAGE_REGISTRY_PREFIX: {
        "/ebox": frozenset({"GET"}),
        "/ebox/messages": frozenset({"GET", "PATCH"}),
        "/ebox/messages/{messageId}": frozenset({"GET"}),
        "/ebox/messages/{messageId}/attachments": frozenset({"GET"}),
        "/ebox/messages/{messageId}/attachments/{attachmentId}": frozenset({"GET"}),
        "/ebox/messages/{messageId}/attachments/{attachmentId}/content": frozenset({"GET"}),
        "/ebox/messages/{messageId}/body": frozenset({"GET"}),
        "/ebox/messages/{messageId}/paymentData": frozenset({"GET"}),
        "/publishMessage": frozenset({"POST"}),
        "/linkEboxMessage": frozenset({"POST"}),
        "/searchMessageStatus": frozenset({"POST"}),
        "/referenceData/messageTypes": frozenset({"GET"}),
        "/referenceData/messageTypes/{messageTypeId}": frozenset({"GET"}),
        "/referenceData/senderApplications": frozenset({"GET"}),
        "/referenceData/senderApplications/{senderApplicationId}": frozenset({"GET"}),
        "/referenceData/senderApplications/{senderApplicationId}/images/{imageId}/content": frozenset(
            {"GET"}
        ),
        "/referenceData/senderOrganizations": frozenset({"GET"}),
        "/referenceData/senderOrganizations/{senderOrganizationId}": frozenset({"GET"}),
        "/referenceData/senderOrganizations/{senderOrganizationId}/images/{imageId}/content": frozenset(
            {"GET"}
        ),
    },
}


def published_methods(path: str) -> frozenset[str] | None:
    """The methods the published files give the path (a template's `{...}` is one segment); None
    for a path they do not publish."""
    for prefix, operations in PUBLISHED_OPERATIONS.items():
        if not path.startswith(prefix + "/"):
            continue
        segments = path[len(prefix) :].split("/")
        for template, methods in operations.items():
            parts = template.split("/")
            if len(parts) == len(segments) and all(
                (t.startswith("{") and t.endswith("}") and s) or t == s
                for t, s in zip(parts, segments, strict=True)
            ):
                return methods
    return None


MAX_IDS_PER_SEARCH = 1000
MAX_SUBJECT_LENGTH = 255
MAX_FILENAME_LENGTH = 80
MAX_BUSINESS_VALUE_BYTES = 256
MAX_ASSERTION_LIFETIME_SECONDS = 3600
UPLOAD_PARTS = tuple(f"upfile{n}" for n in range(1, 7))
LANGUAGES = ("nl", "fr", "de")
MEDIA_TYPES = frozenset(
    {
        "application/pdf",
        "application/zip",
        "text/csv",
        "text/html",
        "text/plain",
        "text/xml",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/vnd.oasis.opendocument.graphics",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-powerpoint",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    }
)
MESSAGE_TO_PUBLISH_KEYS = frozenset(
    {
        "recipient",
        "forTheAttentionOf",
        "originalMessageId",
        "subject",
        "messageTypeId",
        "expirationDate",
        "senderOrganizationId",
        "senderApplicationId",
        "registeredMail",
        "attachments",
        "bodyMainContent",
        "bodyContent",
        "businessDataList",
        "paymentData",
        "replyAuthorized",
    }
)
ATTACHMENT_KEYS = frozenset({"attachmentTitle", "httpPartName", "mainContent", "digest", "attachmentSigned"})
RECIPIENT_ID_PATTERNS = {"citizen": re.compile(r"[0-9]{11}"), "enterprise": re.compile(r"[0-1][0-9]{9}")}
SENDER_ORGANIZATION_PATTERN = re.compile(r"[0-1][0-9]{9}")
# The federation names the kinds and id types in its own vocabulary (see client._search_activation_batch).
FEDERATION_KINDS = {"enterprise": ("ENTERPRISE", "EnterpriseNumber"), "citizen": ("CITIZEN", "SSIN")}


class ApiError(Exception):
    """An answer in the contract's StatusMessage form."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self, path: str = "") -> JSONResponse:
        # The two Swagger files spell the environment enum differently: upper case in the federation's.
        environment = "SIMULATION" if path.startswith(FEDERATION_PREFIX) else "simulation"
        return JSONResponse(
            {"id": str(uuid.uuid4()), "code": self.code, "message": self.message, "environment": environment},
            status_code=self.status,
        )


def _invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_INPUT", message)


invalid = _invalid  # 400 INVALID_INPUT with the given message


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    public_key_pem: str
    organization_id: str
    application_id: str
    scopes: frozenset[str]
    certificate_thumbprint: str | None = None  # x5t#S256 of the registered X.509 certificate


@dataclass(frozen=True)
class Upload:
    filename: str | None
    content_type: str | None
    content: bytes


# -- validation of a publication --------------------------------------------------------------


def _find_null(value: Any, path: str) -> str | None:
    if value is None:
        return path
    if isinstance(value, dict):
        items = ((f"{path}.{k}", v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub_path, sub_value in items:
        found = _find_null(sub_value, sub_path)
        if found:
            return found
    return None


def _expect(value: Any, kind: type, path: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise _invalid(f"{path} must be {what}")
    return value


def _translated(value: Any, path: str, max_length: int | None = None) -> tuple[str, str]:
    """The one (language, text) of a TranslatedString: exactly one language per message."""
    _expect(value, dict, path, "an object with one of nl, fr, de")
    unknown = set(value) - set(LANGUAGES)
    if unknown:
        raise _invalid(f"{path} has unsupported language(s) {sorted(unknown)}")
    if len(value) != 1:
        raise _invalid(f"{path} must have exactly one language (has {len(value)})")
    ((language, text),) = value.items()
    _expect(text, str, f"{path}.{language}", "a string")
    if not text.strip():
        raise _invalid(f"{path}.{language} is empty")
    if max_length is not None and len(text) > max_length:
        raise _invalid(f"{path}.{language} is {len(text)} characters long (at most {max_length})")
    return language, text


def _digest_value(content: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(content).digest()).decode("ascii").rstrip("=")


def validate_publication(
    message_json: str,
    uploads: dict[str, Upload],
    client: RegisteredClient,
    message_types: Mapping[str, MessageType] | None = None,
) -> dict[str, Any]:
    """Check a publishMessage request the way the contract describes; return what to store.

    `message_types` is the registry: a `messageTypeId` must name one of them that this client's
    organisation and application may publish (None: any id is accepted).

    Raises ApiError: 400 INVALID_INPUT (shape), INVALID_SENDER, DIGEST_DO_NOT_MATCH, NOT_IMPLEMENTED."""
    try:
        message = json.loads(message_json)
    except ValueError as exc:
        raise _invalid(f"messageToPublish is not valid JSON ({exc})") from None
    _expect(message, dict, "messageToPublish", "a JSON object")
    null_at = _find_null(message, "$")
    if null_at:
        raise _invalid(f"{null_at} is null: leave the field out instead")
    unknown = set(message) - MESSAGE_TO_PUBLISH_KEYS
    if unknown:
        raise _invalid(f"unknown MessageToPublish properties {sorted(unknown)}")
    for required in ("recipient", "subject", "bodyMainContent", "replyAuthorized"):
        if required not in message:
            raise _invalid(f"$.{required} is required")
    if "paymentData" in message:
        raise ApiError(400, "NOT_IMPLEMENTED", "paymentData is not supported")

    recipient = _expect(message["recipient"], dict, "$.recipient", "an EboxId object")
    if set(recipient) != {"eboxType", "eboxIdValue"}:
        raise _invalid("$.recipient must have exactly eboxType and eboxIdValue")
    kind = recipient["eboxType"]
    if kind not in RECIPIENT_ID_PATTERNS:
        raise _invalid("$.recipient.eboxType must be citizen or enterprise")
    recipient_id = _expect(recipient["eboxIdValue"], str, "$.recipient.eboxIdValue", "a string")
    if not RECIPIENT_ID_PATTERNS[kind].fullmatch(recipient_id):
        expected = "an 11-digit SSIN" if kind == "citizen" else "a 10-digit KBO number"
        raise _invalid(f"$.recipient.eboxIdValue must be {expected}")

    language, subject = _translated(message["subject"], "$.subject", MAX_SUBJECT_LENGTH)
    body_main = _expect(message["bodyMainContent"], bool, "$.bodyMainContent", "true or false")
    _expect(message["replyAuthorized"], bool, "$.replyAuthorized", "true or false")
    registered = _expect(message.get("registeredMail", False), bool, "$.registeredMail", "true or false")
    for key in ("messageTypeId", "senderApplicationId", "originalMessageId", "expirationDate"):
        if key in message and not (isinstance(message[key], str) and message[key].strip()):
            raise _invalid(f"$.{key} must be a non-empty string")
    if "forTheAttentionOf" in message:
        attention = _expect(message["forTheAttentionOf"], dict, "$.forTheAttentionOf", "an object")
        for key, value in attention.items():
            _expect(value, str, f"$.forTheAttentionOf.{key}", "a string")

    organization = message.get("senderOrganizationId", client.organization_id)
    _expect(organization, str, "$.senderOrganizationId", "a string")
    if not SENDER_ORGANIZATION_PATTERN.fullmatch(organization):
        raise _invalid("$.senderOrganizationId must match [0-1][0-9]{9}")
    if organization != client.organization_id:
        raise ApiError(400, "INVALID_SENDER", "senderOrganizationId is not the organisation of this client")
    application = message.get("senderApplicationId", client.application_id)
    if application != client.application_id:
        raise ApiError(400, "INVALID_SENDER", "senderApplicationId is not the application of this client")
    if message_types is not None and "messageTypeId" in message:
        message_type = message_types.get(message["messageTypeId"])
        if message_type is None:
            raise _invalid(f"$.messageTypeId {message['messageTypeId']!r} is not a registered message type")
        if not message_type.allows(organization, application):
            raise ApiError(
                400,
                "INVALID_SENDER",
                f"this sender may not publish message type {message['messageTypeId']!r}",
            )

    if "bodyContent" in message:
        body_language, _ = _translated(message["bodyContent"], "$.bodyContent")
        if body_language != language:
            raise _invalid("$.bodyContent must be in the language of $.subject")
    elif body_main:
        raise _invalid("$.bodyMainContent is true but there is no $.bodyContent")

    for i, data in enumerate(
        _expect(message.get("businessDataList", []), list, "$.businessDataList", "an array")
    ):
        path = f"$.businessDataList[{i}]"
        _expect(data, dict, path, "an object")
        _expect(data.get("key"), str, f"{path}.key", "a string")
        for j, value in enumerate(_expect(data.get("values"), list, f"{path}.values", "an array")):
            _, text = _translated(value, f"{path}.values[{j}]")
            if len(text.encode()) > MAX_BUSINESS_VALUE_BYTES:
                raise _invalid(f"{path}.values[{j}] is longer than {MAX_BUSINESS_VALUE_BYTES} bytes")

    attachments = _expect(message.get("attachments", []), list, "$.attachments", "an array")
    if len(attachments) > len(UPLOAD_PARTS):
        raise _invalid(f"at most {len(UPLOAD_PARTS)} attachments")
    stored_attachments, referenced = [], set()
    main_contents = int(body_main)
    for i, attachment in enumerate(attachments):
        path = f"$.attachments[{i}]"
        _expect(attachment, dict, path, "an AttachmentToPublish object")
        unknown = set(attachment) - ATTACHMENT_KEYS
        if unknown:
            raise _invalid(f"{path} has unknown properties {sorted(unknown)}")
        part = _expect(attachment.get("httpPartName"), str, f"{path}.httpPartName", "a string")
        main = _expect(attachment.get("mainContent"), bool, f"{path}.mainContent", "true or false")
        _expect(attachment.get("attachmentSigned", False), bool, f"{path}.attachmentSigned", "true or false")
        if part in referenced:
            raise _invalid(f"{path}.httpPartName {part!r} is used twice")
        if part not in uploads:
            raise _invalid(f"{path}.httpPartName {part!r} names no uploaded part")
        referenced.add(part)
        upload = uploads[part]
        if "attachmentTitle" in attachment:
            title_language, _ = _translated(attachment["attachmentTitle"], f"{path}.attachmentTitle")
            if title_language != language:
                raise _invalid(f"{path}.attachmentTitle must be in the language of $.subject")
        digest = _digest_value(upload.content)
        if "digest" in attachment:
            given = _expect(attachment["digest"], dict, f"{path}.digest", "a Digest object")
            if given.get("digestMethod") != "sha_256":
                raise _invalid(f"{path}.digest.digestMethod must be sha_256")
            value = _expect(given.get("digestValue"), str, f"{path}.digest.digestValue", "a string")
            # Compared without padding, so that padded and unpadded base64url are both accepted.
            if value.rstrip("=") != digest:
                raise ApiError(400, "DIGEST_DO_NOT_MATCH", f"{path}.digest does not match part {part}")
        main_contents += main
        stored_attachments.append(
            {
                "httpPartName": part,
                "fileName": upload.filename,
                "mediaType": upload.content_type,
                "size": len(upload.content),
                "sha256": digest,
                "mainContent": main,
            }
        )
    unreferenced = set(uploads) - referenced
    if unreferenced:
        raise _invalid(f"uploaded part(s) {sorted(unreferenced)} are not listed in $.attachments")
    if main_contents != 1:
        raise _invalid(f"a message needs exactly one main content (body or attachment), has {main_contents}")

    return {
        "sender_organization_id": organization,
        "sender_application_id": application,
        "recipient_kind": kind,
        "recipient_id": recipient_id,
        "language": language,
        "subject": subject,
        "message_type_id": message.get("messageTypeId"),
        "registered_mail": registered,
        "attachments": stored_attachments,
    }


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "PAYLOAD_TOO_LARGE",
        f"the message is {size} bytes; this eBox accepts at most {limit} bytes per message",
    )


async def read_uploads(request: Request, max_bytes: int | None = None) -> tuple[str, dict[str, Upload]]:
    """The `messageToPublish` JSON and the uploaded files of a publishMessage request.

    `max_bytes` bounds the whole request: a larger Content-Length is answered 413 before the body is
    read, and so are uploads that add up to more."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _invalid("publishMessage takes multipart/form-data")
    length = request.headers.get("content-length", "")
    if max_bytes is not None and length.isdigit() and int(length) > max_bytes:
        raise _too_large(int(length), max_bytes)
    try:
        form = await request.form(max_files=len(UPLOAD_PARTS) + 1, max_fields=len(UPLOAD_PARTS) + 1)
    except Exception as exc:  # starlette's MultiPartException and parser errors alike
        raise _invalid(f"unreadable multipart body ({exc})") from None
    message_json: str | None = None
    uploads: dict[str, Upload] = {}
    names = [name for name, _ in form.multi_items()]
    for name in set(names):
        if names.count(name) > 1:
            raise _invalid(f"part {name!r} appears more than once")
    for name, value in form.multi_items():
        if name == "messageToPublish":
            message_json = (
                value if isinstance(value, str) else (await value.read()).decode("utf-8", "replace")
            )
            continue
        if name not in UPLOAD_PARTS:
            raise _invalid(f"unexpected part {name!r} (expected messageToPublish and upfile1..upfile6)")
        if not isinstance(value, UploadFile) or not value.filename:
            raise _invalid(f"part {name!r} has no filename")
        if len(value.filename) > MAX_FILENAME_LENGTH:
            raise _invalid(
                f"part {name!r}: filename is {len(value.filename)} characters (at most {MAX_FILENAME_LENGTH})"
            )
        content_type = (value.content_type or "").split(";")[0].strip()
        if content_type not in MEDIA_TYPES:
            raise _invalid(f"part {name!r}: Content-Type {content_type!r} is not an accepted media type")
        content = await value.read()
        if not content:
            raise _invalid(f"part {name!r} is empty")
        uploads[name] = Upload(value.filename, content_type, content)
    if message_json is None:
        raise _invalid("part 'messageToPublish' is required")
    total = len(message_json.encode()) + sum(len(u.content) for u in uploads.values())
    if max_bytes is not None and total > max_bytes:
        raise _too_large(total, max_bytes)
    return message_json, uploads


# -- the other operations ---------------------------------------------------------------------


def validate_status_request(body: Any) -> list[tuple[str, str, str]]:
    """(messageId, eboxType, eboxIdValue) of a searchMessageStatus body (MessagesStatusRequest)."""
    items = _expect(body, list, "body", "an array of {messageId, eboxId}")
    if len(items) > MAX_IDS_PER_SEARCH:
        raise _invalid(f"at most {MAX_IDS_PER_SEARCH} messages per search")
    wanted = []
    for i, item in enumerate(items):
        path = f"[{i}]"
        _expect(item, dict, path, "an object {messageId, eboxId}")
        message_id = _expect(item.get("messageId"), str, f"{path}.messageId", "a string")
        if not message_id.strip():
            raise _invalid(f"{path}.messageId is empty")
        ebox_id = _expect(item.get("eboxId"), dict, f"{path}.eboxId", "an EboxId object")
        kind = ebox_id.get("eboxType")
        if kind not in RECIPIENT_ID_PATTERNS:
            raise _invalid(f"{path}.eboxId.eboxType must be citizen or enterprise")
        value = _expect(ebox_id.get("eboxIdValue"), str, f"{path}.eboxId.eboxIdValue", "a string")
        if not RECIPIENT_ID_PATTERNS[kind].fullmatch(value):
            expected = "an 11-digit SSIN" if kind == "citizen" else "a 10-digit KBO number"
            raise _invalid(f"{path}.eboxId.eboxIdValue must be {expected}")
        wanted.append((message_id, kind, value))
    return wanted


def validate_search(body: Any, kind: str) -> list[str]:
    """The ids of a federation search body (EboxIdSameTypeList) for recipients of `kind`."""
    ebox_type, id_type = FEDERATION_KINDS[kind]
    body = _expect(body, dict, "body", "an EboxIdSameTypeList object")
    if body.get("eboxType") != ebox_type or body.get("eboxIdType") != id_type:
        raise _invalid(f"eboxType must be {ebox_type} and eboxIdType {id_type}")
    ids = _expect(body.get("eboxIdValueList"), list, "eboxIdValueList", "an array")
    if len(ids) > MAX_IDS_PER_SEARCH:
        raise _invalid(f"at most {MAX_IDS_PER_SEARCH} ids per search (got {len(ids)})")
    if not all(isinstance(i, str) for i in ids):
        raise _invalid("eboxIdValueList must hold strings")
    return ids
