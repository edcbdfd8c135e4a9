"""Letters handed over by department systems: reading, checking and idempotent insertion into the outbox.

`dijlepost letters import FILE` reads CSV or JSON Lines (the contract is docs/letters-import.md). Each
row is checked on its own: every field for its type, its length limit (`LIMITS`) and its rule, and the
letter as a whole, payload included, by the renderer's own check (`rendering.validation.validate_letter`),
so a letter that imports also renders. A bad row is refused with a message naming the line and the field,
never the value itself; a letter id that is already in the outbox is reported as a duplicate and not
inserted again. The file is read as a stream and the good rows are inserted in transactions of
`IMPORT_BATCH` rows: memory stays flat in the file's size, and a rerun after a crash imports the rest (the
letters already in reported as duplicates). A problem with the file itself (not UTF-8, an unknown column,
no letters at all) is a `FileRefused` naming the line; found in the header, nothing is imported, found
further down, the batches before that line are (the exception's `report` says which).

The package's rooms: `contract` (the fields, their limits and the errors), `reading` (CSV and JSON Lines
into raw rows), `checking` (one raw row into a checked letter, or a refusal) and `writing` (checked rows
into the outbox in batches, with their `accepted` events).
"""

from include.dijlepost.intake.checking import validate_row
from include.dijlepost.intake.contract import (
    COMPARED,
    FIELDS,
    IMPORT_BATCH,
    KNOWN_COUNTRIES,
    LIMITS,
    FileRefused,
    ImportFailed,
    ImportReport,
    RowError,
)
from include.dijlepost.intake.reading import Unreadable, read_rows
from include.dijlepost.intake.writing import import_file, import_rows

__all__ = [
    "COMPARED",
    "FIELDS",
    "IMPORT_BATCH",
    "KNOWN_COUNTRIES",
    "LIMITS",
    "FileRefused",
    "ImportFailed",
    "ImportReport",
    "RowError",
    "Unreadable",
    "import_file",
    "import_rows",
    "read_rows",
    "validate_row",
]
