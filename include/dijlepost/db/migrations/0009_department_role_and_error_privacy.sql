-- Department systems and personal data in errors (docs/letters-import.md).
--
-- 1. Field limits. The lengths `letters import` enforces (include/dijlepost/intake.py, LIMITS) are
--    checked by the table as well, so a department system that inserts into `letters` itself meets
--    them too; the constraint's name says the field. NOT VALID: rows already there are not re-checked.
ALTER TABLE letters
    ADD CONSTRAINT letters_letter_type_length    CHECK (length(letter_type) <= 40) NOT VALID,
    ADD CONSTRAINT letters_recipient_id_length   CHECK (length(recipient_id) <= 32) NOT VALID,
    ADD CONSTRAINT letters_recipient_name_length CHECK (length(recipient_name) <= 200) NOT VALID,
    ADD CONSTRAINT letters_street_length         CHECK (length(street) <= 150) NOT VALID,
    ADD CONSTRAINT letters_postal_code_length    CHECK (length(postal_code) <= 12) NOT VALID,
    ADD CONSTRAINT letters_city_length           CHECK (length(city) <= 80) NOT VALID,
    ADD CONSTRAINT letters_country_length        CHECK (length(country) <= 2) NOT VALID,
    -- The payload's size as jsonb, twice the import's limit of 64 KiB of JSON text (the two are not byte for
    -- byte the same). pg_column_size reads a header instead of printing the jsonb, so the check costs
    -- nothing on the pipeline's many updates of a row; on insert the value is not compressed yet.
    ADD CONSTRAINT letters_payload_size          CHECK (pg_column_size(payload) <= 131072) NOT VALID;

-- 2. No row in an error. A constraint violation quotes the refused row in its DETAIL ("Failing row
--    contains (...)", "Key (...)=(...)"), to the client and into the server log, including every column
--    the role inserted. PostgreSQL leaves that DETAIL out whenever row-level security applies to the
--    table for the current role. So `letters` has row-level security, FORCEd so that it applies to the
--    table's owner too, and one policy that lets every role see and change every row: what a role may
--    do is still decided by its privileges alone. Only superusers and BYPASSRLS roles are exempt; the
--    pipeline, the import and the department systems must not use such a login (docs/letters-import.md).
ALTER TABLE letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE letters FORCE ROW LEVEL SECURITY;
CREATE POLICY letters_every_row ON letters USING (true) WITH CHECK (true);

-- 3. The department systems' role: INSERT of the contract columns of `letters` and SELECT of
--    `letter_id` alone (which `INSERT ... ON CONFLICT (letter_id) DO NOTHING` needs, so that a resent
--    letter is not an error); no other column can be read. Every other column keeps its default: a
--    letter inserted this way is `pending`. Production grants it to one login per department system
--    (docs/letters-import.md). Created only if missing, as in 0005.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dijlepost_department') THEN
        BEGIN
            CREATE ROLE dijlepost_department NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;   -- created meanwhile by another database
            WHEN insufficient_privilege THEN
                RAISE WARNING 'cannot create role dijlepost_department: ask a DBA (docs/letters-import.md)';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dijlepost_department') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO dijlepost_department', current_schema());
        GRANT INSERT (letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name, street,
                      postal_code, city, country, language, registered, payload)
            ON letters TO dijlepost_department;
        GRANT SELECT (letter_id) ON letters TO dijlepost_department;
        GRANT USAGE ON SEQUENCE letters_id_seq TO dijlepost_department;
    END IF;
END $$;

-- 4. The server log. Without DETAIL (2.) an error still logs the statement that failed
--    (log_min_error_statement), which holds the values when a client writes them into the SQL text
--    instead of sending parameters. For this database: errors logged tersely (no DETAIL, HINT, QUERY or
--    CONTEXT, e.g. the "JSON data, line 1: ..." of a bad payload) and no failing statement. Only a
--    superuser may set these; otherwise a warning says so and the DBA runs the two statements
--    (docs/letters-import.md). They apply to sessions that start afterwards.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET log_error_verbosity = terse', current_database());
    EXECUTE format('ALTER DATABASE %I SET log_min_error_statement = panic', current_database());
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE WARNING 'cannot set log_error_verbosity and log_min_error_statement for database %: '
                      'ask a DBA (docs/letters-import.md)', current_database();
END $$;
