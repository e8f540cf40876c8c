-- Plans. PostgreSQL plans a PL/pgSQL statement afresh for each of its first five calls in a
-- session (a custom plan); the state's query costs 0.4 ms to plan and 0.04 ms to run, and an
-- engine's pool has many sessions: so generic plans (plan_cache_mode), made once per session
-- with the statistics of that moment. Every lookup here is by key, and each is written so that
-- exactly one index can serve it, with sequential scans ruled out: on an engine with few open
-- tasks and many finished, the statistics describe tables of a row or two whose pages and
-- indexes are swollen with the rows churned since autovacuum's last pass, and a plan made from
-- them read whole tables (or another index whole, for the ordering of a join) at every call,
-- slower the longer since that pass. So no joins (a scalar subquery for the business key), and
-- the allowed names compared in the "C" collation (the same equality) so that only the unique
-- (var_scope_, name_) index can serve the variables. JIT is off for the state: compiling its
-- query takes 300 ms, at every call, once a plan's estimated cost passes jit_above_cost (as
-- when the settings table, never analyzed, was thought to hold 870 rows, each running the
-- subqueries; the installer now analyzes it). Kept raw on purpose: the state is read in the
-- engine's commit, and most of a query's cost per call is setting up its expressions, so the
-- shaping (names, zones, allow list per process) is left to the drain (taskpool_camunda_shape).

-- An older installation queued events through this function, compared at the engine's commit.
DROP FUNCTION IF EXISTS taskpool_camunda_queue(TEXT, TEXT, JSONB);

