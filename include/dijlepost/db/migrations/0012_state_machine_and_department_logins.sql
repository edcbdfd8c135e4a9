-- Least privilege in the database (docs/audit.md, docs/letters-import.md).
--
-- 1. The state machine, enforced here. `state_transitions` holds every allowed move of
--    letters.status, letters.ebox_state, letters.print_status and print_batches.status, with the audit
--    event of a letter's move; `dijlepost db migrate` fills it from include/dijlepost/states.py, the one
--    source (`migrate.sync_state_transitions`). The triggers below refuse any other change of these
--    columns, and a new row in any other than its first state, for every login but a superuser (who
--    can switch triggers off anyway, and whom the pipeline refuses to run as). For every move of a
--    letter, allowed or by a superuser, the trigger writes the letter's audit event in the same
--    statement: the chain cannot miss a move. The code passes the event's details and its Airflow
--    coordinates in the transient column `audit_event` of the same UPDATE (the trigger empties it);
--    a move by hand gets `{"by": <login>}`.
-- 2. Audit events are written by the database only: nobody but the table's owner may INSERT into
--    `letter_events`; the pipeline writes the events that are not moves through
--    `record_letter_event(...)`, which refuses the name of a move's event (but to a superuser's
--    session, as the state machine does). The chain trigger refuses
--    an event that brings its own chain_seq, prev_hash or hash (a forged link) outside break-glass.
-- 3. Department logins bound to their department: the role `dijlepost_dept_<department>` (created by
--    `db migrate` for every department, member of `dijlepost_department`) may insert and see only the
--    letters of its department, through the restrictive policy `letters_own_department`.

CREATE TABLE state_transitions (
    table_name  text NOT NULL CHECK (table_name IN ('letters', 'print_batches')),
    column_name text NOT NULL,
    from_state  text,
    to_state    text,
    function    text NOT NULL,
    event       text,
    while_status text[],   -- letters.status the letter must have for the move (NULL: any)
    CHECK ((table_name = 'letters') = (event IS NOT NULL))
);
CREATE UNIQUE INDEX state_transitions_move_idx
    ON state_transitions (table_name, column_name, coalesce(from_state, ''), coalesce(to_state, ''));
-- The values a new row starts in, per column (NULL: the column starts empty).
CREATE TABLE state_initial (
    table_name  text NOT NULL,
    column_name text NOT NULL,
    state       text,
    PRIMARY KEY (table_name, column_name)
);

-- Transient: the details and Airflow coordinates of the audit event of the move this UPDATE makes.
ALTER TABLE letters ADD COLUMN audit_event jsonb, ADD CONSTRAINT letters_audit_event_transient
    CHECK (audit_event IS NULL);

-- The event of an allowed move ('' for a print batch's), NULL when the move is not allowed.
CREATE FUNCTION state_move_event(p_table text, p_column text, p_from text, p_to text, p_status text)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(event, '') FROM state_transitions
     WHERE table_name = p_table AND column_name = p_column
       AND from_state IS NOT DISTINCT FROM p_from AND to_state IS NOT DISTINCT FROM p_to
       AND (while_status IS NULL OR p_status = ANY (while_status))
$$;

CREATE FUNCTION session_is_superuser() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = session_user), false)
$$;

CREATE FUNCTION letters_state_machine() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    exempt boolean;
    ev jsonb := NEW.audit_event;
    event text;
    found_event text;
    col text;
    old_value text;
    new_value text;
