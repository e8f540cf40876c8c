-- How far each relay has published: the last (tracking_xid, position) Kafka acknowledged.
CREATE TABLE taskpool_relay_position (
    relay_name   TEXT PRIMARY KEY,
    tracking_xid XID8 NOT NULL,
    position     BIGINT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Leader lease: one publishing process per relay name. The epoch grows with every change of
-- holder and fences position updates of a deposed leader.
CREATE TABLE taskpool_relay_lease (
    relay_name TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Outbox rows that can never be published (too large, invalid), with the reason.
CREATE TABLE taskpool_relay_dead_letters (
    relay_name        TEXT NOT NULL,
    position          BIGINT NOT NULL,
    event_id          UUID NOT NULL,
    aggregate_type    TEXT NOT NULL,
    aggregate_id      TEXT NOT NULL,
    aggregate_version BIGINT NOT NULL,
    event_type        TEXT NOT NULL,
    topic             TEXT NOT NULL,
    payload           BYTEA NOT NULL,
    headers           JSON NOT NULL,
    reason            TEXT NOT NULL,
    failed_at         TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (relay_name, position)
);
