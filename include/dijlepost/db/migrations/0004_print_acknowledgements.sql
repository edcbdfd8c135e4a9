-- The print house's answers: acknowledgements per batch, returned mail, and the daily cut-off.
--
-- `letters.status` keeps its final states. `handed_to_print` stays the final state of a letter the
-- print house received; what the print house said about it afterwards is `print_status`:
--     NULL      handed over, no acknowledgement yet (the reconciliation lists these)
--     posted    acknowledged as accepted: printed and posted
--     returned  posted, then returned by the post (reason in print_reason): flagged for follow-up
--     rejected  refused by the print house; the letter moves from handed_to_print to `quarantined`
--               with the print house's reason (the only transition out of a final state)
ALTER TABLE letters
    ADD COLUMN print_status text CHECK (print_status IN ('posted', 'returned', 'rejected')),
    ADD COLUMN print_reason text,
    ADD COLUMN print_acknowledged_at timestamptz,
    ADD COLUMN print_returned_at timestamptz,
    ADD CONSTRAINT letters_print_status_state CHECK (
        print_status IS NULL
        OR (print_batch_id IS NOT NULL AND print_acknowledged_at IS NOT NULL AND (
            (print_status = 'rejected' AND status = 'quarantined' AND print_reason IS NOT NULL)
            OR (print_status = 'posted' AND status = 'handed_to_print')
            OR (print_status = 'returned' AND status = 'handed_to_print' AND print_reason IS NOT NULL
                AND print_returned_at IS NOT NULL)))
    );
CREATE INDEX letters_print_follow_up_idx ON letters (print_returned_at) WHERE print_status = 'returned';
CREATE INDEX letters_print_unacknowledged_idx ON letters (print_batch_id)
    WHERE status = 'handed_to_print' AND print_status IS NULL;

-- A batch is handed over on its print day: the day its letters were decided, or the next day for
-- letters decided after the wave's cut-off. NULL for batches recorded before this migration (due).
ALTER TABLE print_batches
    ADD COLUMN hand_over_on date,
    ADD COLUMN zip_sha256_remote_path text,
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN ack_file_sha256 text,
    ADD COLUMN accepted_count integer,
    ADD COLUMN rejected_count integer;
CREATE INDEX print_batches_unacknowledged_idx ON print_batches (uploaded_at)
    WHERE status = 'uploaded' AND acknowledged_at IS NULL;

-- Every file read from the print house's outbound folder, kept whole: nothing it sends is lost, and
-- a file seen again (same name, same content) is recognised and changes nothing.
CREATE TABLE print_house_files (
    id            bigserial PRIMARY KEY,
    file_name     text NOT NULL,
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    kind          text NOT NULL CHECK (kind IN ('ack', 'returns', 'unknown')),
    outcome       text NOT NULL CHECK (outcome IN ('applied', 'refused')),
    batch_id      text,
    letters       integer NOT NULL DEFAULT 0,
    error         text,
    content       bytea NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (file_name, sha256),
    CHECK ((outcome = 'refused') = (error IS NOT NULL))
);
