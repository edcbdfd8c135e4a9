"""The rollout waves, declared once. Adding a department is one entry here, its templates, and its
three-line DAG file `dags/letters_<department>.py` that hands the entry to `dag_factory.build_wave_dag`
(one file per DAG, so the UI names each wave's own file; `tests/dags/test_dag_integrity.py` fails while a
wave has no DAG). `dijlepost db migrate` then adds the department in rollout phase `off`.
Nothing here touches a database or the network: DAG files import it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The letter languages of the city (Dutch, French, German); the database, the templates and the eBox use these.
LANGUAGES = ("nl", "fr", "de")


@dataclass(frozen=True)
class Wave:
    department: str
    title: str
    description: str
    letter_types: tuple[str, ...]
    schedule: str
    wave_number: int
    batch_size: int = 5000  # letters claimed by one run
    chunk_size: int = 500  # letters per mapped render / delivery task
    max_chunks: int = 16  # a bigger claim gets bigger chunks, not more (scheduler cost)
    # Letters that must go as registered mail may use the eBox's registered e-delivery.
    registered_via_ebox: bool = True
    # eBox message type per letter type (assigned by the eBox when a message type is registered).
    ebox_message_types: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    # Paper path (docs/print-house.md): a print batch holds at most this many letters and megabytes;
    # letters decided at or after the daily cut-off (HH:MM, Europe/Brussels; None: no cut-off) go into
    # the next day's batch; a batch not acknowledged after `print_ack_alert_hours` raises an alert.
    print_batch_max_letters: int = 2000
    print_batch_max_mb: int = 200
    print_cutoff: str | None = None
    print_ack_alert_hours: int = 24
    # Important letter types: an eBox message of these types that is not opened within
    # `followup_after_days` gets one paper copy (rule `unread_ebox_followup`, DAG letters_ebox_followup).
    followup_letter_types: tuple[str, ...] = ()
    followup_after_days: int = 14
    # What the follow-up does with such a letter delivered without a message id (a 409 whose first
    # answer was lost: its read status cannot be asked), per letter type: "paper_copy" (the default:
    # counted as unread, one paper copy after the period) or "no_copy" (trusted as delivered).
    followup_without_message_id: dict[str, str] = field(default_factory=dict)

    @property
    def dag_id(self) -> str:
        return f"letters_{self.department}"


WAVES: dict[str, Wave] = {
    "finance": Wave(
        department="finance",
        title="Wave 1: financial service",
        description="Invoices (facturen), reminders (aanmaningen) and tax assessments (aanslagbiljetten).",
        letter_types=("invoice", "reminder", "tax_assessment"),
        schedule="0 6-18/2 * * 1-5",
        wave_number=1,
        ebox_message_types={
            "invoice": "MECH-FIN-INVOICE",
            "reminder": "MECH-FIN-REMINDER",
            "tax_assessment": "MECH-FIN-TAX",
        },
        tags=("wave-1",),
        followup_letter_types=("reminder", "tax_assessment"),
        followup_without_message_id={"reminder": "paper_copy", "tax_assessment": "paper_copy"},
    ),
    "gas": Wave(
        department="gas",
        title="Wave 2: municipal administrative sanctions (GAS)",
        description="Findings (vaststellingen) and decisions (beslissingen), traditionally registered.",
        letter_types=("gas_finding", "gas_decision"),
        schedule="30 7-17/2 * * 1-5",
        wave_number=2,
        ebox_message_types={"gas_finding": "MECH-GAS-FINDING", "gas_decision": "MECH-GAS-DECISION"},
        tags=("wave-2",),
        followup_letter_types=("gas_decision",),
        followup_without_message_id={"gas_decision": "paper_copy"},
    ),
    "economy_housing": Wave(
        department="economy_housing",
        title="Wave 3: Economy and Housing",
        description="Premium decisions and inspection notices.",
        letter_types=("premium_decision", "inspection_notice"),
        schedule="0 8,14 * * 1-5",
        wave_number=3,
        ebox_message_types={"premium_decision": "MECH-EW-PREMIUM", "inspection_notice": "MECH-EW-INSPECTION"},
        tags=("wave-3",),
    ),
}

DEPARTMENTS = tuple(WAVES)
ALL_LETTER_TYPES = {t: w.department for w in WAVES.values() for t in w.letter_types}
