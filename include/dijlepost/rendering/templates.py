"""Loading and checking the letter templates in include/templates/.

One YAML file per letter type (`invoice.yaml`, ...) holds the payload fields the letter needs and, per
language, its document name, subject, detail rows and body paragraphs with `{placeholders}`;
`common.yaml` holds the sender, the departments and the fixed words of the layout. Everything is
checked when the renderer starts, so a typo in a template stops the renderer with a `TemplateError`
naming the file and the field, instead of quarantining every letter of that type one by one.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from stdnum import iban as stdnum_iban
from stdnum.be import iban as stdnum_be_iban
from stdnum.exceptions import InvalidComponent, ValidationError

from ..waves import ALL_LETTER_TYPES, LANGUAGES
from .errors import TemplateError
from .fields import FIELD_KINDS, NARROW_NBSP
from .layout import Box, Envelope

COMMON_FILE = "common.yaml"

# Placeholders every template may use without declaring them.
BUILTIN_PLACEHOLDERS = ("recipient_name", "letter_id", "letter_date")

# A payment template prints the payment block and the EPC QR code from these payload fields.
PAYMENT_FIELDS = {"amount_due": "amount", "due_date": "date", "ogm": "ogm"}

LABEL_KEYS = (
    "date",
    "reference",
    "contact",
    "registered",
    "salutation",
    "closing",
    "payment_title",
    "amount_due",
    "due_date",
    "beneficiary",
    "account",
    "bic",
    "ogm",
    "qr_caption",
    "page",
    "enterprise_number",
    "line_description",
    "line_quantity",
    "line_unit_price",
    "line_vat",
    "line_amount",
    "lines_total",
    "lines_vat",
)

_SPACES_RE = re.compile(r"[ \t\r\n]+")
_FRENCH_PUNCTUATION_RE = re.compile(r" ([?!:;»])")
_TEMPLATE_KEYS = {"department", "payment", "fields", "sums", *LANGUAGES}
_LANGUAGE_KEYS = {"document_name", "subject", "details", "body"}


@dataclass(frozen=True)
class Paragraph:
    text: str
    bullet: bool = False  # written with "- " in front in the template


@dataclass(frozen=True)
class LanguageText:
    document_name: str
    subject: str
    details: tuple[tuple[str, str], ...]  # (label, value template) rows
    body: tuple[Paragraph, ...]


@dataclass(frozen=True)
class FieldSpec:
    kind: str
    choices: Mapping[str, Mapping[str, str]] | None = None  # choice: code -> language -> wording


@dataclass(frozen=True)
class LetterTemplate:
    letter_type: str
    department: str
    payment: bool
    fields: Mapping[str, FieldSpec]  # payload field -> kind, in file order
    texts: Mapping[str, LanguageText]  # language -> text
    sums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # total -> its amount parts


@dataclass(frozen=True)
class Department:
    names: Mapping[str, str]
    email: str
    phone: str
    signature: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Sender:
    names: Mapping[str, str]
    street: str
    postal_code: str
    city: str
    website: str
    enterprise_number: str
    account_name: str
    iban: IBAN
    bic: str
    demo_account: bool = False  # payment_account.demo: a made-up account, see _sender
    bic_from_iban: str = ""  # the BIC of the IBAN's bank (python-stdnum), "" if unknown


@dataclass(frozen=True)
class TemplateSet:
    sender: Sender
    envelope: Envelope
    departments: Mapping[str, Department]
    labels: Mapping[str, Mapping[str, str]]
    templates: Mapping[str, LetterTemplate]


def load_templates(templates_dir: Path) -> TemplateSet:
    """Read and check common.yaml and one template per letter type declared in waves.py."""
    common = _read_yaml(templates_dir / COMMON_FILE, "common")
    sender = _sender(_mapping(common, "sender", "common"))
    envelope = _envelope(_mapping(common, "envelope", "common"))
    departments = _departments(_mapping(common, "departments", "common"))
    labels = _labels(_mapping(common, "labels", "common"))
    templates = {}
    for letter_type, department in ALL_LETTER_TYPES.items():
        path = templates_dir / f"{letter_type}.yaml"
        if not path.is_file():
            raise TemplateError(letter_type, "(file)", f"{path.name} is missing from {templates_dir}")
        template = _template(letter_type, _read_yaml(path, letter_type))
        if template.department != department:
            raise TemplateError(
                letter_type,
                "department",
                f"is {template.department!r} but waves.py puts {letter_type} in {department!r}",
            )
        if department not in departments:
            raise TemplateError("common", f"departments.{department}", "is missing")
        templates[letter_type] = template
    return TemplateSet(sender, envelope, departments, labels, templates)


def placeholders(template: str, where: str, text: str) -> set[str]:
    """The placeholder names in `text`; only plain `{name}` is allowed (`{{` for a literal brace)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(
            template, where, f"unbalanced braces ({exc}); write {{{{ for a literal brace"
        ) from None
    names = set()
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise TemplateError(template, where, f"placeholder {{{name}}} is not a field name")
        if spec or conversion:
            raise TemplateError(
                template, name, f"placeholder in {where} may not carry a format (:... or !...)"
            )
        names.add(name)
    return names


