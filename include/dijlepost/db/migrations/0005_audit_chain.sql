-- Audit trail: `letter_events` becomes tamper-evident and append-only; evaluation figures.
--
-- 1. A hash chain. Every event gets its place in the chain (`chain_seq`, 1, 2, 3, ... in commit
--    order), the hash of the event before it (`prev_hash`; 32 zero bytes for the first) and its own
--    `hash = sha256(prev_hash || utf8(canonical row))`, where the canonical row is the JSON array
--      [chain_seq, event_id, letter_id, event, details, dag_id, run_id, task_id, map_index,
--       try_number, at as 'YYYY-MM-DDTHH:MI:SS.USZ' in UTC]
--    (jsonb's text form: the same value always prints the same way). A BEFORE INSERT trigger computes
--    it under a transaction-scoped advisory lock, so concurrent writers queue for the chain head and
--    the chain never forks (the unique index on chain_seq refuses a fork even so). Callers of
--    `outbox.record_events` change nothing. `at` is the database clock at insertion: the pipeline
--    cannot back-date an event. `dijlepost audit verify` recomputes the chain (see docs/audit.md).
-- 2. Append-only. A trigger refuses UPDATE, DELETE and TRUNCATE of `letter_events` for everyone,
--    table owner and superusers included, unless the session sets `dijlepost.audit_break_glass = on`
--    AND the current role is a superuser or a member of `dijlepost_audit_breakglass`. The role the
--    pipeline uses, `dijlepost_pipeline` (NOLOGIN group role; production grants it to Airflow's
--    database user), has no UPDATE, DELETE or TRUNCATE privilege on `letter_events` at all.
-- 3. `evaluation_figures`: the daily and weekly figures of the letters_evaluation DAG.

ALTER TABLE letter_events
    ADD COLUMN chain_seq bigint,
    ADD COLUMN prev_hash bytea,
    ADD COLUMN hash      bytea;

CREATE FUNCTION audit_event_canonical(e letter_events) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_array(e.chain_seq, e.event_id, e.letter_id, e.event, e.details, e.dag_id, e.run_id,
                             e.task_id, e.map_index, e.try_number,
                             to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text
$$;

CREATE FUNCTION audit_event_hash(e letter_events) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT sha256(e.prev_hash || convert_to(audit_event_canonical(e), 'UTF8'))
$$;

CREATE FUNCTION audit_break_glass() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('dijlepost.audit_break_glass', true), '') = 'on'
       AND ((SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
            OR (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dijlepost_audit_breakglass')
                AND pg_has_role(current_user, 'dijlepost_audit_breakglass', 'MEMBER')))
$$;

-- Chain the events written before this migration, in the order they were written.
DO $$
DECLARE
    r record;
    seq bigint := 0;
    prev bytea := decode(repeat('00', 32), 'hex');
BEGIN
    FOR r IN SELECT event_id FROM letter_events ORDER BY event_id LOOP
        seq := seq + 1;
        UPDATE letter_events SET chain_seq = seq, prev_hash = prev WHERE event_id = r.event_id;
        UPDATE letter_events e SET hash = audit_event_hash(e) WHERE event_id = r.event_id
            RETURNING hash INTO prev;
    END LOOP;
END $$;

ALTER TABLE letter_events
    ALTER COLUMN chain_seq SET NOT NULL,
    ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL,
    ADD CONSTRAINT letter_events_hash_sizes CHECK (octet_length(prev_hash) = 32 AND octet_length(hash) = 32);
CREATE UNIQUE INDEX letter_events_chain_idx ON letter_events (chain_seq);
CREATE INDEX letter_events_at_idx ON letter_events (at);

CREATE FUNCTION letter_events_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head record;
BEGIN
    -- One writer at a time extends the chain; the lock is held until the transaction ends.
    PERFORM pg_advisory_xact_lock(1684630636, 7);   -- ('dijl', 7): the audit chain's lock
    -- A volatile function's query sees what committed before the lock was granted, and the rows this
    -- statement inserted so far.
    SELECT chain_seq, hash INTO head FROM letter_events ORDER BY chain_seq DESC LIMIT 1;
    IF FOUND THEN
        NEW.chain_seq := head.chain_seq + 1;
        NEW.prev_hash := head.hash;
    ELSE
        NEW.chain_seq := 1;
        NEW.prev_hash := decode(repeat('00', 32), 'hex');
    END IF;
    IF NOT audit_break_glass() THEN
        NEW.at := clock_timestamp();
    END IF;
    NEW.hash := audit_event_hash(NEW);
    RETURN NEW;
END $$;

CREATE TRIGGER letter_events_chain BEFORE INSERT ON letter_events
    FOR EACH ROW EXECUTE FUNCTION letter_events_chain();

CREATE FUNCTION letter_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF audit_break_glass() THEN
        RAISE WARNING 'letter_events: % by % under break-glass', TG_OP, current_user;
        IF TG_LEVEL = 'STATEMENT' THEN
            RETURN NULL;
        ELSIF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'letter_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'the audit trail is kept unmodified; see docs/audit.md (break-glass)';
END $$;

CREATE TRIGGER letter_events_no_update_delete BEFORE UPDATE OR DELETE ON letter_events
    FOR EACH ROW EXECUTE FUNCTION letter_events_append_only();
CREATE TRIGGER letter_events_no_truncate BEFORE TRUNCATE ON letter_events
    FOR EACH STATEMENT EXECUTE FUNCTION letter_events_append_only();

-- Daily and weekly evaluation figures per department (letters_evaluation DAG, docs/evaluation.md).
-- A rerun of a period replaces its row. NULL means "not measured": the feature behind the figure
-- (read status, returned mail) is not in this database.
CREATE TABLE evaluation_figures (
    period_kind          text NOT NULL CHECK (period_kind IN ('day', 'week')),
    period_start         date NOT NULL,
    period_end           date NOT NULL CHECK (period_end > period_start),   -- exclusive
    department           text NOT NULL,
    letters_final        integer NOT NULL,
    ebox                 integer NOT NULL,
    paper                integer NOT NULL,
    quarantined          integer NOT NULL,
    ebox_share           numeric(7, 4),
    recipients_checked   integer NOT NULL,
    recipients_active    integer NOT NULL,
    activation_rate      numeric(7, 4),
    ebox_unread          integer,
    paper_followups      integer,
    returned_mail        integer,
    quarantine_reasons   jsonb NOT NULL DEFAULT '{}'::jsonb,
    printing_avoided_eur numeric(12, 2) NOT NULL,
    postage_avoided_eur  numeric(12, 2) NOT NULL,
    followup_cost_eur    numeric(12, 2) NOT NULL,
    savings_eur          numeric(12, 2) NOT NULL,
    tariffs              jsonb NOT NULL,
    report_path          text,
    computed_at          timestamptz NOT NULL DEFAULT now(),
    computed_by_run      text,
    PRIMARY KEY (period_kind, period_start, department)
);

-- The pipeline's role. Created only if missing (roles are shared by every database of the server);
-- a server where the migrating user may not create roles gets a warning and a DBA creates them
-- (docs/audit.md gives the statements), then reruns the GRANTs below.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['dijlepost_pipeline', 'dijlepost_audit_breakglass'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN NULL;   -- created meanwhile by another database's migration
                WHEN insufficient_privilege THEN
                    RAISE WARNING 'cannot create role %: ask a DBA to create it (docs/audit.md)', r;
            END;
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dijlepost_pipeline') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO dijlepost_pipeline', current_schema());
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO dijlepost_pipeline',
                       current_schema());
        EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO dijlepost_pipeline', current_schema());
        -- Tables and sequences later migrations create get the same grants.
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES '
                       'TO dijlepost_pipeline', current_schema());
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES '
                       'TO dijlepost_pipeline', current_schema());
        REVOKE UPDATE, DELETE, TRUNCATE ON letter_events FROM dijlepost_pipeline;
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM dijlepost_pipeline;
    END IF;
END $$;
