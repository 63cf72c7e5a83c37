-- The data keys of the people the roster records (crypto-shredding, runtime/personal.py): not
-- part of the log, so that erasing a person can destroy their key. Wrapped under the
-- university's personal-data key, which is a file beside the signing keys.
CREATE TABLE {schema}.personal_keys (
    subject_id   text        PRIMARY KEY,
    key_id       text        NOT NULL,
    wrapped_key  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    erased_at    timestamptz
);

-- The day a member was erased: every view shows them as erased from then on.
ALTER TABLE {schema}.members ADD COLUMN erased_on date;
ALTER TABLE {schema}.guides ADD COLUMN erased_on date;
