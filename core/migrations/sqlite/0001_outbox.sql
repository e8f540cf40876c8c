-- Current state of every aggregate, one row each. SQLite serializes writers itself.
CREATE TABLE taskpool_aggregates (
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    version        INTEGER NOT NULL CHECK (version > 0),
    -- The latest event (Avro single-object encoding); it carries the full state.
    state          BLOB NOT NULL,
    updated_at     INTEGER NOT NULL, -- Unix milliseconds
    PRIMARY KEY (aggregate_type, aggregate_id)
) WITHOUT ROWID;

-- Append-only outbox. One writer at a time means position order is commit order;
-- AUTOINCREMENT keeps positions from being reused after retention deletes old rows.
CREATE TABLE taskpool_outbox (
    position           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id           TEXT NOT NULL,
    aggregate_type     TEXT NOT NULL,
    aggregate_id       TEXT NOT NULL,
    aggregate_version  INTEGER NOT NULL,
    event_type         TEXT NOT NULL,
    schema_fingerprint INTEGER NOT NULL,
    payload            BLOB NOT NULL,
    headers            TEXT NOT NULL DEFAULT '{}',
    created_at         INTEGER NOT NULL, -- Unix milliseconds
    UNIQUE (aggregate_type, aggregate_id, aggregate_version)
);
