"""The sandbox's ASGI application and `SandboxServer`, which serves it over real TLS.

It speaks the contract paths and shapes of the federal eBox (NOTES.md and the two published Swagger
files): the OAuth2 token endpoint with `private_key_jwt` (the assertion's header names the client's
registered certificate), the federation searches, and the Message Registry's publishMessage,
searchMessageStatus and referenceData/messageTypes, each under the same URL prefix as production.
Every error answer of the API is a `StatusMessage`, also for operations the sandbox does not
implement (400 NOT_IMPLEMENTED), unknown paths (404) and wrong methods (405).

Beyond the contract, `/_sandbox/...` lets a test or the demo register recipients and message types,
set the size limit, inspect what was published (with digests and Idempotency-Keys), mark messages
read, reset, and inject faults (faults.py). See docs/ebox-sandbox-openapi.yaml.

Programmatic use: `with SandboxServer() as sandbox: client = EboxClient(sandbox.config())`.
As a process: `python -m sandboxes.ebox --port 8443 --dir var/ebox-sandbox`, which writes ca.pem,
client_key.pem, client_cert.pem and connection.json (an AIRFLOW_CONN_EBOX_DEFAULT value) into the dir.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import jwt
import trustme
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from include.dijlepost.ebox.client import PREFERENCE_SCOPE, PUBLICATION_SCOPE, EboxConfig
from sandboxes.ebox.faults import ERROR_STATUSES, FaultLayer
from sandboxes.ebox.state import (
    DEFAULT_CLIENT_ID,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_SENDER_APPLICATION_ID,
    DEFAULT_SENDER_ORGANIZATION_ID,
    IssuedToken,
    MessageType,
    SandboxState,
)
from sandboxes.ebox.validation import (
    ADMIN_PREFIX,
    FEDERATION_KINDS,
    FEDERATION_PREFIX,
    INT32_MAX,
    MAX_ASSERTION_LIFETIME_SECONDS,
    MESSAGE_REGISTRY_PREFIX,
    TOKEN_PATH,
    ApiError,
    invalid,
    published_methods,
    read_uploads,
    validate_publication,
    validate_search,
    validate_status_request,
)

log = logging.getLogger("dijlepost.ebox.sandbox")
# How far an assertion's iat may lie in the future, or its exp in the past, by the sandbox's clock.
ASSERTION_CLOCK_LEEWAY_SECONDS = 5

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_SENDER_APPLICATION_ID",
    "DEFAULT_SENDER_ORGANIZATION_ID",
    "FEDERATION_KINDS",
    "FEDERATION_PREFIX",
    "MESSAGE_REGISTRY_PREFIX",
    "TOKEN_PATH",
    "SandboxServer",
    "create_app",
]

# -- the application --------------------------------------------------------------------------


class RecipientIn(BaseModel):
    kind: Literal["citizen", "enterprise"]
    id: str
    active: bool = True
    exclusively_ebox: bool = False
    no_digital_user: bool = False
    last_connection_date: str | None = None


class FaultsIn(BaseModel):
    error_rate: float = Field(0.0, ge=0, le=1)
    error_status: Literal[ERROR_STATUSES] = 503  # type: ignore[valid-type]
    retry_after_seconds: int | None = Field(None, ge=0)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    timeout_delay_seconds: float = Field(35.0, ge=0)
    fail_next: int = Field(0, ge=0)
    timeout_next: int = Field(0, ge=0)
    seed: int | None = None
    latency_ms: int = Field(0, ge=0, le=600_000)
    drop_rate: float = Field(0.0, ge=0, le=1)
    drop_next: int = Field(0, ge=0)
    invalid_token_next: int = Field(0, ge=0)
    no_digital_user_rate: float = Field(0.0, ge=0, le=1)
    no_digital_user_next: int = Field(0, ge=0)
    token_fail_next: int = Field(0, ge=0)
    token_error_rate: float = Field(0.0, ge=0, le=1)
    token_timeout_next: int = Field(0, ge=0)
    outage_seconds: float = Field(0.0, ge=0, le=86_400)
    html_200_next: int = Field(0, ge=0)
    empty_201_next: int = Field(0, ge=0)
    invalid_sender: bool = False
    forbidden: bool = False
    clock_skew_seconds: int = Field(0, ge=-86_400, le=86_400)


class ValidityPeriodIn(BaseModel):
    validityPeriodNumber: int = Field(ge=1, le=INT32_MAX)
    validityPeriodUnit: Literal["day", "month", "year"]


class MessageTypeIn(BaseModel):
    """A MessageType as the Swagger describes it."""

    messageTypeId: str = Field(min_length=1)
    messageTypeName: dict[Literal["nl", "fr", "de"], str] = Field(min_length=1)
    validityPeriod: ValidityPeriodIn
    senderOrganizationIds: list[str] = []
    senderApplicationIds: list[str] = []

    def to_message_type(self) -> MessageType:
        return MessageType(
            self.messageTypeId,
            dict(self.messageTypeName),
            self.validityPeriod.validityPeriodNumber,
            self.validityPeriod.validityPeriodUnit,
            tuple(self.senderOrganizationIds),
            tuple(self.senderApplicationIds),
        )


class LimitsIn(BaseModel):
    max_message_bytes: int | None = Field(None, ge=1)


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def certificate_thumbprint(certificate_pem: str | bytes) -> str:
    """`x5t#S256` of a PEM certificate: base64url, unpadded, of the SHA-256 of its DER form (RFC 7515)."""
    data = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    der = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode("ascii").rstrip("=")


_API_PREFIXES = (MESSAGE_REGISTRY_PREFIX, FEDERATION_PREFIX)


def create_app(state: SandboxState) -> FastAPI:
    """The sandbox's routes over `state`; `SandboxServer` serves them behind the FaultLayer."""
    app = FastAPI(
        title="dijlepost eBox sandbox",
        docs_url=f"{ADMIN_PREFIX}/docs",
        openapi_url=f"{ADMIN_PREFIX}/openapi.json",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        response = ApiError(
            exc.status_code, codes.get(exc.status_code, f"HTTP_{exc.status_code}"), str(exc.detail)
        ).response(request.url.path)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return invalid(f"{where}: {first.get('msg', 'invalid')}").response(request.url.path)

    def authorize(request: Request, scope: str) -> IssuedToken:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise ApiError(401, "UNAUTHORIZED", "a bearer token is required")
        issued = state.token(header.removeprefix("Bearer ").strip())
        if issued is None:
            raise ApiError(401, "UNAUTHORIZED", "the bearer token is unknown or expired")
        if scope not in issued.scopes:
            raise ApiError(403, "FORBIDDEN", f"the token lacks scope {scope}")
        return issued

    async def json_body(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise invalid("the body is not valid JSON") from None

    @app.post(TOKEN_PATH, tags=["contract"])
    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return _oauth_error(400, "invalid_request", "client_assertion_type must be jwt-bearer")
        assertion = form.get("client_assertion")
        if not isinstance(assertion, str):
            return _oauth_error(400, "invalid_request", "client_assertion is required")
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            return _oauth_error(401, "invalid_client", "client_assertion is not a JWT")
        client = state.client(issuer) if isinstance(issuer, str) else None
        if client is None or form.get("client_id", issuer) != issuer:
            return _oauth_error(401, "invalid_client", "unknown client")
        if client.certificate_thumbprint is not None and client.certificate_thumbprint not in (
            header.get("x5t#S256"),
            header.get("kid"),
        ):
            return _oauth_error(
                401,
                "invalid_client",
                "the client_assertion header does not name the registered certificate (x5t#S256 or kid)",
            )
        audience = str(request.url.replace(query=""))
        try:
            claims = jwt.decode(
                assertion,
                client.public_key_pem,
                algorithms=["RS256"],
                audience=audience,
                issuer=issuer,
                options={
                    "require": ["iss", "sub", "aud", "exp", "iat", "jti"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            return _oauth_error(401, "invalid_client", f"client_assertion rejected: {exc}")
        # The times, against the sandbox's own clock (which a fault may set behind the client's).
        now = time.time() - state.faults().clock_skew_seconds
        if (
            not isinstance(claims["iat"], (int, float))
            or claims["iat"] > now + ASSERTION_CLOCK_LEEWAY_SECONDS
        ):
            return _oauth_error(401, "invalid_client", "client_assertion rejected: iat is in the future")
        if (
            not isinstance(claims["exp"], (int, float))
            or claims["exp"] < now - ASSERTION_CLOCK_LEEWAY_SECONDS
        ):
            return _oauth_error(401, "invalid_client", "client_assertion rejected: exp has passed")
        if claims["sub"] != issuer:
            return _oauth_error(401, "invalid_client", "client_assertion sub must equal iss")
        if claims["exp"] - now > MAX_ASSERTION_LIFETIME_SECONDS:
            return _oauth_error(401, "invalid_client", "client_assertion lives too long")
        if not state.first_use_of_assertion(str(claims["jti"]), float(claims["exp"])):
            return _oauth_error(401, "invalid_client", "client_assertion was used before (jti)")
        # As RFC 6749 allows, grant what was both asked for and registered; the answer's `scope`
        # says which, and a call outside it answers 403.
        requested = frozenset(str(form.get("scope") or "").split()) or client.scopes
        granted = requested & client.scopes
        if not granted:
            return _oauth_error(
                400, "invalid_scope", "none of the requested scopes is granted to this client"
            )
        return JSONResponse(
            {
                "access_token": state.issue_token(client, granted),
                "token_type": "Bearer",
                "expires_in": state.token_lifetime_seconds,
                "scope": " ".join(sorted(granted)),
            }
        )

    async def federation_search(request: Request, kind: str) -> list[dict[str, Any]]:
        authorize(request, PREFERENCE_SCOPE)
        ebox_type, _ = FEDERATION_KINDS[kind]
        ids = validate_search(await json_body(request), kind)
        answer = []
        for found in state.active_among(kind, ids):
            item = {
                "eboxId": {"eboxType": ebox_type, "eboxIdValue": found["id"]},
                "exclusivelyEbox": found["exclusively_ebox"],
            }
            if found["last_connection_date"]:
                item["lastConnectionDate"] = found["last_connection_date"]
            answer.append(item)
        return answer

    @app.post(f"{FEDERATION_PREFIX}/eboxPreferences/search", tags=["contract"])
    async def ebox_preferences_search(request: Request) -> list[dict[str, Any]]:
        return await federation_search(request, "enterprise")

    @app.post(f"{FEDERATION_PREFIX}/citizenEboxConsents/search", tags=["contract"])
    async def citizen_consents_search(request: Request) -> list[dict[str, Any]]:
        return await federation_search(request, "citizen")

    @app.post(f"{MESSAGE_REGISTRY_PREFIX}/publishMessage", status_code=201, tags=["contract"])
    async def publish_message(request: Request) -> JSONResponse:
        issued = authorize(request, PUBLICATION_SCOPE)
        key = request.headers.get("idempotency-key")
        if key is not None:
            try:
                key = str(uuid.UUID(key.strip().strip('"')))
            except ValueError:
                raise invalid("the Idempotency-Key header must be a UUID") from None
        message_json, uploads = await read_uploads(request, state.max_message_bytes)
        record = validate_publication(message_json, uploads, issued.client, state.message_types())
        message_id = state.publish(record, key)
        if message_id is None:
            raise ApiError(409, "CONFLICT", "this Idempotency-Key was used before by this sender application")
        answer = {"messageId": message_id, "expirationDate": record["expiration_date"]}
        if record["code"] == "NO_DIGITAL_USER":
            answer.update(code="NO_DIGITAL_USER", message="the recipient never consulted their eBox")
        return JSONResponse(answer, status_code=201)

    @app.post(f"{MESSAGE_REGISTRY_PREFIX}/searchMessageStatus", status_code=201, tags=["contract"])
    async def search_message_status(request: Request) -> JSONResponse:
        issued = authorize(request, PUBLICATION_SCOPE)
        wanted = validate_status_request(await json_body(request))
        return JSONResponse(state.message_statuses(issued.client.application_id, wanted), status_code=201)

    def _page(request: Request) -> tuple[int, int]:
        values = []
        for name, default, top in (("page", 1, INT32_MAX), ("pageSize", 25, 100)):
            raw = request.query_params.get(name)
            try:
                value = default if raw is None else int(raw)
            except ValueError:
                raise invalid(f"{name} must be a whole number") from None
            if not 1 <= value <= top:  # the published bounds (page: int32)
                raise invalid(f"{name} must be within 1..{top}")
            values.append(value)
        return values[0], values[1]

    @app.get(f"{MESSAGE_REGISTRY_PREFIX}/referenceData/messageTypes", tags=["contract"])
    async def message_types(request: Request) -> JSONResponse:
        authorize(request, PUBLICATION_SCOPE)
        page, size = _page(request)
        types = sorted(state.message_types().values(), key=lambda t: t.message_type_id)
        if not types:
            raise ApiError(404, "NOT_FOUND", "no message types are registered")
        items = types[(page - 1) * size : page * size]
        return JSONResponse({"items": [t.as_json() for t in items], "totalItems": len(types)})

    @app.get(f"{MESSAGE_REGISTRY_PREFIX}/referenceData/messageTypes/{{messageTypeId}}", tags=["contract"])
    async def message_type(request: Request, messageTypeId: str) -> JSONResponse:
        authorize(request, PUBLICATION_SCOPE)
        found = state.message_types().get(messageTypeId)
        if found is None:
            raise ApiError(404, "NOT_FOUND", "messageTypeId not found")
        return JSONResponse(found.as_json())

    # -- /_sandbox: administration, not part of the contract ----------------------------------

    @app.get(f"{ADMIN_PREFIX}/health", tags=["sandbox"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(f"{ADMIN_PREFIX}/recipients", tags=["sandbox"])
    async def register_recipients(recipients: list[RecipientIn]) -> dict[str, int]:
        for recipient in recipients:
            try:
                state.register_recipient(
                    recipient.kind,
                    recipient.id,
                    active=recipient.active,
                    exclusively_ebox=recipient.exclusively_ebox,
                    no_digital_user=recipient.no_digital_user,
                    last_connection_date=recipient.last_connection_date,
                )
            except ValueError as exc:
                raise invalid(f"recipient {recipient.kind}: {exc}") from None
        return {"registered": len(recipients)}

    @app.get(f"{ADMIN_PREFIX}/recipients", tags=["sandbox"])
    async def list_recipients() -> list[dict[str, Any]]:
        return state.recipients()

    @app.put(f"{ADMIN_PREFIX}/messageTypes", tags=["sandbox"])
    async def replace_message_types(types: list[MessageTypeIn]) -> dict[str, int]:
        try:
            state.register_message_types([t.to_message_type() for t in types], replace=True)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        return {"registered": len(types)}

    @app.get(f"{ADMIN_PREFIX}/messageTypes", tags=["sandbox"])
    async def list_message_types() -> list[dict[str, Any]]:
        return [t.as_json() for t in state.message_types().values()]

    @app.put(f"{ADMIN_PREFIX}/limits", tags=["sandbox"])
    async def set_limits(limits: LimitsIn) -> dict[str, Any]:
        state.set_max_message_bytes(limits.max_message_bytes)
        return {"max_message_bytes": state.max_message_bytes}

    @app.get(f"{ADMIN_PREFIX}/limits", tags=["sandbox"])
    async def get_limits() -> dict[str, Any]:
        return {"max_message_bytes": state.max_message_bytes}

    @app.get(f"{ADMIN_PREFIX}/publications", tags=["sandbox"])
    async def list_publications(
        recipient_kind: str | None = None, recipient_id: str | None = None, idempotency_key: str | None = None
    ) -> list[dict[str, Any]]:
        return state.publications(recipient_kind, recipient_id, idempotency_key)

    @app.get(f"{ADMIN_PREFIX}/publications/{{message_id}}", tags=["sandbox"])
    async def get_publication(message_id: str) -> dict[str, Any]:
        record = state.publication(message_id)
        if record is None:
            raise ApiError(404, "NOT_FOUND", "no such messageId")
        return record

    @app.post(f"{ADMIN_PREFIX}/publications/{{message_id}}/read", tags=["sandbox"])
    async def mark_read(message_id: str) -> Response:
        if not state.mark_read(message_id):
            raise ApiError(404, "NOT_FOUND", "no such messageId")
        return Response(status_code=204)

    @app.put(f"{ADMIN_PREFIX}/faults", tags=["sandbox"])
    async def set_faults(faults: FaultsIn) -> dict[str, Any]:
        try:
            return dataclasses.asdict(state.set_faults(**faults.model_dump()))
        except ValueError as exc:
            raise invalid(str(exc)) from None

    @app.get(f"{ADMIN_PREFIX}/faults", tags=["sandbox"])
    async def get_faults() -> dict[str, Any]:
        return {**dataclasses.asdict(state.faults()), "stats": state.fault_injector.stats()}

    @app.post(f"{ADMIN_PREFIX}/reset", tags=["sandbox"])
    async def reset() -> Response:
        state.reset()
        return Response(status_code=204)

    # -- everything else: a StatusMessage, never the framework's own error body ----------------

    @app.api_route(
        "/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        include_in_schema=False,
    )
    async def not_served(request: Request, path: str) -> Response:
        """A method the published files (or the sandbox's own routes) do not give a path answers 405
        with `Allow`; a published operation the sandbox does not implement answers 400
        NOT_IMPLEMENTED (after the token check, as the real service would); anything else 404."""
        published = published_methods(request.url.path)
        allowed = sorted(
            {
                method
                for route in app.routes
                if route.endpoint is not not_served
                and getattr(route, "methods", None)
                and route.matches({"type": "http", "path": request.url.path, "method": "GET"})[0]
                is not Match.NONE
                for method in route.methods
            }
            | (published or set())
        )
        if published is not None and request.method in published:
            allowed = []  # a published operation the sandbox does not implement
        if allowed:
            raise StarletteHTTPException(
                405,
                f"{request.method} is not allowed here (allowed: {', '.join(allowed)})",
                headers={"Allow": ", ".join(allowed)},
            )
        if request.url.path.startswith(tuple(p + "/" for p in _API_PREFIXES)):
            authorize(
                request,
                PREFERENCE_SCOPE if request.url.path.startswith(FEDERATION_PREFIX) else PUBLICATION_SCOPE,
            )
            raise ApiError(
                400,
                "NOT_IMPLEMENTED",
                f"the sandbox does not implement {request.method} "
                f"{request.url.path.split('/v', 1)[-1].split('/', 1)[-1]}",
            )
        raise StarletteHTTPException(404, f"no such path: {request.url.path}")

    return app


# -- running it -------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def _client_certificate(key: rsa.RSAPrivateKey) -> bytes:
    """A self-signed certificate for the client key, its subject naming the sender's KBO number and
    application as the eBox's certificates do (one per environment)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "BE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"KBO {DEFAULT_SENDER_ORGANIZATION_ID}"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{DEFAULT_SENDER_APPLICATION_ID} (eBox sandbox)"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


class SandboxServer:
    """The sandbox on 127.0.0.1 over real TLS, in a background thread.

    `directory` keeps the CA, the server certificate, the client key and certificate and
    connection.json; reusing a directory reuses its CA and client credentials, so trust and
    credentials survive a restart. Without one, a temporary directory is used and removed on stop().
    `state_path` (a SQLite file) makes publications and Idempotency-Keys survive a restart too.
    `max_message_bytes` bounds a publishMessage request (413 above it; None: no limit)."""

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_host: str | None = None,
        state_path: str | Path | None = None,
        token_lifetime_seconds: int = 600,
        max_message_bytes: int | Literal["default"] | None = "default",
    ):
        self._temporary = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="ebox-sandbox-"))
            if directory is None
            else Path(directory).absolute()
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host, self._port = host, port
        self.public_host = public_host or ("127.0.0.1" if host in ("0.0.0.0", "") else host)
        limits = {} if max_message_bytes == "default" else {"max_message_bytes": max_message_bytes}
        self.state = SandboxState(state_path, token_lifetime_seconds=token_lifetime_seconds, **limits)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def client_key_path(self) -> Path:
        return self.directory / "client_key.pem"

    @property
    def client_certificate_path(self) -> Path:
        return self.directory / "client_cert.pem"

    @property
    def client_certificate_pem(self) -> str:
        return self.client_certificate_path.read_text()

    @property
    def connection_path(self) -> Path:
        return self.directory / "connection.json"

    @property
    def client_private_key_pem(self) -> str:
        return self.client_key_path.read_text()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        host = f"[{self.public_host}]" if ":" in self.public_host else self.public_host
        return f"https://{host}:{self._port}"

    def _prepare_credentials(self) -> tuple[Path, Path]:
        ca_key_path = self.directory / "ca_key.pem"
        if self.ca_path.exists() and ca_key_path.exists():
            ca = trustme.CA.from_pem(self.ca_path.read_bytes(), ca_key_path.read_bytes())
        else:
            ca = trustme.CA(organization_name="dijlepost eBox sandbox")
            self.ca_path.write_bytes(ca.cert_pem.bytes())
            _write_private(ca_key_path, ca.private_key_pem.bytes())
        identities = dict.fromkeys(["localhost", "127.0.0.1", "::1", self.public_host])
        leaf = ca.issue_cert(*identities)
        cert_path, key_path = self.directory / "server.pem", self.directory / "server_key.pem"
        cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        _write_private(key_path, leaf.private_key_pem.bytes())

        if not self.client_key_path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write_private(
                self.client_key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        private_key = serialization.load_pem_private_key(self.client_key_path.read_bytes(), password=None)
        public_pem = (
            private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        if not self.client_certificate_path.exists():
            self.client_certificate_path.write_bytes(_client_certificate(private_key))
        self.state.register_client(
            DEFAULT_CLIENT_ID,
            public_pem,
            DEFAULT_SENDER_ORGANIZATION_ID,
            DEFAULT_SENDER_APPLICATION_ID,
            certificate_thumbprint=certificate_thumbprint(self.client_certificate_pem),
        )
        return cert_path, key_path

    def start(self) -> SandboxServer:
        if self._server is not None:
            return self
        cert_path, key_path = self._prepare_credentials()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # Bound here rather than by uvicorn, so that port 0 gives a free port we know before serving.
        sock = self._socket = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(128)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            FaultLayer(create_app(self.state), self.state),
            ssl_certfile=str(cert_path),
            ssl_keyfile=str(key_path),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="ebox-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                self._server = None
                sock.close()
                raise RuntimeError("the eBox sandbox did not start")
            time.sleep(0.01)
        self.connection_path.touch(mode=0o600, exist_ok=True)
        self.connection_path.write_text(json.dumps(self.airflow_connection(), indent=2) + "\n")
        log.info("eBox sandbox listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self.state.close()
        if self._temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def message_registry_url(self) -> str:
        return f"{self.base_url}{MESSAGE_REGISTRY_PREFIX}/"

    @property
    def federation_url(self) -> str:
        return f"{self.base_url}{FEDERATION_PREFIX}/"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}{TOKEN_PATH}"

    def config(self, **overrides: Any) -> EboxConfig:
        """An EboxConfig for this sandbox; keyword arguments replace fields."""
        fields: dict[str, Any] = {
            "message_registry_url": self.message_registry_url,
            "federation_url": self.federation_url,
            "token_url": self.token_url,
            "client_id": DEFAULT_CLIENT_ID,
            "private_key_pem": self.client_private_key_pem,
            "certificate_pem": self.client_certificate_pem,
            "sender_organization_id": DEFAULT_SENDER_ORGANIZATION_ID,
            "sender_application_id": DEFAULT_SENDER_APPLICATION_ID,
            "ca_bundle": str(self.ca_path),
        }
        fields.update(overrides)
        return EboxConfig(**fields)

    def airflow_connection(self) -> dict[str, Any]:
        """The JSON form of an Airflow Connection (e.g. AIRFLOW_CONN_EBOX_DEFAULT) for this sandbox."""
        return {
            "conn_type": "ebox",
            "host": self.message_registry_url,
            "login": DEFAULT_CLIENT_ID,
            "password": self.client_private_key_pem,
            "extra": {
                "federation_url": self.federation_url,
                "token_url": self.token_url,
                "certificate": self.client_certificate_pem,
                "sender_organization_id": DEFAULT_SENDER_ORGANIZATION_ID,
                "sender_application_id": DEFAULT_SENDER_APPLICATION_ID,
                "ca_bundle": str(self.ca_path),
            },
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; /_sandbox needs no token, so "
        "keep it off shared networks)",
    )
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument(
        "--dir",
        default="var/ebox-sandbox",
        type=Path,
        help="where ca.pem, client_key.pem, connection.json and state.sqlite live",
    )
    parser.add_argument("--public-host", help="host name clients use (added to the certificate)")
    parser.add_argument("--state", type=Path, help="SQLite state file (default DIR/state.sqlite)")
    parser.add_argument("--token-lifetime", type=int, default=600, help="access token lifetime, seconds")
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="largest publishMessage request accepted (413 above it; 0: no limit)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = SandboxServer(
        args.dir,
        host=args.host,
        port=args.port,
        public_host=args.public_host,
        state_path=args.state or args.dir / "state.sqlite",
        token_lifetime_seconds=args.token_lifetime,
        max_message_bytes=args.max_message_bytes or None,
    )
    with server:
        print(
            f"eBox sandbox at {server.base_url}; CA {server.ca_path}; "
            f"Airflow connection in {server.connection_path}",
            flush=True,
        )
        stop.wait()


if __name__ == "__main__":
    main()