def _read_yaml(path: Path, template: str) -> Mapping[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(template, "(file)", f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise TemplateError(template, "(file)", f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise TemplateError(template, "(file)", f"{path.name} must be a mapping of keys to values")
    return data


def _mapping(data: Mapping[str, Any], key: str, template: str, where: str | None = None) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise TemplateError(template, where or key, "is missing or not a mapping")
    return value


def _text(data: Mapping[str, Any], key: str, template: str, where: str | None = None) -> str:
    value = data.get(key)
    # YAML reads a bare 2800 as a number; the writer meant the text.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise TemplateError(template, where or key, "is missing or not a text")
    return value.strip()


def _per_language(data: Mapping[str, Any], key: str, template: str) -> dict[str, str]:
    texts = _mapping(data, key, template)
    return {lang: _text(texts, lang, template, f"{key}.{lang}") for lang in LANGUAGES}


def _sender(data: Mapping[str, Any]) -> Sender:
    """The sender; its payment account's IBAN passes python-stdnum's full check (check digits, the
    national check digits and, for a Belgian IBAN, a bank code the National Bank has assigned). Only an
    account marked `demo: true` may fail the bank-code part: a made-up account for demonstrations,
    never a production configuration."""
    account = _mapping(data, "payment_account", "common", "sender.payment_account")
    where = "sender.payment_account.iban"
    demo = account.get("demo", False)
    if not isinstance(demo, bool):
        raise TemplateError("common", "sender.payment_account.demo", "must be true or false")
    value = _text(account, "iban", "common", where)
    try:
        iban = IBAN(value)
        stdnum_iban.validate(value)
    except SchwiftyException as exc:
        raise TemplateError("common", where, f"is not a valid IBAN ({exc})") from None
    except InvalidComponent:
        if not demo:
            raise TemplateError(
                "common",
                where,
                "is not the account of an assigned bank (python-stdnum: the bank code is unknown); "
                "only an account marked demo: true may be made up",
            ) from None
    except ValidationError as exc:
        raise TemplateError("common", where, f"is not a valid IBAN ({exc})") from None
    bic = account.get("bic") or ""
    if not isinstance(bic, str) or len(bic.strip()) not in (0, 8, 11):
        raise TemplateError(
            "common", "sender.payment_account.bic", "must be empty or a BIC of 8 or 11 characters"
        )
    return Sender(
        names=_per_language(data, "name", "common"),
        street=_text(data, "street", "common", "sender.street"),
        postal_code=_text(data, "postal_code", "common", "sender.postal_code"),
        city=_text(data, "city", "common", "sender.city"),
        website=_text(data, "website", "common", "sender.website"),
        enterprise_number=_text(data, "enterprise_number", "common", "sender.enterprise_number"),
        account_name=_text(account, "name", "common", "sender.payment_account.name"),
        iban=iban,
        bic=bic.strip(),
        demo_account=demo,
        bic_from_iban=_bic_of(iban.compact),
    )


def _bic_of(iban: str) -> str:
    """The BIC of a Belgian IBAN's bank from python-stdnum's list of Belgian bank codes ("" if none)."""
    if not iban.startswith("BE"):
        return ""
    try:
        return stdnum_be_iban.to_bic(iban) or ""
    except ValidationError:
        return ""


def _envelope(data: Mapping[str, Any]) -> Envelope:
    """The window envelope (see layout.Envelope); refused unless it leaves bpost's free zones."""

    def number(entry: Mapping[str, Any], key: str, where: str) -> float:
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise TemplateError("common", f"{where}.{key}", "must be a measure in mm")
        return float(value)

    window = _mapping(data, "window", "common", "envelope.window")
    size = _mapping(data, "size", "common", "envelope.size")
    folds = data.get("folds")
    if (
        not isinstance(folds, list)
        or not folds
        or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in folds)
    ):
        raise TemplateError("common", "envelope.folds", "must list the fold lines of the sheet in mm")
    envelope = Envelope(
        name=_text(data, "name", "common", "envelope.name"),
        width=number(size, "width", "envelope.size"),
        height=number(size, "height", "envelope.size"),
        window=Box(
            number(window, "left", "envelope.window"),
            number(window, "top", "envelope.window"),
            number(window, "width", "envelope.window"),
            number(window, "height", "envelope.window"),
        ),
        folds=tuple(sorted(float(f) for f in folds)),
    )
    problems = envelope.bpost_problems()
    if problems:
        raise TemplateError("common", "envelope", "; ".join(problems))
    return envelope


def _departments(data: Mapping[str, Any]) -> dict[str, Department]:
    departments = {}
    for name, entry in data.items():
        where = f"departments.{name}"
        if not isinstance(entry, Mapping):
            raise TemplateError("common", where, "is not a mapping")
        signature = _mapping(entry, "signature", "common", f"{where}.signature")
        lines = {}
        for lang in LANGUAGES:
            value = signature.get(lang)
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                raise TemplateError("common", f"{where}.signature.{lang}", "must be a list of lines")
            lines[lang] = tuple(value)
        departments[name] = Department(
            names={
                lang: _text(
                    _mapping(entry, "name", "common", f"{where}.name"), lang, "common", f"{where}.name.{lang}"
                )
                for lang in LANGUAGES
            },
            email=_text(entry, "email", "common", f"{where}.email"),
            phone=_text(entry, "phone", "common", f"{where}.phone"),
            signature=lines,
        )
    return departments


def _labels(data: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    labels = {}
    for lang in LANGUAGES:
        entry = _mapping(data, lang, "common", f"labels.{lang}")
        labels[lang] = {
            key: _spaced(lang, _text(entry, key, "common", f"labels.{lang}.{key}")) for key in LABEL_KEYS
        }
    return labels


def _template(letter_type: str, data: Mapping[str, Any]) -> LetterTemplate:
    unknown = set(data) - _TEMPLATE_KEYS
    if unknown:
        raise TemplateError(
            letter_type, sorted(unknown)[0], f"unknown key (expected {sorted(_TEMPLATE_KEYS)})"
        )
    payment = data.get("payment", False)
    if not isinstance(payment, bool):
        raise TemplateError(letter_type, "payment", "must be true or false")

    raw_fields = _mapping(data, "fields", letter_type)
    fields = {}
    for name, spec in raw_fields.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise TemplateError(letter_type, str(name), "a field name is letters, digits and _ only")
        if name in BUILTIN_PLACEHOLDERS:
            raise TemplateError(letter_type, name, "is filled in by the renderer; do not declare it")
        fields[name] = _field_spec(letter_type, name, spec)
    if payment:
        for name, kind in PAYMENT_FIELDS.items():
            if name not in fields or fields[name].kind != kind:
                raise TemplateError(letter_type, name, f"a payment letter must declare {name}: {kind}")
    line_fields = [name for name, spec in fields.items() if spec.kind == "lines"]
    if len(line_fields) > 1:
        raise TemplateError(letter_type, line_fields[1], "a letter has at most one field of kind lines")
    if line_fields and not payment:
        raise TemplateError(
            letter_type,
            line_fields[0],
            "itemised lines add up to amount_due: only a payment letter can have them",
        )

    # A lines field is printed as a table, never through a placeholder.
    allowed = {name for name, spec in fields.items() if spec.kind != "lines"} | set(BUILTIN_PLACEHOLDERS)
    texts = {}
    for lang in LANGUAGES:
        texts[lang] = _language_text(letter_type, lang, _mapping(data, lang, letter_type), allowed)
    return LetterTemplate(
        letter_type,
        _text(data, "department", letter_type),
        payment,
        fields,
        texts,
        _sums(letter_type, data.get("sums"), fields),
    )


def _sums(letter_type: str, data: Any, fields: Mapping[str, FieldSpec]) -> dict[str, tuple[str, ...]]:
    """`sums: {amount_due: [original_amount, reminder_costs]}`: amounts the letter states as a total
    and its parts, which must add up (all amount fields)."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise TemplateError(letter_type, "sums", "must map a total to the list of its parts")
    sums = {}
    for total, parts in data.items():
        if not isinstance(parts, list) or len(parts) < 2:
            raise TemplateError(letter_type, f"sums.{total}", "must list at least two parts")
        for name in (total, *parts):
            if name not in fields or fields[name].kind != "amount":
                raise TemplateError(letter_type, f"sums.{total}", f"{name!r} is not an amount field")
        sums[total] = tuple(parts)
    return sums


def _field_spec(letter_type: str, name: str, spec: Any) -> FieldSpec:
    """`name: kind`, or for a choice `name: {kind: choice, choices: {code: {nl: ..., fr: ..., de: ...}}}`."""
    if isinstance(spec, Mapping):
        kind = spec.get("kind")
        if kind != "choice":
            raise TemplateError(letter_type, name, "only a choice field is written as a mapping")
        raw_choices = _mapping(spec, "choices", letter_type, name)
        if not raw_choices:
            raise TemplateError(letter_type, name, "a choice field needs at least one choice")
        choices = {}
        for code, wording in raw_choices.items():
            if not isinstance(wording, Mapping):
                raise TemplateError(letter_type, name, f"choice {code!r} must give the wording per language")
            choices[str(code)] = {
                lang: _spaced(lang, _text(wording, lang, letter_type, f"{name}.{code}.{lang}"))
                for lang in LANGUAGES
            }
        return FieldSpec("choice", choices)
    if spec not in FIELD_KINDS or spec == "choice":
        raise TemplateError(
            letter_type,
            name,
            f"has kind {spec!r}; expected one of {', '.join(FIELD_KINDS)} "
            "(a choice is written with its choices)",
        )
    return FieldSpec(spec)


def _spaced(lang: str, text: str) -> str:
    """Single spaces; in French, the no-break space before ? ! : ; and inside guillemets, so that
    punctuation never starts a line."""
    text = _SPACES_RE.sub(" ", text).strip()
    if lang == "fr":
        text = _FRENCH_PUNCTUATION_RE.sub(NARROW_NBSP + r"\1", text).replace("« ", "«" + NARROW_NBSP)
    return text


def _language_text(letter_type: str, lang: str, data: Mapping[str, Any], allowed: set[str]) -> LanguageText:
    unknown = set(data) - _LANGUAGE_KEYS
    if unknown:
        raise TemplateError(
            letter_type, f"{lang}.{sorted(unknown)[0]}", f"unknown key (expected {sorted(_LANGUAGE_KEYS)})"
        )

    def checked(where: str, text: str) -> str:
        for name in placeholders(letter_type, where, text):
            if name not in allowed:
                raise TemplateError(letter_type, name, f"placeholder in {where} is not declared under fields")
        return text

    document_name = _spaced(lang, _text(data, "document_name", letter_type, f"{lang}.document_name"))
    if "{" in document_name:
        raise TemplateError(letter_type, f"{lang}.document_name", "is a fixed name without placeholders")
    subject = checked(
        f"{lang}.subject", _spaced(lang, _text(data, "subject", letter_type, f"{lang}.subject"))
    )

    details = []
    raw_details = data.get("details") or {}
    if not isinstance(raw_details, Mapping):
        raise TemplateError(letter_type, f"{lang}.details", "must be a mapping of label: value")
    for label, value in raw_details.items():
        where = f"{lang}.details.{label}"
        if not isinstance(label, str) or not isinstance(value, str) or not value.strip():
            raise TemplateError(letter_type, where, "label and value must both be text")
        details.append((_spaced(lang, label), checked(where, _spaced(lang, value))))

    body = data.get("body")
    if not isinstance(body, list) or not body:
        raise TemplateError(letter_type, f"{lang}.body", "must be a list of paragraphs")
    paragraphs = []
    for index, paragraph in enumerate(body):
        where = f"{lang}.body[{index + 1}]"
        if not isinstance(paragraph, str) or not paragraph.strip():
            raise TemplateError(letter_type, where, "a paragraph must be text")
        text = checked(where, _spaced(lang, paragraph))
        paragraphs.append(Paragraph(text[2:], bullet=True) if text.startswith("- ") else Paragraph(text))
    return LanguageText(document_name, subject, tuple(details), tuple(paragraphs))
