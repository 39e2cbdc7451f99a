-- locks-postgres: the lock tables (layout version 1). Idempotent: safe to run again.
--
--   psql "$DATABASE_URL" -v schema=public -f install.sql
--
-- The backend runs the same statements at connect (when its role may create tables);
-- `PostgresBackend::install_sql(schema)` prints them with the schema filled in.

-- The last fence handed out per lock name, for every kind of lease. Never deleted by the
-- backend: fences keep increasing for a name forever, across restarts (the table is durable).
CREATE TABLE IF NOT EXISTS :"schema".locks_fences (
    lock_prefix text   NOT NULL,
    lock_name   text   NOT NULL,
    last_fence  bigint NOT NULL CHECK (last_fence > 0),
    PRIMARY KEY (lock_prefix, lock_name)
);

-- One row per live lease, per writer's waiting mark, and per retired owner token (a token
-- released while it held nothing: a late acquire with it is refused until expires_at). A row
-- whose expires_at has passed
-- (by the server's clock_timestamp()) is dead: every operation ignores it, and the next
-- acquire of the same name deletes it.
CREATE TABLE IF NOT EXISTS :"schema".locks_leases (
    lock_prefix text        NOT NULL,
    lock_name   text        NOT NULL,
    kind        text        NOT NULL
        CHECK (kind IN ('mutex', 'permit', 'read', 'write', 'waiting', 'retired')),
    owner       uuid        NOT NULL,
    fence       bigint      NOT NULL CHECK (fence >= 0),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (lock_prefix, lock_name, kind, owner)
);

-- At most one mutex lease, one writer and one waiting mark per name, whatever the code does.
CREATE UNIQUE INDEX IF NOT EXISTS locks_leases_one_holder
    ON :"schema".locks_leases (lock_prefix, lock_name, kind)
    WHERE kind IN ('mutex', 'write', 'waiting');
