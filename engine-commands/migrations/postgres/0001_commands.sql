-- Every command this engine decided, so a redelivered command is answered, not applied again.
-- Written in the transaction that applies the command (with the engine's changes and events).
CREATE TABLE taskpool_processed_commands (
    command_id   TEXT PRIMARY KEY,     -- the UUID as text, as on the wire
    task_id      TEXT NOT NULL,
    result       TEXT NOT NULL,        -- applied or rejected
    reason       TEXT,
    task_version BIGINT,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Command messages that could not be decoded, with the reason; they are never applied.
CREATE TABLE taskpool_command_dead_letters (
    topic       TEXT NOT NULL,
    partition   INT NOT NULL,
    "offset"    BIGINT NOT NULL,
    key         TEXT,
    payload     BYTEA,
    reason      TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (topic, partition, "offset")
);
