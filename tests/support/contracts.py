"""The published eBox contracts (the Swagger files of `shared/contracts/ebox/`) and a checker of
HTTP traffic against them.

The files are not copied into the repository. Looked up, in order: `$DIJLEPOST_EBOX_CONTRACTS`, the
`shared/` folder beside the checkout (as on the development machines and in CI), `/work/shared`.
Tests that need them skip with the path they looked at when none is present.

Swagger 2.0 is not OpenAPI 3 (no `requestBody`; `in: body` and `in: formData` parameters; `type:
file`), so the OpenAPI 3 request validators do not take it. Its schema objects, however, are
JSON Schema draft 4 with a few extra keywords that validators ignore (`example`, `discriminator`),
so the operations are matched here and the bodies are validated with `jsonschema`'s Draft4Validator,
resolving `#/definitions/...` through a `referencing` registry holding the whole document.

Requests are validated *strictly*: an object schema that lists properties accepts no others (the
Swagger leaves `additionalProperties` open, but a property the eBox does not know is a bug of ours),
and a JSON form field must declare its charset. Answers are validated as the Swagger says (open
objects), for documented status codes; an undocumented error status (409, 413, 429, 5xx) must still
carry a StatusMessage when it has a JSON body.

`EboxClient` instances get httpx event hooks (fixture `swagger_checked`), so every request the client
sends in a test is checked, and every answer that comes from the real sandbox over the network (not
from a MockTransport a unit test wrote by hand).
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_CANDIDATES = [
    Path(os.environ["DIJLEPOST_EBOX_CONTRACTS"]) if os.environ.get("DIJLEPOST_EBOX_CONTRACTS") else None,
    PROJECT_ROOT.parent / "shared" / "contracts" / "ebox",
    Path("/work/shared/contracts/ebox"),
]


def ebox_contracts_dir() -> Path:
    for candidate in _CANDIDATES:
        if candidate is not None and (candidate / "message-registry-2.1.yaml").exists():
            return candidate
    return _CANDIDATES[1]


EBOX_CONTRACTS = ebox_contracts_dir()


def published_definitions(name: str) -> dict:
    """The `definitions` of one published Swagger file; the test skips, naming the path, without it."""
    path = EBOX_CONTRACTS / name
    if not path.exists():
        pytest.skip(f"{path} is not available here")
    return yaml.safe_load(path.read_text())["definitions"]


def multipart_parts(request: httpx.Request) -> dict[str, tuple[str | None, str, bytes]]:
    """name -> (filename, content type, bytes) of a multipart/form-data request (a part without a
    Content-Type counts as text/plain)."""
    raw = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.read()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
    return parts


def multipart_charsets(request: httpx.Request) -> dict[str, str | None]:
    """name -> the charset its part declares (None: none declared) of a multipart/form-data request."""
    raw = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.read()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    return {
        part.get_param("name", header="content-disposition"): part.get_param("charset")
        if part.get("content-type")
        else None
        for part in message.iter_parts()
    }


CONTRACTS = EBOX_CONTRACTS
DOCUMENTS = {  # URL path prefix of the API -> its Swagger file
    "/REST/ebox/enterprise/messageRegistry/v2": "message-registry-2.1.yaml",
    "/REST/ebox/enterprise/federation/v1": "federation-1.3.yaml",
}
# Calls the client makes that no published file describes (NOTES.md: shape unverified, or OAuth2).
UNDESCRIBED = {"/REST/ebox/enterprise/federation/v1/citizenEboxConsents/search", "/REST/oauth/v5/token"}
# The Swagger says the messageToPublish form field is "JSON-description ... See MessageToPublish".
FORM_JSON_SCHEMAS = {"messageToPublish": "MessageToPublish"}


class ContractViolation(AssertionError):
    pass


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


class SwaggerApi:
    """One Swagger 2.0 document: its operations and a validator per definition."""

    def __init__(self, prefix: str, document: dict):
        if document.get("swagger") != "2.0":
            raise ValueError("not a Swagger 2.0 document")
        self.prefix, self.document = prefix, document
        self._registries = {}
        for strict in (False, True):
            contents = _strict(copy.deepcopy(document)) if strict else document
            resource = Resource.from_contents(contents, default_specification=DRAFT4)
            self._registries[strict] = Registry().with_resource(self._uri(strict), resource)

    def _uri(self, strict: bool) -> str:
        return f"urn:swagger:{self.prefix.strip('/').replace('/', ':')}:{'strict' if strict else 'open'}"

    def operation(self, path: str, method: str) -> dict | None:
        relative = path[len(self.prefix) :]
        item = self.document["paths"].get(relative)
        if item is None:  # a templated path such as /referenceData/messageTypes/{messageTypeId}
            for template, candidate in self.document["paths"].items():
                pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
                if "{" in template and re.fullmatch(pattern, relative):
                    item = candidate
                    break
        return item.get(method.lower()) if item else None

    def validate(self, schema: dict, value: Any, where: str, strict: bool) -> None:
        if "$ref" in schema:
            schema = {"$ref": self._uri(strict) + schema["$ref"]}
        validator = Draft4Validator(
            schema, registry=self._registries[strict], format_checker=Draft4Validator.FORMAT_CHECKER
        )
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            at = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
            raise ContractViolation(f"{where}: {at}: {e.message}")

    def definition(self, name: str) -> dict:
        return {"$ref": f"#/definitions/{name}"}


class SwaggerContract:
    def __init__(self, directory: Path = CONTRACTS):
        self.apis = [
            SwaggerApi(prefix, yaml.safe_load((directory / name).read_text()))
            for prefix, name in DOCUMENTS.items()
        ]
        self.checked: Counter = Counter()  # "POST /publishMessage request" -> times validated

    @classmethod
    def available(cls) -> bool:
        return all((CONTRACTS / name).exists() for name in DOCUMENTS.values())

    def _find(self, request: httpx.Request) -> tuple[SwaggerApi, dict] | None:
        path = request.url.path
        for api in self.apis:
            marker = path.find(api.prefix + "/")
            if marker >= 0:
                path = path[marker:]
                operation = api.operation(path, request.method)
                if operation is not None:
                    return api, operation
        if any(path.endswith(u) for u in UNDESCRIBED):
            return None
        raise ContractViolation(f"{request.method} {path} is not an operation of the published Swagger files")

    # -- requests ------------------------------------------------------------------------------

    def check_request(self, request: httpx.Request) -> None:
        found = self._find(request)
        if found is None:
            return
        api, operation = found
        where = f"{request.method} {request.url.path} request"
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        consumes = operation.get("consumes") or api.document.get("consumes") or []
        if consumes and content_type not in consumes:
            raise ContractViolation(f"{where}: Content-Type {content_type!r} is not one of {consumes}")
        params = operation.get("parameters", [])
        for p in (p for p in params if p.get("in") == "header" and p.get("required")):
            if p["name"] not in request.headers:
                raise ContractViolation(f"{where}: header {p['name']} is required")
        body = [p for p in params if p.get("in") == "body"]
        if body:
            try:
                value = json.loads(request.read())
            except ValueError:
                raise ContractViolation(f"{where}: the body is not JSON") from None
            api.validate(body[0]["schema"], value, where, strict=True)
        for p in (p for p in params if p.get("in") == "query"):
            raw = request.url.params.get(p["name"])
            if raw is None:
                if p.get("required"):
                    raise ContractViolation(f"{where}: query parameter {p['name']} is required")
                continue
            schema = {k: p[k] for k in ("type", "minimum", "maximum", "enum") if k in p}
            try:
                value = {
                    "integer": int,
                    "number": float,
                    "boolean": lambda v: {"true": True, "false": False}[v],
                }.get(p.get("type"), str)(raw)
            except (ValueError, KeyError):
                raise ContractViolation(
                    f"{where}: query parameter {p['name']}={raw!r} is not a {p.get('type')}"
                ) from None
            api.validate(schema, value, f"{where} query {p['name']}", strict=True)
        form = {p["name"]: p for p in params if p.get("in") == "formData"}
        if form:
            self._check_form(api, form, request, where)
        self.checked[f"{request.method} {operation.get('operationId')} request"] += 1

    def _check_form(self, api: SwaggerApi, form: dict, request: httpx.Request, where: str) -> None:
        parts = multipart_parts(request)
        unknown = set(parts) - set(form)
        if unknown:
            raise ContractViolation(f"{where}: form parts {sorted(unknown)} are not parameters")
        for name, param in form.items():
            if name not in parts:
                if param.get("required"):
                    raise ContractViolation(f"{where}: form part {name} is required")
                continue
            filename, _, content = parts[name]
            if param.get("type") == "file":
                if not filename or not content:
                    raise ContractViolation(f"{where}: form part {name} must be a file with a name")
                continue
            if filename:
                raise ContractViolation(f"{where}: form part {name} must be a plain field, not a file")
            if name in FORM_JSON_SCHEMAS:
                charset = multipart_charsets(request).get(name)
                if not charset:
                    raise ContractViolation(f"{where}: form part {name} declares no charset")
                text = content.decode(charset)
                try:
                    value = json.loads(text)
                except ValueError:
                    raise ContractViolation(f"{where}: form part {name} is not JSON") from None
                api.validate(
                    api.definition(FORM_JSON_SCHEMAS[name]), value, f"{where} part {name}", strict=True
                )
            else:
                text = content.decode("utf-8")
                api.validate({"type": param["type"]}, text, f"{where} part {name}", strict=True)

    # -- answers -------------------------------------------------------------------------------

    def check_response(self, response: httpx.Response) -> None:
        request = response.request
        found = self._find(request)
        if found is None:
            return
        api, operation = found
        where = f"{request.method} {request.url.path} answer {response.status_code}"
        if response.headers.get("X-Sandbox-Fault"):
            # A gateway's answer the sandbox gives in the eBox's place on purpose (HTML 200, 201 {}).
            self.checked[
                f"{request.method} {operation.get('operationId')} injected {response.status_code}"
            ] += 1
            return
        response.read()
        documented = operation.get("responses", {})
        spec = documented.get(response.status_code) or documented.get(str(response.status_code))
        is_json = response.headers.get("content-type", "").startswith("application/json")
        if spec is None:
            if response.status_code < 400:
                raise ContractViolation(f"{where}: status {response.status_code} is not documented")
            spec = {"schema": api.definition("StatusMessage")} if is_json else {}
        if "schema" in spec:
            if not is_json:
                raise ContractViolation(f"{where}: expected a JSON body")
            api.validate(spec["schema"], response.json(), where, strict=False)
        self.checked[f"{request.method} {operation.get('operationId')} answer {response.status_code}"] += 1


_CONTRACT: SwaggerContract | None = None


def contract() -> SwaggerContract | None:
    global _CONTRACT
    if _CONTRACT is None and SwaggerContract.available():
        _CONTRACT = SwaggerContract()
    return _CONTRACT


@pytest.fixture
def swagger_checked(monkeypatch):
    """Every EboxClient built during the test has its traffic checked against the Swagger files
    (when ../shared/contracts/ebox is present); yields the SwaggerContract, or None."""
    from include.dijlepost.ebox import client as client_module

    checker = contract()
    if checker is None:
        yield None
        return
    original_init = client_module.EboxClient.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        http = self._http
        over_network = isinstance(getattr(http, "_transport", None), httpx.HTTPTransport)
        http.event_hooks["request"].append(checker.check_request)
        if over_network:  # a MockTransport's answers are the unit test's own words
            http.event_hooks["response"].append(checker.check_response)

    monkeypatch.setattr(client_module.EboxClient, "__init__", init)
    yield checker