-- The lock of a process instance's variables and business key, which are part of every one of
-- its tasks' states. A commit that changed them takes it before it looks for the instance's
-- tasks; a commit that queues a task's state takes it before reading the state, and before the
-- task's own lock (always in this order, so that the two cannot wait for each other). Held to
-- the end of the commit, it makes the second of two such commits wait for the first: without
-- it, a variable's commit could look for the instance's tasks before a new task's commit
-- ended, while the new task's commit read the variable before the first ended, and the task
-- kept the old value.
CREATE OR REPLACE FUNCTION taskpool_camunda_instance_lock(instance TEXT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('taskpool camunda instance ' || instance, 0)
$$;

-- What older installations had (functions since replaced, triggers with WHEN clauses).
DROP FUNCTION IF EXISTS taskpool_camunda_touch(TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_touch(TEXT, TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_sync(TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_state(TEXT);
DROP TRIGGER IF EXISTS taskpool_capture_identity_link_updated ON act_ru_identitylink;
DROP TRIGGER IF EXISTS taskpool_capture_identity_link_removed ON act_ru_identitylink;
DROP TRIGGER IF EXISTS taskpool_capture_variable_removed ON act_ru_variable;

-- Queues a task's state as its transaction leaves it: `camunda-row` with its rows, or
-- `camunda-ended` with the history's reason once the task row is gone. The drain shapes the
-- rows, compares them with the task's last state and records what changed (decision 0027):
-- shaping, comparison, form key and the last state's write are kept out of the engine's commit.
-- Called once per task and transaction: it notes each task it queued in a transaction-local
-- setting, `taskpool.synced_tasks` (no write, unlike a table; each id between two commas),
-- which the triggers check first.
--
-- `seen_instance` is the process instance the caller saw the task in ('' for a task of no
-- process: a task never moves to another instance), or null when it does not know (an identity
-- link's event), and then it is looked up. A task whose row is gone takes its locks with it,
-- in the same order as a living task: a commit that ends a task and then changes a variable of
-- its instance would otherwise hold the task's lock while it waits for the instance's, held by
-- a commit waiting for the task's. Gone and with no instance known, nothing is queued (false):
-- the task's own event in the same commit, which knows its instance, or the commit that removed
-- the row queues its ending. No default for `seen_instance`: an older installer run over this
-- one creates sync(TEXT) again, and a call naming the task alone must then not be ambiguous.
--
-- Here and in the triggers, a call whose result does not matter is assigned (`unused := f(..)
-- IS NULL`): PERFORM runs its call as a query, starting an executor. A call is made in an IF
-- of its own after the checks that skip it: SQL does not promise AND's order of evaluation.
CREATE OR REPLACE FUNCTION taskpool_camunda_sync(task TEXT, seen_instance TEXT)
RETURNS BOOLEAN
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET jit = off SET enable_seqscan = off
SET datestyle = 'ISO' AS $$
DECLARE
    instance TEXT := nullif(seen_instance, '');
    unused   BOOLEAN;
BEGIN
    IF seen_instance IS NULL THEN
        SELECT t.proc_inst_id_ INTO instance FROM act_ru_task t WHERE t.id_ = task;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
    END IF;
    IF instance IS NOT NULL THEN
        unused := pg_advisory_xact_lock(taskpool_camunda_instance_lock(instance)) IS NULL;
    END IF;
    -- The lock taskpool_record_task_event takes (core migration 4): recorders of one task,
    -- this capture or other callers, queue in commit order, so the drain compares each state
    -- with the one committed before it.
    unused := pg_advisory_xact_lock(hashtextextended('taskpool task ' || task, 0)) IS NULL;
    -- Read under the locks, in one statement (each statement's start costs more than its
    -- lookups): the task's columns (a taskpool_camunda_task's text), its process instance's
    -- business key, its candidate links ([user, group]) and its process instance's allowed
    -- variables ([name, type, text, long, double]), kept raw (the shaping is the drain's).
    INSERT INTO taskpool_capture (aggregate_type, aggregate_id, kind, fields)
    SELECT 'task', task, 'camunda-row', jsonb_build_object('task', ROW(t.id_, t.proc_inst_id_,
            t.case_inst_id_, t.execution_id_, t.case_execution_id_, t.proc_def_id_,
            t.case_def_id_, t.tenant_id_, t.task_def_key_, t.name_, t.description_,
            t.priority_, t.create_time_, t.due_date_, t.follow_up_date_, t.assignee_,
            t.owner_)::text,
        'businessKey', (SELECT e.business_key_ FROM act_ru_execution e
                        WHERE e.id_ = t.proc_inst_id_),
        'links', ARRAY(SELECT ARRAY[l.user_id_, l.group_id_] FROM act_ru_identitylink l
                       WHERE l.task_id_ = t.id_ AND l.type_ = 'candidate'),
        -- The process instance's own variables: their scope is its execution (a task's local
        -- variables have the task as their scope).
        'variables', ARRAY(SELECT ARRAY[v.name_, v.type_, v.text_, v.long_::text,
                                        v.double_::text]
                           FROM act_ru_variable v
                           WHERE v.var_scope_ = t.proc_inst_id_
                             AND v.name_ COLLATE "C" = ANY (
                                 taskpool_camunda_allowed_variables())))
    FROM act_ru_task t
    WHERE t.id_ = task;
    IF NOT FOUND THEN
        RETURN taskpool_camunda_sync_ended(task, NULL);
    END IF;
    unused := set_config('taskpool.synced_tasks', coalesce(current_setting(
        'taskpool.synced_tasks', true), '') || ',' || task || ',', true) IS NULL;
    RETURN true;
END
$$;

-- Queues the ending of a task whose row the caller saw deleted, unless the row is there again
-- (then its state, through taskpool_camunda_sync): why it ended is the history row written in
-- the same transaction (none at history level none). Apart from taskpool_camunda_sync, whose
-- statement reading a state costs several times this one. `instance` as for
-- taskpool_camunda_sync; null: the caller holds the locks.
CREATE OR REPLACE FUNCTION taskpool_camunda_sync_ended(task TEXT, instance TEXT)
RETURNS BOOLEAN
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET jit = off SET enable_seqscan = off AS $$
DECLARE
    unused BOOLEAN;
BEGIN
    IF instance <> '' THEN
        unused := pg_advisory_xact_lock(taskpool_camunda_instance_lock(instance)) IS NULL;
    END IF;
    IF instance IS NOT NULL THEN
        unused := pg_advisory_xact_lock(hashtextextended('taskpool task ' || task, 0)) IS NULL;
    END IF;
    INSERT INTO taskpool_capture (aggregate_type, aggregate_id, kind, fields)
    SELECT 'task', task, 'camunda-ended', jsonb_build_object('reason',
               (SELECT h.delete_reason_ FROM act_hi_taskinst h WHERE h.id_ = task))
    WHERE NOT EXISTS (SELECT FROM act_ru_task t WHERE t.id_ = task);
    IF FOUND THEN
        unused := set_config('taskpool.synced_tasks', coalesce(current_setting(
            'taskpool.synced_tasks', true), '') || ',' || task || ',', true) IS NULL;
        RETURN true;
    END IF;
    -- The locks are held by now: '' keeps sync from looking the instance up.
    RETURN taskpool_camunda_sync(task, coalesce(instance, ''));
END
$$;

-- The tasks of a process instance whose variables or business key the commit changed, each
-- queued once; the instance is then noted as done (`taskpool.synced_instances`), so that its
-- further variables in the same commit do not look for its tasks again (at commit, the tasks
-- found are the final ones).
CREATE OR REPLACE FUNCTION taskpool_camunda_instance_changed(instance TEXT) RETURNS VOID
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
DECLARE
    done   TEXT := coalesce(current_setting('taskpool.synced_tasks', true), '');
    task   TEXT;
    unused BOOLEAN;
BEGIN
    -- Before looking for the instance's tasks (a new snapshot, once the lock is held).
    unused := pg_advisory_xact_lock(taskpool_camunda_instance_lock(instance)) IS NULL;
    FOR task IN SELECT t.id_ FROM act_ru_task t WHERE t.proc_inst_id_ = instance LOOP
        IF strpos(done, ',' || task || ',') = 0 THEN
            unused := taskpool_camunda_sync(task, instance);
        END IF;
    END LOOP;
    unused := set_config('taskpool.synced_instances', coalesce(current_setting(
        'taskpool.synced_instances', true), '') || ',' || instance || ',', true) IS NULL;
END
$$;

-- The triggers have no WHEN clauses: PostgreSQL parses a trigger's WHEN clause again for every
-- statement on its table (the engine's inserts of variables, its updates of executions), which
-- cost more than calling the trigger function at commit for each row and returning early.
CREATE OR REPLACE FUNCTION taskpool_camunda_task_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    unused BOOLEAN;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF strpos(coalesce(current_setting('taskpool.synced_tasks', true), ''),
                  ',' || OLD.id_ || ',') = 0 THEN
            unused := taskpool_camunda_sync_ended(OLD.id_, coalesce(OLD.proc_inst_id_, ''));
        END IF;
    ELSIF strpos(coalesce(current_setting('taskpool.synced_tasks', true), ''),
                 ',' || NEW.id_ || ',') = 0 THEN
        unused := taskpool_camunda_sync(NEW.id_, coalesce(NEW.proc_inst_id_, ''));
    END IF;
    RETURN NULL;
END
$$;

-- The tasks this transaction deleted, noted at once rather than at its commit: a task's
-- candidate links are deleted before it (their key refers to it), and their events need not
-- look for a task whose own event queues its ending.
CREATE OR REPLACE FUNCTION taskpool_camunda_task_deleted() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    unused BOOLEAN;
BEGIN
    unused := set_config('taskpool.deleted_tasks', coalesce(current_setting(
        'taskpool.deleted_tasks', true), '') || ',' || OLD.id_ || ',', true) IS NULL;
    RETURN NULL;
END
$$;

-- Only a task's candidate links matter (a process definition's starters do not).
CREATE OR REPLACE FUNCTION taskpool_camunda_link_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    unused BOOLEAN;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        IF OLD.type_ = 'candidate'
           AND strpos(coalesce(current_setting('taskpool.synced_tasks', true), ''),
                      ',' || OLD.task_id_ || ',') = 0
           AND strpos(coalesce(current_setting('taskpool.deleted_tasks', true), ''),
                      ',' || OLD.task_id_ || ',') = 0 THEN
            unused := taskpool_camunda_sync(OLD.task_id_, NULL);
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF NEW.type_ = 'candidate' AND strpos(coalesce(current_setting(
               'taskpool.synced_tasks', true), ''), ',' || NEW.task_id_ || ',') = 0 THEN
            unused := taskpool_camunda_sync(NEW.task_id_, NULL);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- Of the executions, only a process instance's business key matters, and whether the instance
-- is new: every task of an instance started in this commit is new too, queued by its own event
-- with the variables as the commit leaves them, so the instance is noted as done (its
-- variables' events, which come after its own, need not look for its tasks).
CREATE OR REPLACE FUNCTION taskpool_camunda_execution_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    unused BOOLEAN;
BEGIN
    IF NEW.id_ = NEW.proc_inst_id_ AND strpos(coalesce(current_setting(
           'taskpool.synced_instances', true), ''), ',' || NEW.id_ || ',') = 0 THEN
        IF TG_OP = 'INSERT' THEN
            unused := set_config('taskpool.synced_instances', coalesce(current_setting(
                'taskpool.synced_instances', true), '') || ',' || NEW.id_ || ',', true) IS NULL;
        ELSIF OLD.business_key_ IS DISTINCT FROM NEW.business_key_ THEN
            unused := taskpool_camunda_instance_changed(NEW.id_) IS NULL;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS taskpool_capture_task ON act_ru_task;
CREATE CONSTRAINT TRIGGER taskpool_capture_task
    AFTER INSERT OR UPDATE OR DELETE ON act_ru_task
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION taskpool_camunda_task_changed();
DROP TRIGGER IF EXISTS taskpool_capture_task_deleted ON act_ru_task;
CREATE TRIGGER taskpool_capture_task_deleted
    AFTER DELETE ON act_ru_task FOR EACH ROW
    EXECUTE FUNCTION taskpool_camunda_task_deleted();
DROP TRIGGER IF EXISTS taskpool_capture_identity_link ON act_ru_identitylink;
CREATE CONSTRAINT TRIGGER taskpool_capture_identity_link
    AFTER INSERT OR UPDATE OR DELETE ON act_ru_identitylink
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION taskpool_camunda_link_changed();
DROP TRIGGER IF EXISTS taskpool_capture_execution ON act_ru_execution;
CREATE CONSTRAINT TRIGGER taskpool_capture_execution
    AFTER INSERT OR UPDATE ON act_ru_execution
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION taskpool_camunda_execution_changed();

-- The variables' trigger and function, made once the allowed names are known (written into the
-- function: reading them would be a statement per row); with none allowed, no trigger at all.
-- The names are also the constant of taskpool_camunda_allowed_variables, which the state's
-- query reads when it is planned (an immutable function's result is folded into the plan).
-- Replacing the function makes the plans of the queries that call it be made again: a cached
-- query depends on each user-defined function it calls (plancache.c, through
-- extract_query_dependencies), folded away or not.
CREATE OR REPLACE FUNCTION taskpool_camunda_watch_variables() RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    names TEXT[] := ARRAY(SELECT DISTINCT variable_name FROM taskpool_camunda_variables
                          ORDER BY variable_name);
BEGIN
    EXECUTE format($function$
        CREATE OR REPLACE FUNCTION taskpool_camunda_allowed_variables() RETURNS TEXT[]
        LANGUAGE sql IMMUTABLE AS $body$ SELECT %L::text[] $body$
    $function$, names);
    DROP TRIGGER IF EXISTS taskpool_capture_variable ON act_ru_variable;
    DROP TRIGGER IF EXISTS taskpool_capture_variable_removed ON act_ru_variable;
    IF cardinality(names) = 0 THEN
        RETURN;
    END IF;
    EXECUTE format($function$
        CREATE OR REPLACE FUNCTION taskpool_camunda_variable_changed() RETURNS TRIGGER
        LANGUAGE plpgsql AS $body$
        DECLARE
            unused BOOLEAN;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                IF OLD.name_ = ANY (%1$L::text[]) AND OLD.proc_inst_id_ IS NOT NULL
                   AND strpos(coalesce(current_setting('taskpool.synced_instances', true), ''),
                              ',' || OLD.proc_inst_id_ || ',') = 0 THEN
                    unused := taskpool_camunda_instance_changed(OLD.proc_inst_id_) IS NULL;
                END IF;
            ELSIF NEW.name_ = ANY (%1$L::text[]) AND NEW.proc_inst_id_ IS NOT NULL
                  AND strpos(coalesce(current_setting('taskpool.synced_instances', true), ''),
                             ',' || NEW.proc_inst_id_ || ',') = 0 THEN
                unused := taskpool_camunda_instance_changed(NEW.proc_inst_id_) IS NULL;
            END IF;
            RETURN NULL;
        END
        $body$
    $function$, names);
    CREATE CONSTRAINT TRIGGER taskpool_capture_variable
        AFTER INSERT OR UPDATE OR DELETE ON act_ru_variable
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
        EXECUTE FUNCTION taskpool_camunda_variable_changed();
END
$$;
