"""The template files: all letter types load, and each kind of mistake stops loading with a message
that names the template and the field."""

import shutil
from pathlib import Path

import pytest
import yaml

from include.dijlepost.rendering import LetterRenderer, TemplateError
from include.dijlepost.rendering.templates import load_templates
from include.dijlepost.settings import TEMPLATES_DIR
from include.dijlepost.waves import ALL_LETTER_TYPES, LANGUAGES

from .letters import renderer

EXPECTED_FIELDS = {
    "invoice": (
        "invoice_number",
        "invoice_date",
        "service",
        "service_detail",
        "amount_due",
        "due_date",
        "ogm",
    ),
    "reminder": (
        "invoice_number",
        "invoice_date",
        "original_due_date",
        "original_amount",
        "reminder_costs",
        "amount_due",
        "due_date",
        "ogm",
    ),
    "tax_assessment": (
        "tax",
        "tax_year",
        "assessment_number",
        "tax_object",
        "roll_date",
        "amount_due",
        "due_date",
        "ogm",
    ),
    "gas_finding": (
        "finding_number",
        "offence",
        "offence_date",
        "offence_time",
        "offence_location",
        "regulation_article",
        "max_fine",
        "defence_deadline",
    ),
    "gas_decision": (
        "decision_number",
        "finding_number",
        "offence",
        "offence_date",
        "offence_location",
        "regulation_article",
        "amount_due",
        "due_date",
        "ogm",
    ),
    "premium_decision": (
        "premium",
        "application_number",
        "application_date",
        "property_address",
        "decision_date",
        "premium_amount",
        "iban",
        "payment_date",
    ),
    "inspection_notice": (
        "inspection",
        "case_number",
        "property_address",
        "inspection_date",
        "inspection_time",
        "inspector_name",
        "reschedule_deadline",
    ),
}


def test_every_letter_type_has_a_template_in_every_language():
    templates = load_templates(TEMPLATES_DIR).templates
    assert set(templates) == set(ALL_LETTER_TYPES)
    for template in templates.values():
        assert set(template.texts) == set(LANGUAGES)
        payment = template.letter_type in {"invoice", "reminder", "tax_assessment", "gas_decision"}
        assert template.payment == payment


@pytest.mark.parametrize("letter_type", sorted(EXPECTED_FIELDS))
def test_required_fields(letter_type):
    assert renderer().required_fields(letter_type) == EXPECTED_FIELDS[letter_type]


def _copy(tmp_path: Path) -> Path:
    for path in TEMPLATES_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _edit(directory: Path, name: str, change) -> None:
    path = directory / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _fails(directory: Path, template: str, field: str) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        load_templates(directory)
    assert (caught.value.template, caught.value.field) == (template, field)
    assert repr(template) in str(caught.value) and repr(field) in str(caught.value)
    return caught.value


def test_undeclared_placeholder(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "invoice", lambda d: d["fr"]["body"].append("Montant : {montant_du}"))
    assert "fr.body[4] is not declared under fields" in str(_fails(directory, "invoice", "montant_du"))


def test_placeholder_with_a_format(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "invoice", lambda d: d["nl"].update(subject="Factuur {invoice_number:>10}"))
    _fails(directory, "invoice", "invoice_number")


def test_unbalanced_brace(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "reminder", lambda d: d["de"].update(subject="Mahnung {invoice_number"))
    assert "unbalanced braces" in str(_fails(directory, "reminder", "de.subject"))


def test_missing_language(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "gas_finding", lambda d: d.pop("de"))
    _fails(directory, "gas_finding", "de")


def test_unknown_field_kind(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "premium_decision", lambda d: d["fields"].update(premium_amount="money"))
    assert "has kind 'money'" in str(_fails(directory, "premium_decision", "premium_amount"))


def test_payment_letter_without_structured_communication(tmp_path):
    directory = _copy(tmp_path)

    def drop_ogm(data):
        data["fields"].pop("ogm")

    _edit(directory, "tax_assessment", drop_ogm)
    assert "must declare ogm: ogm" in str(_fails(directory, "tax_assessment", "ogm"))


def test_choice_without_a_language(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "gas_decision", lambda d: d["fields"]["offence"]["choices"]["noise"].pop("fr"))
    _fails(directory, "gas_decision", "offence.noise.fr")


def test_misspelt_key(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "inspection_notice", lambda d: d["nl"].update(bodyy=["x"]))
    _fails(directory, "inspection_notice", "nl.bodyy")


def test_department_that_does_not_match_the_waves(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "invoice", lambda d: d.update(department="gas"))
    _fails(directory, "invoice", "department")


def test_missing_template_file(tmp_path):
    directory = _copy(tmp_path)
    (directory / "premium_decision.yaml").unlink()
    _fails(directory, "premium_decision", "(file)")


def test_invalid_yaml(tmp_path):
    directory = _copy(tmp_path)
    (directory / "reminder.yaml").write_text("nl: [unclosed\n", encoding="utf-8")
    assert "not valid YAML" in str(_fails(directory, "reminder", "(file)"))


