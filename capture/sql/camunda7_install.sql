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

-- The columns of an engine task the capture copies in the engine's commit, as the text of a
-- row of this type: a row's text costs a fraction of a JSON object's (no keys to sort), and
-- naming the columns keeps a row queued before an engine upgrade readable after it. Times are
-- written in the ISO style whatever the engine's session uses (taskpool_camunda_sync).
DO $$
BEGIN
    IF to_regtype(format('%I.taskpool_camunda_task', current_schema())) IS NULL THEN
        CREATE TYPE taskpool_camunda_task AS (
            id_ TEXT, proc_inst_id_ TEXT, case_inst_id_ TEXT, execution_id_ TEXT,
            case_execution_id_ TEXT, proc_def_id_ TEXT, case_def_id_ TEXT, tenant_id_ TEXT,
            task_def_key_ TEXT, name_ TEXT, description_ TEXT, priority_ INTEGER,
            create_time_ TIMESTAMP, due_date_ TIMESTAMP, follow_up_date_ TIMESTAMP,
            assignee_ TEXT, owner_ TEXT);
    END IF;
END
$$;

-- The engine's tables have every column the engine's commit reads (the task's, those of
-- taskpool_camunda_task): one missing would fail each engine commit that touches a task, so the
-- install fails instead, naming them.
DO $$
DECLARE
    missing TEXT;
BEGIN
    WITH read (table_name, column_name) AS (
        SELECT 'act_ru_task', a.attname::text FROM pg_attribute a
        WHERE a.attrelid = 'taskpool_camunda_task'::regclass AND a.attnum > 0
          AND NOT a.attisdropped
        UNION ALL VALUES ('act_ru_variable', 'var_scope_'), ('act_ru_variable', 'name_'),
            ('act_ru_variable', 'type_'), ('act_ru_variable', 'text_'),
            ('act_ru_variable', 'long_'), ('act_ru_variable', 'double_'),
            ('act_ru_variable', 'proc_inst_id_'), ('act_ru_execution', 'id_'),
            ('act_ru_execution', 'proc_inst_id_'), ('act_ru_execution', 'business_key_'),
            ('act_ru_identitylink', 'type_'), ('act_ru_identitylink', 'task_id_'),
            ('act_ru_identitylink', 'user_id_'), ('act_ru_identitylink', 'group_id_'),
            ('act_hi_taskinst', 'id_'), ('act_hi_taskinst', 'delete_reason_'))
    SELECT string_agg(r.table_name || '.' || r.column_name, ', ') INTO missing
    FROM read r
    WHERE NOT EXISTS (SELECT FROM pg_attribute e
                      WHERE e.attrelid = r.table_name::regclass AND e.attname = r.column_name
                        AND e.attnum > 0 AND NOT e.attisdropped);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'taskpool: the engine''s tables lack the column(s) %, which the capture '
                        'reads (not a supported engine version)', missing
            USING ERRCODE = 'undefined_column';
    END IF;
END
$$;

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
        'followUpDate',
            (extract(epoch FROM t.follow_up_date_ AT TIME ZONE s.time_zone) * 1000)::int8,
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
                WHEN 'date' THEN to_jsonb(to_char(
                    to_timestamp((v->>3)::int8 / 1000.0) AT TIME ZONE 'UTC',
                    'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
                WHEN 'null' THEN 'null'::jsonb
                ELSE to_jsonb((v->>3)::int8) END)
            FROM jsonb_array_elements(raw->'variables') v
            JOIN taskpool_camunda_variables a
              ON a.process_definition_key = d.key_ AND a.variable_name = v->>0
            WHERE v->>1 IN ('string', 'integer', 'long', 'short', 'double', 'boolean', 'date',
                            'null')),
            '{}'))
    -- The task as a row's text, or (queued by an older installation) as a JSON object.
    FROM jsonb_populate_record(NULL::taskpool_camunda_task, CASE jsonb_typeof(raw->'task')
        WHEN 'string' THEN to_jsonb((raw->>'task')::taskpool_camunda_task)
        ELSE raw->'task' END) AS t
    -- The engine writes local times without a zone; they are read in the settings' zone.
    CROSS JOIN taskpool_camunda_settings s
    LEFT JOIN act_re_procdef d ON d.id_ = t.proc_def_id_);
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
