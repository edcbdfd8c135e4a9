-- Where a letter stands with the eBox. `in_flight` is written *before* a publication is attempted, so
-- a crash between the eBox's answer and our commit can only ever lead to the same publication again
-- (same Idempotency-Key, answered 409) and never to a paper copy of a letter the eBox may hold.
ALTER TABLE letters
    ADD COLUMN ebox_state text CHECK (ebox_state IN ('in_flight', 'no_digital_user', 'rejected'));
-- A letter that belongs to a print batch is finished by the print step, never re-decided.
CREATE INDEX letters_print_batch_idx ON letters (print_batch_id) WHERE print_batch_id IS NOT NULL;
CREATE INDEX letter_events_run_idx ON letter_events (run_id, event);
