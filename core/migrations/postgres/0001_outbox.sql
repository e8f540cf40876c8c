-- Current state of every aggregate, one row each; the row lock serializes writers.
CREATE TABLE taskpool_aggregates (
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    version        BIGINT NOT NULL CHECK (version > 0),
    -- The latest event (Avro single-object encoding); it carries the full state.
    state          BYTEA NOT NULL,
    -- Highest tracking_xid of this aggregate's outbox rows (see taskpool_outbox.tracking_xid).
    tracking_xid   XID8 NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Append-only outbox, written in the engine's transaction, read by the relay.
CREATE TABLE taskpool_outbox (
    position           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id     XID8 NOT NULL DEFAULT pg_current_xact_id(),
    -- Order key for readers: the writing transaction's id, raised to the previous event's
    -- tracking_xid of the same aggregate. A reader takes rows with tracking_xid below the oldest
    -- running transaction in (tracking_xid, position) order: no committed row can later appear
    -- behind that point, and an aggregate's events stay in version order even when the later
    -- transaction has the lower transaction id.
    tracking_xid       XID8 NOT NULL,
    event_id           UUID NOT NULL,
    aggregate_type     TEXT NOT NULL,
    aggregate_id       TEXT NOT NULL,
    aggregate_version  BIGINT NOT NULL,
    event_type         TEXT NOT NULL,
    schema_fingerprint BIGINT NOT NULL,
    payload            BYTEA NOT NULL,
    -- Message headers as a JSON object of strings; json, not jsonb: it is only ever read whole.
    headers            JSON NOT NULL DEFAULT '{}',
    created_at         TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (aggregate_type, aggregate_id, aggregate_version)
);

CREATE INDEX taskpool_outbox_tracking ON taskpool_outbox (tracking_xid, position);
