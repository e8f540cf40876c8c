-- Capture for Camunda 7 and Operaton (decision 0027): triggers on the engine's own tables that
-- queue, in the engine's transaction, the state of each task it changed, in the queue of
-- taskpool_record_task_event (core migration 4). Installed by `kafka-relay capture install`;
-- every object is named taskpool_*, and uninstalling drops exactly these. Running it again
-- changes nothing.
--
-- The triggers are deferred constraint triggers: they run at the engine's commit, after all its
-- statements, so they see each task as the transaction leaves it (its identity links, its
-- process instance's variables, and, for an ended task, the history row saying why it ended).
-- taskpool_camunda_sync queues that state once per task and transaction; the drain compares it
-- with the last state it saw of the task (taskpool_camunda_tasks) and records what changed.

CREATE TABLE IF NOT EXISTS taskpool_camunda_settings (
    -- The application name the tasks carry: tasklist actions are addressed to it.
    application TEXT NOT NULL,
    -- The engine writes local times without a zone; they are read in this zone.
    time_zone   TEXT NOT NULL DEFAULT 'UTC',
    singleton   BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton)
);

-- Present while what the engine did with the capture away (uninstalled, or detached by an
-- uninstall that did not finish) is still to be caught up by the installer.
CREATE TABLE IF NOT EXISTS taskpool_camunda_catching_up (
    -- Which install put it: the one that catches up removes only its own.
    mark      TEXT NOT NULL DEFAULT gen_random_uuid()::text,
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton)
);

-- Which process variables become a task's payload, per process definition key.
CREATE TABLE IF NOT EXISTS taskpool_camunda_variables (
    process_definition_key TEXT NOT NULL,
    variable_name          TEXT NOT NULL,
    PRIMARY KEY (process_definition_key, variable_name)
);

-- The last state the drain compared of each active task (written by the drain, in its own
-- transaction: the engine's transaction only queues the state).
CREATE TABLE IF NOT EXISTS taskpool_camunda_tasks (
    task_id   TEXT PRIMARY KEY,
    captured  JSONB NOT NULL
);
-- An older installation compared at the engine's commit and noted the transaction (altered
-- only then: an ALTER locks the table out, even when it changes nothing).
DO $$
BEGIN
    IF EXISTS (SELECT FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'taskpool_camunda_tasks'
                 AND column_name = 'synced_in') THEN
        ALTER TABLE taskpool_camunda_tasks DROP COLUMN synced_in;
    END IF;
END
$$;

-- Replaced by the conversion inside taskpool_camunda_shape (an older installation had it).
DROP FUNCTION IF EXISTS taskpool_camunda_time(TIMESTAMP);

-- The form keys of deployed process definitions' user tasks (null: none), read from their BPMN
-- once per definition: a deployed definition never changes, and parsing its XML for every new
-- task would cost more than everything else the capture does.
CREATE TABLE IF NOT EXISTS taskpool_camunda_form_keys (
    definition_id TEXT NOT NULL,
    task_key      TEXT NOT NULL,
    form_key      TEXT,
    PRIMARY KEY (definition_id, task_key)
);

-- The form key of a user task, from the BPMN of its process definition. Called by the drain: a
-- model it cannot read (not UTF-8, not XML) counts as naming no form key, rather than stopping
-- every drain.
CREATE OR REPLACE FUNCTION taskpool_camunda_form_key(definition_id TEXT, task_key TEXT)
RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    known TEXT;
BEGIN
    SELECT k.form_key INTO known FROM taskpool_camunda_form_keys k
        WHERE k.definition_id = $1 AND k.task_key = $2;
    IF FOUND THEN
        RETURN known;
    END IF;
    BEGIN
        PERFORM taskpool_camunda_read_form_keys($1);
    EXCEPTION WHEN others THEN
        NULL; -- remembered below as having none
    END;
    -- A task the model does not name (or no model): remembered as having no form key.
    INSERT INTO taskpool_camunda_form_keys (definition_id, task_key, form_key)
    VALUES ($1, $2, NULL) ON CONFLICT DO NOTHING;
    SELECT k.form_key INTO known FROM taskpool_camunda_form_keys k
        WHERE k.definition_id = $1 AND k.task_key = $2;
    RETURN known;
