-- The horizon below which every outbox row is final, held back only by transactions that write
-- to the outbox (decision 0024). Every row that can still appear sorts at or above the result:
--
-- * a transaction holding its write lock on taskpool_outbox now sorts its rows at or above its
--   own id, and the result is at most the oldest such id;
-- * a transaction that takes that lock later reads the floor after it, and the floor was raised
--   to the result or above before the locks were looked at (rows take at least the floor);
-- * a transaction that held the lock and released it has ended: its rows are visible to the
--   caller's next statement, or rolled back.
--
-- The caller must read the rows in a statement of its own, after this one returned.
CREATE FUNCTION taskpool_outbox_horizon() RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    floor_now BIGINT;
    newest    BIGINT;
    horizon   BIGINT;
BEGIN
    SELECT last_value INTO floor_now FROM taskpool_outbox_floor;
    -- The newest committed row's order key, from the end of the index. (A query comparing with
    -- floor_now would get a generic plan after a few calls, and that plan scans the table.)
    -- ORDER BY names the table's column: the converted output has the same name.
    SELECT o.tracking_xid::text::int8 INTO newest FROM taskpool_outbox o
      ORDER BY o.tracking_xid DESC LIMIT 1;
    -- Raise the floor only when a committed row sorts at or above it: an idle outbox costs no
    -- write. setval takes a transaction id; its commit need not wait for the disk (after a
    -- crash every new transaction id is above any floor set before it).
    IF newest >= floor_now THEN
        SET LOCAL synchronous_commit = off;
        -- Two relays (a leader and one taking over) must never move the floor back.
        PERFORM pg_advisory_xact_lock(hashtext('taskpool_outbox_floor'));
        SELECT setval('taskpool_outbox_floor',
                      greatest(last_value, pg_snapshot_xmax(pg_current_snapshot())::text::int8))
          INTO floor_now FROM taskpool_outbox_floor;
    END IF;
    -- A new statement, so a new snapshot: its list of running transactions turns the 32-bit ids
    -- pg_locks shows into full ones. A writer whose id is not in the list got it after the
    -- snapshot, so it is at least the snapshot's xmax, which bounds the result too.
    WITH locks AS MATERIALIZED (
        SELECT locktype, database, relation, mode, granted, virtualtransaction, transactionid
        FROM pg_locks
    ), writers AS (
        SELECT t.transactionid::text::int8 AS xid
        FROM locks r JOIN locks t ON t.virtualtransaction = r.virtualtransaction
        WHERE r.locktype = 'relation'
          AND r.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND r.relation = 'taskpool_outbox'::regclass
          AND r.mode = 'RowExclusiveLock' AND r.granted
          AND t.locktype = 'transactionid'
    ), snapshot AS (
        SELECT pg_current_snapshot() AS s
    )
    SELECT least(floor_now, pg_snapshot_xmax(s)::text::int8,
                 (SELECT min(x::text::int8) FROM pg_snapshot_xip(s) AS x
                  WHERE x::text::int8 % 4294967296 IN (SELECT xid FROM writers)))
      INTO horizon
      FROM snapshot;
    RETURN horizon;
END
$$;
