-- Rollout administration: a pilot by percentage, and the full history of paper exemptions.

-- `pilot` takes an allowlist and/or a percentage of recipients chosen by a stable hash of their
-- pseudonym (see include/dijlepost/rollout.py `pilot_bucket`): raising the percentage only adds people.
ALTER TABLE rollout_phases
    ADD COLUMN pilot_percent smallint NOT NULL DEFAULT 0 CHECK (pilot_percent BETWEEN 0 AND 100);

-- The history records the pilot group as it was set with each change (NULL for rows made before).
ALTER TABLE rollout_history
    ADD COLUMN pilot_percent smallint CHECK (pilot_percent BETWEEN 0 AND 100),
    ADD COLUMN pilot_size    integer CHECK (pilot_size >= 0);
ALTER TABLE rollout_history
    ADD CONSTRAINT rollout_history_reason_given CHECK (length(btrim(reason)) > 0) NOT VALID;
CREATE INDEX rollout_history_department_idx ON rollout_history (department, id);

-- Who added or removed a paper exemption, when and why; a removal needs a reason too.
CREATE TABLE paper_exemption_history (
    id                  bigserial PRIMARY KEY,
    recipient_pseudonym text NOT NULL,
    action              text NOT NULL CHECK (action IN ('add', 'remove')),
    changed_by          text NOT NULL CHECK (length(btrim(changed_by)) > 0),
    reason              text NOT NULL CHECK (length(btrim(reason)) > 0),
    changed_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX paper_exemption_history_recipient_idx ON paper_exemption_history (recipient_pseudonym, id);
INSERT INTO paper_exemption_history (recipient_pseudonym, action, changed_by, reason, changed_at)
    SELECT recipient_pseudonym, 'add', added_by, reason, added_at FROM paper_exemptions ORDER BY added_at;

-- The admin page's figures of recent runs read letters by department and decision time.
CREATE INDEX letters_department_decided_idx ON letters (department, decided_at);