END
$$;

-- The form keys of every user task of a process definition's BPMN, remembered.
CREATE OR REPLACE FUNCTION taskpool_camunda_read_form_keys(definition_id TEXT)
RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO taskpool_camunda_form_keys (definition_id, task_key, form_key)
    SELECT $1, (xpath('/*/@id', node))[1]::text,
           coalesce((xpath('/*/@operaton:formKey', node, ns))[1],
                    (xpath('/*/@camunda:formKey', node, ns))[1])::text
    FROM (SELECT convert_from(b.bytes_, 'UTF8')::xml AS model,
                 ARRAY[ARRAY['bpmn', 'http://www.omg.org/spec/BPMN/20100524/MODEL'],
                       ARRAY['operaton', 'http://operaton.org/schema/1.0/bpmn'],
                       ARRAY['camunda', 'http://camunda.org/schema/1.0/bpmn']] AS ns
          FROM act_re_procdef d
          JOIN act_ge_bytearray b
            ON b.deployment_id_ = d.deployment_id_ AND b.name_ = d.resource_name_
          WHERE d.id_ = $1) AS m,
         unnest(xpath('//bpmn:userTask', model, ns)) AS node
    ON CONFLICT DO NOTHING;
END
$$;

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

-- A task's rows (queued by taskpool_camunda_sync) in the fields of a "created" event but the
-- form key, or null when they cannot be shaped (the drain dead-letters them rather than failing
-- every drain on them): called by the drain, once per batch, outside the engine's commit.
CREATE OR REPLACE FUNCTION taskpool_camunda_shape(raw JSONB) RETURNS JSONB
LANGUAGE plpgsql STABLE SET jit = off AS $$
BEGIN
    RETURN (SELECT jsonb_strip_nulls(jsonb_build_object(
        -- A task of no process (a standalone task, or a CMMN case task of Camunda 7) is its
        -- own instance (or its case's), and carries a process definition key no BPMN process
        -- can have (an id is an XML name: no parentheses).
        'sourceReference', jsonb_build_object(
            'processInstanceId', coalesce(t.proc_inst_id_, t.case_inst_id_, t.id_),
            'executionId', coalesce(t.execution_id_, t.case_execution_id_, t.id_),
            'processDefinitionId', coalesce(t.proc_def_id_, t.case_def_id_, ''),
            'processDefinitionKey', coalesce(d.key_,
                CASE WHEN t.proc_def_id_ IS NULL THEN '(standalone)' END, ''),
            'processName', coalesce(d.name_, d.key_, ''),
            'applicationName', s.application,
            'tenantId', t.tenant_id_),
        'taskDefinitionKey', coalesce(t.task_def_key_, t.id_),
        'name', coalesce(nullif(t.name_, ''), t.task_def_key_, t.id_),
        'description', t.description_,
        'priority', t.priority_,
        'createTime', (extract(epoch FROM t.create_time_ AT TIME ZONE s.time_zone) * 1000)::int8,
        'dueDate', (extract(epoch FROM t.due_date_ AT TIME ZONE s.time_zone) * 1000)::int8,
        'followUpDate', (extract(epoch FROM t.follow_up_date_ AT TIME ZONE s.time_zone) * 1000)::int8,
        'assignee', nullif(t.assignee_, ''),
        'owner', nullif(t.owner_, ''),
        'businessKey', raw->>'businessKey'))
        || jsonb_build_object(
        'candidateUsers', coalesce((SELECT jsonb_agg(DISTINCT l->>0 ORDER BY l->>0)
                                    FROM jsonb_array_elements(raw->'links') l
                                    WHERE l->>0 IS NOT NULL), '[]'),
        'candidateGroups', coalesce((SELECT jsonb_agg(DISTINCT l->>1 ORDER BY l->>1)
                                     FROM jsonb_array_elements(raw->'links') l
                                     WHERE l->>1 IS NOT NULL), '[]'),
        'payload', coalesce((SELECT jsonb_object_agg(v->>0, CASE v->>1
                WHEN 'string' THEN to_jsonb(v->>2)
                WHEN 'boolean' THEN to_jsonb((v->>3)::int8 = 1)
                WHEN 'double' THEN to_jsonb((v->>4)::float8)
                WHEN 'date' THEN to_jsonb(to_char(to_timestamp((v->>3)::int8 / 1000.0) AT TIME ZONE 'UTC',
                                                  'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
                WHEN 'null' THEN 'null'::jsonb
                ELSE to_jsonb((v->>3)::int8) END)
            FROM jsonb_array_elements(raw->'variables') v
            JOIN taskpool_camunda_variables a
              ON a.process_definition_key = d.key_ AND a.variable_name = v->>0
            WHERE v->>1 IN ('string', 'integer', 'long', 'short', 'double', 'boolean', 'date',
                            'null')),
            '{}'))
    FROM jsonb_populate_record(NULL::act_ru_task, raw->'task') AS t
    -- The engine writes local times without a zone; they are read in the settings' zone.
    CROSS JOIN taskpool_camunda_settings s
    LEFT JOIN act_re_procdef d ON d.id_ = t.proc_def_id_);
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

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
-- Called once per task and transaction: the tasks done are kept in a transaction-local setting,
-- `taskpool.synced_tasks` (no write, unlike a table), which the triggers check first.
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
SET plan_cache_mode = force_generic_plan SET jit = off SET enable_seqscan = off AS $$
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
    -- lookups): the task row whole, its process instance's business key, its candidate links
    -- ([user, group]) and its process instance's allowed variables ([name, type, text, long,
    -- double]), kept raw (the shaping is the drain's).
    INSERT INTO taskpool_capture (aggregate_type, aggregate_id, kind, fields)
    SELECT 'task', task, 'camunda-row', jsonb_build_object('task', to_jsonb(t),
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
                             AND v.name_ COLLATE "C" = ANY (ARRAY(
                                 SELECT a.variable_name FROM taskpool_camunda_variables a))))
    FROM act_ru_task t
    WHERE t.id_ = task;
    IF NOT FOUND THEN
        unused := taskpool_camunda_sync_ended(task, NULL);
    END IF;
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
    done   TEXT := coalesce(nullif(current_setting('taskpool.synced_tasks', true), ''), ',');
    task   TEXT;
    unused BOOLEAN;
