-- Read status of eBox publications, and paper copies of important letters left unread.
-- `ebox_status_checked_at`: the last searchMessageStatus check of the letter's message;
-- `ebox_read_at`: the first check that found its main content opened (the eBox gives no read time).
-- A paper copy is a new outbox row whose `followup_of` names the original; the unique index makes
-- "one copy per letter" hold under reruns and concurrent runs.
ALTER TABLE letters
    ADD COLUMN ebox_status_checked_at timestamptz,
    ADD COLUMN ebox_read_at           timestamptz,
    ADD COLUMN followup_of            text REFERENCES letters (letter_id),
    ADD CHECK (followup_of IS NULL OR followup_of <> letter_id);
CREATE UNIQUE INDEX letters_followup_of_key ON letters (followup_of) WHERE followup_of IS NOT NULL;
-- The daily follow-up scans published letters whose message is not known to be read.
CREATE INDEX letters_ebox_unread_idx ON letters (final_at)
    WHERE status = 'delivered_ebox' AND ebox_read_at IS NULL;
