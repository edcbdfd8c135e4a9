-- Departments are a table, seeded from `include/dijlepost/waves.py` by `dijlepost db migrate`
-- (`migrate.sync_departments`): adding a wave is one entry there, not a migration of CHECK lists.
CREATE TABLE departments (
    department   text PRIMARY KEY CHECK (department ~ '^[a-z][a-z0-9_]{0,39}$'),
    wave_number  integer NOT NULL,
    title        text NOT NULL,
    added_at     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO departments (department, wave_number, title) VALUES
    ('finance', 1, 'Wave 1: financial service'),
    ('gas', 2, 'Wave 2: municipal administrative sanctions (GAS)'),
    ('economy_housing', 3, 'Wave 3: Economy and Housing');

ALTER TABLE letters DROP CONSTRAINT letters_department_check;
ALTER TABLE letters ADD CONSTRAINT letters_department_fkey
    FOREIGN KEY (department) REFERENCES departments (department);
ALTER TABLE rollout_phases DROP CONSTRAINT rollout_phases_department_check;
ALTER TABLE rollout_phases ADD CONSTRAINT rollout_phases_department_fkey
    FOREIGN KEY (department) REFERENCES departments (department);

-- Until when the eBox keeps a published message (its `expirationDate`, from the message type's validity).
ALTER TABLE letters ADD COLUMN ebox_expires_at timestamptz;