BEGIN
    -- Before looking for the instance's tasks (a new snapshot, once the lock is held).
    unused := pg_advisory_xact_lock(taskpool_camunda_instance_lock(instance)) IS NULL;
    FOR task IN SELECT t.id_ FROM act_ru_task t WHERE t.proc_inst_id_ = instance LOOP
        IF strpos(done, ',' || task || ',') = 0 THEN
            IF taskpool_camunda_sync(task, instance) THEN
                done := done || task || ',';
            END IF;
        END IF;
    END LOOP;
    done := set_config('taskpool.synced_tasks', done, true);
    done := set_config('taskpool.synced_instances', coalesce(nullif(current_setting(
        'taskpool.synced_instances', true), ''), ',') || instance || ',', true);
END
$$;

-- The triggers have no WHEN clauses: PostgreSQL parses a trigger's WHEN clause again for every
-- statement on its table (the engine's inserts of variables, its updates of executions), which
-- cost more than calling the trigger function at commit for each row and returning early.
CREATE OR REPLACE FUNCTION taskpool_camunda_task_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    done TEXT := coalesce(nullif(current_setting('taskpool.synced_tasks', true), ''), ',');
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF strpos(done, ',' || OLD.id_ || ',') = 0 THEN
            IF taskpool_camunda_sync_ended(OLD.id_, coalesce(OLD.proc_inst_id_, '')) THEN
                done := set_config('taskpool.synced_tasks', done || OLD.id_ || ',', true);
            END IF;
        END IF;
    ELSIF strpos(done, ',' || NEW.id_ || ',') = 0 THEN
        IF taskpool_camunda_sync(NEW.id_, coalesce(NEW.proc_inst_id_, '')) THEN
            done := set_config('taskpool.synced_tasks', done || NEW.id_ || ',', true);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- Only a task's candidate links matter (a process definition's starters do not).
