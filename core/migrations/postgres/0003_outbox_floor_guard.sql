-- The database itself keeps every outbox row at or above the floor (decision 0024), whoever
-- inserts it: a writer built on an older taskpool-core that never heard of the floor, a script,
-- an engine writing through SQL. The relay's horizon rests on two facts about each row:
--
-- * its tracking_xid is at least the writing transaction's own id, and
-- * at least a value of the floor read AFTER that id's lock entered the lock table.
--
-- The order matters: PostgreSQL shows a new transaction id to every new snapshot before it
-- inserts the id's lock (AssignTransactionId: GetNewTransactionId, then XactLockTableInsert).
-- A writer that read the floor before its id's lock existed can be invisible to the relay's
-- look at the lock table while it still holds a floor older than the one the relay just set.
-- pg_current_xact_id() returns only after the lock is in (it assigns the id when there is none),
-- so reading the floor after it, in the same expression, closes that window. GREATEST evaluates
-- its arguments from left to right; pg_sequence_last_value reads the sequence under its buffer
-- lock, so the read is ordered with the relay's setval.
--
-- The WHEN condition is that check itself, evaluated per row without calling a function: rows
-- that already respect it (taskpool-core's own statements compute the same value) pass at the
-- cost of one expression, and only the others are raised by the function. The sequence in the
-- condition is bound by its OID when the trigger is created.

CREATE FUNCTION taskpool_outbox_floor_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- First the transaction's own id: its lock is in the lock table once this returns.
    own xid8 := pg_current_xact_id();
    -- Then the floor, next to the outbox whatever the writer's search path.
    floor_now xid8 := pg_sequence_last_value(
        format('%I.taskpool_outbox_floor', TG_TABLE_SCHEMA)::regclass)::text::xid8;
BEGIN
    NEW.tracking_xid := greatest(NEW.tracking_xid, own, floor_now);
    RETURN NEW;
END
$$;

CREATE TRIGGER taskpool_outbox_floor_guard
    BEFORE INSERT ON taskpool_outbox
    FOR EACH ROW
    WHEN (NEW.tracking_xid < greatest(pg_current_xact_id(),
                                      pg_sequence_last_value('taskpool_outbox_floor')::text::xid8))
    EXECUTE FUNCTION taskpool_outbox_floor_guard();

-- ALWAYS: it fires also for sessions with session_replication_role = replica (restores,
-- replication appliers), which skip ordinary triggers.
ALTER TABLE taskpool_outbox ENABLE ALWAYS TRIGGER taskpool_outbox_floor_guard;
