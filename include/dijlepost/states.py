"""Every state column of dijlepost, its values and the moves allowed between them: the one source.

    letters.status        pending --claim--> processing --> delivered_ebox | handed_to_print | quarantined
                          (processing --> pending to retry; handed_to_print --> quarantined when the
                          print house refuses a letter)
    letters.ebox_state    NULL --> in_flight --> NULL (delivered) | no_digital_user | rejected
    letters.print_status  NULL --> posted | returned | rejected; posted --> returned
    print_batches.status  assigned --> uploading --> uploaded (assigned --> uploaded when found delivered)

The tables below are what the code does and what the database allows: `dijlepost db migrate` copies
them into `state_transitions` (`migrate.sync_state_transitions`), and the triggers of migration 0012
refuse any change of one of these columns that is not a row there, for every login but a superuser.
For each allowed move of a letter the trigger writes the audit event named here, in the same
transaction. SQL in the code writes a state as `Status.PROCESSING.sql` (the quoted literal) or
`sql_list(...)`, never as a literal of its own: a test holds every other module to that.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SqlEnum(StrEnum):
    @property
    def sql(self) -> str:
        """The value as an SQL string literal, for a statement's text (`status = 'processing'`)."""
        return "'" + self.value.replace("'", "''") + "'"


def sql_list(*members: SqlEnum) -> str:
    """`('a', 'b')`, for `IN` in a statement's text."""
    return "(" + ", ".join(m.sql for m in members) + ")"


class Status(SqlEnum):
    """letters.status"""

    PENDING = "pending"
    PROCESSING = "processing"
    DELIVERED_EBOX = "delivered_ebox"
    HANDED_TO_PRINT = "handed_to_print"
    QUARANTINED = "quarantined"


class EboxState(SqlEnum):
    """letters.ebox_state (NULL: no publication started, or the publication finished)"""

    IN_FLIGHT = "in_flight"
    NO_DIGITAL_USER = "no_digital_user"
    REJECTED = "rejected"


class PrintStatus(SqlEnum):
    """letters.print_status (NULL: not acknowledged by the print house yet)"""

    POSTED = "posted"
    RETURNED = "returned"
    REJECTED = "rejected"


class BatchStatus(SqlEnum):
    """print_batches.status"""

    ASSIGNED = "assigned"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"


@dataclass(frozen=True)
class Move:
    function: str  # the function that makes the move (outbox.py, printhouse/handoff.py)
    event: str | None  # the audit event the database writes for a letter's move (None: a batch)
    while_status: tuple[Status, ...] = ()  # letters.status the letter must have (before): () any


# letters.status. A move to the same state is the take-over of a dead run's claim (a new claim_run_id).
STATUS_TRANSITIONS: dict[tuple[Status, Status], Move] = {
    (Status.PENDING, Status.PROCESSING): Move("claim", "claimed"),
    (Status.PROCESSING, Status.PROCESSING): Move("claim", "claimed"),
    (Status.PROCESSING, Status.PENDING): Move("release_for_retry", "released_for_retry"),
    (Status.PROCESSING, Status.DELIVERED_EBOX): Move("mark_delivered_ebox", "delivered_ebox"),
    (Status.PROCESSING, Status.HANDED_TO_PRINT): Move("mark_handed_to_print", "handed_to_print"),
    (Status.PROCESSING, Status.QUARANTINED): Move("quarantine", "quarantined"),
    # The print house refused the letter (damaged PDF, unprintable address): it was never posted.
    (Status.HANDED_TO_PRINT, Status.QUARANTINED): Move("quarantine_after_print_rejection", "quarantined"),
}

