-- A print batch is never printed twice (docs/print-house.md, "Handing over exactly once").
--
--     assigned  --> uploading --> uploaded
--
-- `uploading` is committed, with the zip's SHA-256 and size, before the first byte of the batch is
-- written to the print house's inbox. A batch found in `uploading` was therefore perhaps delivered
-- by an attempt that died: before it sends anything again, the hand-over looks for the batch at the
-- print house (in its inbox, among the batches it has taken, among its acknowledgements) and, when
-- it is there, only records the hand-over. `handover_evidence` says which it was.
ALTER TABLE print_batches DROP CONSTRAINT print_batches_status_check;
ALTER TABLE print_batches ADD CONSTRAINT print_batches_status_check
    CHECK (status IN ('assigned', 'uploading', 'uploaded'));

ALTER TABLE print_batches
    ADD COLUMN upload_started_at timestamptz,
    ADD COLUMN upload_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN handover_evidence text CHECK (handover_evidence IN
        ('uploaded', 'found_in_inbox', 'taken_by_print_house', 'acknowledged', 'members_final')),
    ADD CONSTRAINT print_batches_uploading_state CHECK (
        status <> 'uploading' OR (upload_started_at IS NOT NULL AND zip_sha256 IS NOT NULL AND zip_bytes IS NOT NULL)),
    ADD CONSTRAINT print_batches_evidence_state CHECK (handover_evidence IS NULL OR status = 'uploaded');