BEGIN
    NEW.audit_event := NULL;
    -- (queries written out here rather than through the SQL functions above: PL/pgSQL keeps their plans)
    SELECT coalesce(rolsuper, false) INTO exempt FROM pg_roles WHERE rolname = session_user;
    exempt := coalesce(exempt, false);
    IF TG_OP = 'INSERT' THEN
        IF NOT exempt AND (
               NEW.status IS DISTINCT FROM (SELECT state FROM state_initial WHERE table_name = 'letters' AND column_name = 'status')
            OR NEW.ebox_state IS DISTINCT FROM (SELECT state FROM state_initial WHERE table_name = 'letters' AND column_name = 'ebox_state')
            OR NEW.print_status IS DISTINCT FROM (SELECT state FROM state_initial WHERE table_name = 'letters' AND column_name = 'print_status')) THEN
            RAISE EXCEPTION 'a new letter starts pending, without eBox state or print status (refused: %, %, %)',
                NEW.status, coalesce(NEW.ebox_state, 'NULL'), coalesce(NEW.print_status, 'NULL')
                USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'letters_state_machine',
                      TABLE = 'letters';
        END IF;
        RETURN NEW;
    END IF;
    FOREACH col IN ARRAY ARRAY['status', 'ebox_state', 'print_status'] LOOP
        old_value := CASE col WHEN 'status' THEN OLD.status WHEN 'ebox_state' THEN OLD.ebox_state ELSE OLD.print_status END;
        new_value := CASE col WHEN 'status' THEN NEW.status WHEN 'ebox_state' THEN NEW.ebox_state ELSE NEW.print_status END;
        -- A move to the same status is one only when the claim changes hands (a dead run's claim taken over).
        CONTINUE WHEN old_value IS NOT DISTINCT FROM new_value
            AND NOT (col = 'status' AND OLD.claim_run_id IS DISTINCT FROM NEW.claim_run_id
                     AND NEW.claim_run_id IS NOT NULL);
        found_event := NULL;
        SELECT t.event INTO found_event FROM state_transitions t
         WHERE t.table_name = 'letters' AND t.column_name = col
           AND t.from_state IS NOT DISTINCT FROM old_value AND t.to_state IS NOT DISTINCT FROM new_value
           AND (t.while_status IS NULL OR OLD.status = ANY (t.while_status));
        IF found_event IS NULL AND old_value IS NOT DISTINCT FROM new_value THEN
            CONTINUE;   -- the claim re-set on a letter in a state without such a move
        END IF;
        IF found_event IS NULL THEN
            IF NOT exempt THEN
                RAISE EXCEPTION 'letters.% may not move from % to % (letter %, status %)', col,
                    coalesce(old_value, 'NULL'), coalesce(new_value, 'NULL'), NEW.letter_id, OLD.status
                    USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'letters_state_machine',
                          TABLE = 'letters', COLUMN = col,
                          HINT = 'the allowed moves are in state_transitions (include/dijlepost/states.py)';
            END IF;
            found_event := 'state_changed';
        END IF;
        event := coalesce(event, found_event);   -- status first, then ebox_state, then print_status
    END LOOP;
    IF event IS NOT NULL THEN
        INSERT INTO letter_events (letter_id, event, details, dag_id, run_id, task_id, map_index, try_number)
        VALUES (NEW.letter_id, event,
                coalesce(ev -> 'details', jsonb_build_object('by', session_user::text,
                         'status', jsonb_build_array(OLD.status, NEW.status),
                         'ebox_state', jsonb_build_array(OLD.ebox_state, NEW.ebox_state),
                         'print_status', jsonb_build_array(OLD.print_status, NEW.print_status))),
                ev ->> 'dag_id', ev ->> 'run_id', coalesce(ev ->> 'task_id', CASE WHEN ev IS NULL THEN 'by hand' END),
                (ev ->> 'map_index')::integer, (ev ->> 'try_number')::integer);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER letters_state_machine_insert BEFORE INSERT ON letters
    FOR EACH ROW EXECUTE FUNCTION letters_state_machine();
-- Only an UPDATE that may be a move (or brings an event) runs the function: the many updates of a run
-- that move nothing (decisions, rendering, batch membership) cost no more than before.
CREATE TRIGGER letters_state_machine BEFORE UPDATE ON letters
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.ebox_state IS DISTINCT FROM NEW.ebox_state
          OR OLD.print_status IS DISTINCT FROM NEW.print_status
          OR OLD.claim_run_id IS DISTINCT FROM NEW.claim_run_id OR NEW.audit_event IS NOT NULL)
    EXECUTE FUNCTION letters_state_machine();