# letters.ebox_state, None for NULL: only while the letter is `processing` (when the same UPDATE also
# moves the status, the status move names the event).
_PROCESSING = (Status.PROCESSING,)
EBOX_STATE_TRANSITIONS: dict[tuple[EboxState | None, EboxState | None], Move] = {
    (None, EboxState.IN_FLIGHT): Move("mark_ebox_in_flight", "ebox_publication_started", _PROCESSING),
    (EboxState.IN_FLIGHT, None): Move("mark_delivered_ebox", "delivered_ebox", _PROCESSING),
    (EboxState.IN_FLIGHT, EboxState.NO_DIGITAL_USER): Move(
        "reroute_to_paper", "rerouted_to_paper", _PROCESSING
    ),
    (EboxState.IN_FLIGHT, EboxState.REJECTED): Move("mark_ebox_rejected", "quarantined", _PROCESSING),
}

# letters.print_status, None for NULL: what the print house said about a letter handed over, so only
# while the letter is `handed_to_print`.
_HANDED = (Status.HANDED_TO_PRINT,)
PRINT_STATUS_TRANSITIONS: dict[tuple[PrintStatus | None, PrintStatus | None], Move] = {
    (None, PrintStatus.POSTED): Move("mark_posted", "printed_and_posted", _HANDED),
    (None, PrintStatus.RETURNED): Move("mark_returned", "returned_by_post", _HANDED),
    (PrintStatus.POSTED, PrintStatus.RETURNED): Move("mark_returned", "returned_by_post", _HANDED),
    (None, PrintStatus.REJECTED): Move("quarantine_after_print_rejection", "quarantined", _HANDED),
}

# print_batches.status. A move to the same state is another upload attempt of a batch.
BATCH_STATUS_TRANSITIONS: dict[tuple[BatchStatus, BatchStatus], Move] = {
    (BatchStatus.ASSIGNED, BatchStatus.UPLOADING): Move("record_uploading", None),
    (BatchStatus.UPLOADING, BatchStatus.UPLOADING): Move("record_uploading", None),
    (BatchStatus.ASSIGNED, BatchStatus.UPLOADED): Move("record_handed_over", None),
    (BatchStatus.UPLOADING, BatchStatus.UPLOADED): Move("record_handed_over", None),
}

# (table, column) -> its transition table; the values a row starts with (INSERT) are listed apart.
TRANSITIONS_BY_COLUMN: dict[tuple[str, str], dict] = {
    ("letters", "status"): STATUS_TRANSITIONS,
    ("letters", "ebox_state"): EBOX_STATE_TRANSITIONS,
    ("letters", "print_status"): PRINT_STATUS_TRANSITIONS,
    ("print_batches", "status"): BATCH_STATUS_TRANSITIONS,
}
INITIAL_STATES: dict[tuple[str, str], SqlEnum | None] = {
    ("letters", "status"): Status.PENDING,
    ("letters", "ebox_state"): None,
    ("letters", "print_status"): None,
    ("print_batches", "status"): BatchStatus.ASSIGNED,
}

FINAL_STATUSES = (Status.DELIVERED_EBOX, Status.HANDED_TO_PRINT, Status.QUARANTINED)
# The events only the database writes (for a move); `record_letter_event` refuses them.
MOVE_EVENTS = frozenset(
    move.event for table in TRANSITIONS_BY_COLUMN.values() for move in table.values() if move.event
)


def allowed(source: Status | str, target: Status | str) -> bool:
    """Whether letters.status may move from `source` to `target`."""
    return (Status(source), Status(target)) in STATUS_TRANSITIONS


def transition_rows() -> list[tuple[str, str, str | None, str | None, str, str | None, list[str] | None]]:
    """Every allowed move as `(table, column, from, to, function, event, while_status)`, NULL as None:
    the rows of the database's `state_transitions`."""
    return [
        (
            table,
            column,
            None if src is None else str(src),
            None if dst is None else str(dst),
            m.function,
            m.event,
            [str(s) for s in m.while_status] or None,
        )
        for (table, column), moves in TRANSITIONS_BY_COLUMN.items()
        for (src, dst), m in moves.items()
    ]
