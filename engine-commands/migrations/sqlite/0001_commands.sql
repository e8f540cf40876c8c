-- Every command this engine decided, so a redelivered command is answered, not applied again.
-- Written in the transaction that applies the command (with the engine's changes and events).
CREATE TABLE taskpool_processed_commands (
    command_id   TEXT PRIMARY KEY,
    task_id      TEXT NOT NULL,
    result       TEXT NOT NULL,        -- applied or rejected
    reason       TEXT,
    task_version INTEGER,
    processed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Command messages that could not be decoded, with the reason; they are never applied.
CREATE TABLE taskpool_command_dead_letters (
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    "offset"    INTEGER NOT NULL,
    key         TEXT,
    payload     BLOB,
    reason      TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (topic, partition, "offset")
);
