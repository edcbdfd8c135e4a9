-- The outbox contract: department systems insert rows into `letters`; dijlepost owns every column
-- after `created_at` and moves each letter through exactly one path to one final state.
CREATE TABLE letters (
    id               bigserial PRIMARY KEY,
    letter_id        text NOT NULL UNIQUE CHECK (letter_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    department       text NOT NULL CHECK (department IN ('finance', 'gas', 'economy_housing')),
    letter_type      text NOT NULL,
    recipient_kind   text NOT NULL CHECK (recipient_kind IN ('citizen', 'enterprise')),
    recipient_id     text NOT NULL,
    recipient_name   text NOT NULL,
    street           text NOT NULL,
    postal_code      text NOT NULL,
    city             text NOT NULL,
    country          text NOT NULL DEFAULT 'BE',
    language         text NOT NULL CHECK (language IN ('nl', 'fr', 'de')),
    registered       boolean NOT NULL DEFAULT false,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processing', 'delivered_ebox', 'handed_to_print',
                                       'quarantined')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- claim: which DAG run holds the letter, and in which chunk of that run
    claim_run_id     text,
    claim_chunk      integer,
    claimed_at       timestamptz,
    attempts         integer NOT NULL DEFAULT 0,
    -- decision: channel, the rule that chose it and why, in words
    rollout_phase    text,
    channel          text CHECK (channel IN ('ebox', 'paper')),
    decision_rule    text,
    decision_reason  text,
    shadow_channel   text CHECK (shadow_channel IN ('ebox', 'paper')),
    decided_at       timestamptz,
    -- rendering
    pdf_path         text,
    pdf_sha256       text,
    pdf_pages        integer,
    rendered_at      timestamptz,
    -- outcome
    ebox_message_id  text,
    print_batch_id   text,
    quarantine_reason text,
    last_error       text,
    final_at         timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((status IN ('delivered_ebox', 'handed_to_print', 'quarantined')) = (final_at IS NOT NULL)),
    CHECK (status <> 'quarantined' OR quarantine_reason IS NOT NULL)
);
CREATE INDEX letters_pending_idx ON letters (department, id) WHERE status = 'pending';
CREATE INDEX letters_claim_idx ON letters (claim_run_id, claim_chunk) WHERE status = 'processing';

-- Append-only history of each letter, with the Airflow coordinates of the task that acted.
CREATE TABLE letter_events (
    event_id     bigserial PRIMARY KEY,
    letter_id    text NOT NULL,
    event        text NOT NULL,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    dag_id       text,
    run_id       text,
    task_id      text,
    map_index    integer,
    try_number   integer,
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX letter_events_letter_idx ON letter_events (letter_id, event_id);

-- Rollout phase per department (feature flags), read by every run; history kept in full.
CREATE TABLE rollout_phases (
    department       text PRIMARY KEY CHECK (department IN ('finance', 'gas', 'economy_housing')),
    phase            text NOT NULL,
    pilot_allowlist  text[] NOT NULL DEFAULT '{}',   -- recipient pseudonyms
    changed_by       text NOT NULL,
    reason           text NOT NULL CHECK (length(btrim(reason)) > 0),
    changed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE rollout_history (
    id           bigserial PRIMARY KEY,
    department   text NOT NULL,
    from_phase   text,
    to_phase     text NOT NULL,
    changed_by   text NOT NULL,
    reason       text NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rollout_phases (department, phase, changed_by, reason) VALUES
    ('finance', 'live', 'migration', 'the financial service is the first wave'),
    ('gas', 'paper', 'migration', 'GAS follows in wave 2'),
    ('economy_housing', 'off', 'migration', 'Economy and Housing follows in wave 3');
INSERT INTO rollout_history (department, from_phase, to_phase, changed_by, reason)
    SELECT department, NULL, phase, changed_by, reason FROM rollout_phases;

-- Recipients who keep paper whatever their eBox says (digipunt, social service).
CREATE TABLE paper_exemptions (
    recipient_pseudonym text PRIMARY KEY,
    added_by     text NOT NULL,
    reason       text NOT NULL CHECK (length(btrim(reason)) > 0),
    added_at     timestamptz NOT NULL DEFAULT now()
);

-- eBox activation checks, cached per recipient (keyed pseudonym) with the time of the check.
CREATE TABLE ebox_activation (
    recipient_pseudonym text PRIMARY KEY,
    recipient_kind   text NOT NULL,
    active           boolean NOT NULL,
    exclusively_ebox boolean,
    checked_at       timestamptz NOT NULL
);

-- Print batches: membership is written before the file is built, so a retry rebuilds the same batch.
CREATE TABLE print_batches (
    batch_id     text PRIMARY KEY,
    department   text NOT NULL,
    postage_class text NOT NULL,
    status       text NOT NULL DEFAULT 'assigned' CHECK (status IN ('assigned', 'uploaded')),
    letter_count integer NOT NULL,
    zip_sha256   text,
    zip_bytes    bigint,
    remote_path  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    uploaded_at  timestamptz
);