CREATE OR REPLACE FUNCTION taskpool_camunda_link_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    done   TEXT := coalesce(nullif(current_setting('taskpool.synced_tasks', true), ''), ',');
    task   TEXT;
BEGIN
    FOREACH task IN ARRAY ARRAY[
        CASE WHEN TG_OP <> 'INSERT' AND OLD.type_ = 'candidate' THEN OLD.task_id_ END,
        CASE WHEN TG_OP <> 'DELETE' AND NEW.type_ = 'candidate' THEN NEW.task_id_ END] LOOP
        IF task IS NOT NULL AND strpos(done, ',' || task || ',') = 0 THEN
            IF taskpool_camunda_sync(task, NULL) THEN
                done := set_config('taskpool.synced_tasks', done || task || ',', true);
            END IF;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- Only a process instance's business key matters of its executions.
CREATE OR REPLACE FUNCTION taskpool_camunda_execution_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    unused BOOLEAN;
BEGIN
    IF NEW.id_ = NEW.proc_inst_id_ AND OLD.business_key_ IS DISTINCT FROM NEW.business_key_
       AND strpos(coalesce(current_setting('taskpool.synced_instances', true), ''),
                  ',' || NEW.id_ || ',') = 0 THEN
        unused := taskpool_camunda_instance_changed(NEW.id_) IS NULL;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS taskpool_capture_task ON act_ru_task;
CREATE CONSTRAINT TRIGGER taskpool_capture_task
    AFTER INSERT OR UPDATE OR DELETE ON act_ru_task
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION taskpool_camunda_task_changed();
DROP TRIGGER IF EXISTS taskpool_capture_identity_link ON act_ru_identitylink;
CREATE CONSTRAINT TRIGGER taskpool_capture_identity_link
    AFTER INSERT OR UPDATE OR DELETE ON act_ru_identitylink
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION taskpool_camunda_link_changed();
DROP TRIGGER IF EXISTS taskpool_capture_execution ON act_ru_execution;
CREATE CONSTRAINT TRIGGER taskpool_capture_execution
    AFTER UPDATE ON act_ru_execution
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION taskpool_camunda_execution_changed();

-- The variables' trigger and function, made once the allowed names are known (written into the
-- function: reading them would be a statement per row); with none allowed, no trigger at all.
CREATE OR REPLACE FUNCTION taskpool_camunda_watch_variables() RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    names TEXT[] := ARRAY(SELECT DISTINCT variable_name FROM taskpool_camunda_variables
                          ORDER BY variable_name);
BEGIN
    DROP TRIGGER IF EXISTS taskpool_capture_variable ON act_ru_variable;
    DROP TRIGGER IF EXISTS taskpool_capture_variable_removed ON act_ru_variable;
    IF cardinality(names) = 0 THEN
        RETURN;
    END IF;
    EXECUTE format($function$
        CREATE OR REPLACE FUNCTION taskpool_camunda_variable_changed() RETURNS TRIGGER
        LANGUAGE plpgsql AS $body$
        DECLARE
            instance TEXT := CASE WHEN TG_OP = 'DELETE' THEN OLD.proc_inst_id_
                                  ELSE NEW.proc_inst_id_ END;
            variable TEXT := CASE WHEN TG_OP = 'DELETE' THEN OLD.name_ ELSE NEW.name_ END;
            unused   BOOLEAN;
        BEGIN
            IF instance IS NOT NULL AND variable = ANY (%L::text[])
               AND strpos(coalesce(current_setting('taskpool.synced_instances', true), ''),
                          ',' || instance || ',') = 0 THEN
                unused := taskpool_camunda_instance_changed(instance) IS NULL;
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