CREATE FUNCTION print_batches_state_machine() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF session_is_superuser() THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.status IS DISTINCT FROM (SELECT state FROM state_initial WHERE table_name = 'print_batches'
                                        AND column_name = 'status') THEN
            RAISE EXCEPTION 'a new print batch starts assigned (refused: %)', NEW.status
                USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'print_batches_state_machine';
        END IF;
    ELSIF OLD.status IS DISTINCT FROM NEW.status
          AND state_move_event('print_batches', 'status', OLD.status, NEW.status, NULL) IS NULL THEN
        RAISE EXCEPTION 'print_batches.status may not move from % to % (batch %)', OLD.status, NEW.status,
            NEW.batch_id
            USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'print_batches_state_machine';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER print_batches_state_machine BEFORE INSERT OR UPDATE OF status ON print_batches
    FOR EACH ROW EXECUTE FUNCTION print_batches_state_machine();

-- The one way for a login other than the owner to add an event that is not a move.
CREATE FUNCTION record_letter_event(p_letter_id text, p_event text, p_details jsonb, p_dag_id text,
                                    p_run_id text, p_task_id text, p_map_index integer, p_try_number integer)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF (EXISTS (SELECT 1 FROM state_transitions WHERE event = p_event) OR p_event = 'state_changed')
       AND NOT session_is_superuser() THEN
        RAISE EXCEPTION 'event % is written by the database with the move it records, never on its own',
            p_event
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO letter_events (letter_id, event, details, dag_id, run_id, task_id, map_index, try_number)
    VALUES (p_letter_id, p_event, coalesce(p_details, '{}'::jsonb), p_dag_id, p_run_id, p_task_id, p_map_index,
            p_try_number);
END $$;

-- The chain as in 0005, and a link brought by the writer is refused instead of overwritten.
CREATE OR REPLACE FUNCTION letter_events_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head record;
BEGIN
    IF (NEW.chain_seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL)
       AND NOT audit_break_glass() THEN
        RAISE EXCEPTION 'letter_events: the database computes chain_seq, prev_hash and hash; an event that '
                        'brings its own is refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- One writer at a time extends the chain; the lock is held until the transaction ends.
    PERFORM pg_advisory_xact_lock(1684630636, 7);
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

-- Department logins: the departments a login may write for, from its roles dijlepost_dept_<department>.
CREATE FUNCTION login_departments() RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(substr(rolname, length('dijlepost_dept_') + 1)), '{}')
      FROM pg_roles
     WHERE starts_with(rolname, 'dijlepost_dept_') AND pg_has_role(current_user, oid, 'USAGE')
$$;

DO $$
DECLARE
    fn text;
BEGIN
    -- Functions are executable by PUBLIC unless revoked; SECURITY DEFINER ones get a fixed search_path.
    FOREACH fn IN ARRAY ARRAY['letters_state_machine()',
                              'record_letter_event(text, text, jsonb, text, text, text, integer, integer)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', fn, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dijlepost_department') THEN
        -- A member of dijlepost_department inserts and reads the letters of its own department(s) only.
        EXECUTE 'CREATE POLICY letters_own_department ON letters AS RESTRICTIVE FOR ALL TO dijlepost_department '
                'USING (department = ANY ((SELECT login_departments())::text[])) '
                'WITH CHECK (department = ANY ((SELECT login_departments())::text[]))';
    ELSE
        RAISE WARNING 'role dijlepost_department is missing: ask a DBA (docs/letters-import.md), then rerun';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dijlepost_pipeline') THEN
        GRANT EXECUTE ON FUNCTION record_letter_event(text, text, jsonb, text, text, text, integer, integer)
            TO dijlepost_pipeline;
        REVOKE INSERT ON letter_events FROM dijlepost_pipeline;
        REVOKE DELETE, TRUNCATE ON letters FROM dijlepost_pipeline;
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON state_transitions, state_initial FROM dijlepost_pipeline;
        GRANT SELECT ON state_transitions, state_initial TO dijlepost_pipeline;
    END IF;
END $$;