def test_invalid_sender_iban(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "common", lambda d: d["sender"]["payment_account"].update(iban="BE68 5390 0754 7035"))
    _fails(directory, "common", "sender.payment_account.iban")


def test_missing_label(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "common", lambda d: d["labels"]["de"].pop("qr_caption"))
    _fails(directory, "common", "labels.de.qr_caption")


def test_text_the_font_cannot_print_is_refused_at_load(tmp_path):
    directory = _copy(tmp_path)
    (directory / "fonts").symlink_to(TEMPLATES_DIR / "fonts")
    _edit(directory, "invoice", lambda d: d["nl"].update(document_name="Factuur \u2603"))
    with pytest.raises(TemplateError) as caught:
        LetterRenderer(templates_dir=directory)
    assert (caught.value.template, caught.value.field) == ("invoice", "nl.document_name")
    assert "U+2603" in str(caught.value)


def test_french_punctuation_gets_a_no_break_space():
    texts = load_templates(TEMPLATES_DIR).templates["reminder"].texts["fr"]
    assert texts.subject.startswith("Rappel\u202f: la facture")


def test_a_made_up_sender_iban_is_refused_unless_marked_as_a_demo_account(tmp_path):
    """python-stdnum's full check: BE68 5390 0754 7034 has valid check digits, but its bank code 539 is
    assigned to no bank. The shipped common.yaml marks it `demo: true`; without the mark (a production
    configuration with that IBAN) the renderer does not start."""
    shipped = load_templates(TEMPLATES_DIR).sender
    assert shipped.demo_account and shipped.iban.compact == "BE68539007547034"
    directory = _copy(tmp_path)
    _edit(directory, "common", lambda d: d["sender"]["payment_account"].pop("demo"))
    error = _fails(directory, "common", "sender.payment_account.iban")
    assert "not the account of an assigned bank" in str(error) and "demo: true" in str(error)
    _edit(directory, "common", lambda d: d["sender"]["payment_account"].update(demo=False))
    _fails(directory, "common", "sender.payment_account.iban")
    _edit(directory, "common", lambda d: d["sender"]["payment_account"].update(demo="yes"))
    _fails(directory, "common", "sender.payment_account.demo")


def test_a_real_bank_account_needs_no_demo_mark(tmp_path):
    directory = _copy(tmp_path)
    # Belfius (bank code 096), check digits valid: passes the full check.
    _edit(directory, "common", lambda d: d["sender"]["payment_account"].update(iban="BE71 0961 2345 6769"))
    _edit(directory, "common", lambda d: d["sender"]["payment_account"].pop("demo"))
    sender = load_templates(directory).sender
    assert sender.iban.compact == "BE71096123456769" and not sender.demo_account


def test_a_demo_account_still_needs_valid_check_digits(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "common", lambda d: d["sender"]["payment_account"].update(iban="BE69 5390 0754 7034"))
    assert "is not a valid IBAN" in str(_fails(directory, "common", "sender.payment_account.iban"))


def test_itemised_lines_only_in_a_payment_letter_and_never_as_a_placeholder(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "premium_decision", lambda d: d["fields"].update(lines="lines"))
    assert "only a payment letter" in str(_fails(directory, "premium_decision", "lines"))
    directory = _copy(tmp_path)
    _edit(directory, "invoice", lambda d: d["nl"]["body"].append("Regels: {lines}"))
    assert "not declared under fields" in str(_fails(directory, "invoice", "lines"))


def test_a_format_character_in_a_template_is_refused_at_load(tmp_path):
    directory = _copy(tmp_path)
    (directory / "fonts").symlink_to(TEMPLATES_DIR / "fonts")
    _edit(directory, "reminder", lambda d: d["de"].update(document_name="Mah\u200bnung"))
    with pytest.raises(TemplateError) as caught:
        LetterRenderer(templates_dir=directory)
    assert (caught.value.template, caught.value.field) == ("reminder", "de.document_name")
    assert "U+200B" in str(caught.value)


def test_the_envelope_is_a_named_configuration():
    envelope = load_templates(TEMPLATES_DIR).envelope
    assert envelope.name.startswith("DL window envelope")
    assert (envelope.width, envelope.height) == (220, 110)
    assert envelope.folds == (99, 198)
    assert envelope.bpost_problems() == []


def test_an_envelope_entry_with_a_wrong_value_is_named(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "common", lambda d: d["envelope"]["window"].update(top="forty"))
    _fails(directory, "common", "envelope.window.top")
    directory = _copy(tmp_path)
    _edit(directory, "common", lambda d: d.pop("envelope"))
    _fails(directory, "common", "envelope")


def test_sums_name_amount_fields(tmp_path):
    directory = _copy(tmp_path)
    _edit(directory, "reminder", lambda d: d["sums"].update(amount_due=["original_amount", "invoice_date"]))
    assert "'invoice_date' is not an amount field" in str(_fails(directory, "reminder", "sums.amount_due"))
    directory = _copy(tmp_path)
    _edit(directory, "reminder", lambda d: d.update(sums={"amount_due": ["original_amount"]}))
    _fails(directory, "reminder", "sums.amount_due")
