-- Version 2 of the outbox writers' horizon (decision 0024). The same rule as version 1, with
-- what it rests on now checked on every call instead of assumed:
--
-- * not on a server in recovery: a standby's lock table holds none of the primary's writers,
--   and a floor raised on the primary reaches it only later;
-- * in READ COMMITTED, so that each statement below takes a snapshot of its own;
-- * with the floor guard on the outbox (core migration 3), enabled ALWAYS: it is what makes
--   every row, whoever writes it, read the floor after its transaction id's lock exists.
--
-- Every row that can still appear sorts at or above the result H. Take a writer W whose row
-- commits after the caller's next statement began (so it is invisible to that read). The row
-- sorts at or above W's id X and at or above a floor F_W that W read after X's lock entered the
-- lock table (the guard). Either W read the floor after this function read or raised it: then
-- F_W is at least the floor here, at least H. Or W read it before: then X's lock, and W's lock
-- on the outbox (taken before any row is written), were in the lock table before this function
-- looked, and stay there until W's end is visible to snapshots, after the caller's read began.
-- So the look below finds W, and X, running at the new statement's snapshot, is either in its
-- list of running transactions (then H <= X) or at least its xmax (then H <= xmax <= X).
-- The caller must read the rows in a statement of its own, after this one returned.
CREATE OR REPLACE FUNCTION taskpool_outbox_horizon() RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    floor_now BIGINT;
    newest    BIGINT;
    horizon   BIGINT;
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'the outbox writers'' horizon cannot be taken on a server in recovery'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Point the relay at the primary server, not at a standby.';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'the outbox writers'' horizon needs READ COMMITTED, not %',
                current_setting('transaction_isolation')
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'taskpool_outbox'::regclass
                     AND tgname = 'taskpool_outbox_floor_guard' AND tgenabled = 'A') THEN
        RAISE EXCEPTION 'the outbox floor guard is missing or not enabled ALWAYS'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'ALTER TABLE taskpool_outbox ENABLE ALWAYS TRIGGER taskpool_outbox_floor_guard; '
                         'or run the relay with relay.horizon = "all-transactions".';
    END IF;
    -- Read under the sequence's buffer lock, as the writers read it: the two reads are ordered.
    floor_now := coalesce(pg_sequence_last_value('taskpool_outbox_floor'), 0);
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
        floor_now := setval('taskpool_outbox_floor',
                            greatest(coalesce(pg_sequence_last_value('taskpool_outbox_floor'), 0),
                                     pg_snapshot_xmax(pg_current_snapshot())::text::int8));
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

-- The version of the rule above, which a relay checks at start before it relies on it.
CREATE FUNCTION taskpool_outbox_horizon_version() RETURNS INTEGER
LANGUAGE sql IMMUTABLE AS 'SELECT 2';
