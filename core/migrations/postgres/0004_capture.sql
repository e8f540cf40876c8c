-- The plain-SQL way in (decision 0026): engines that cannot link the Rust collector record task
-- and data-entry events in their own transaction by calling
--
--   taskpool_record_task_event(kind, task_id, fields)
--   taskpool_record_data_entry_event(kind, entry_type, entry_id, fields)
--
-- from any language. A call checks its arguments (a bad one raises an error in the caller's
-- transaction and writes nothing) and queues the event in taskpool_capture. A taskpool process
-- drains the queue through core's rules into the outbox, deleting what it drained in the same
-- transaction: a rolled-back engine transaction leaves nothing, a late commit is drained when it
-- becomes visible (nothing is read past), and every queued event reaches the outbox once.
--
-- Per aggregate, events must reach the outbox in the engine's commit order. Two transactions
-- recording events of the same aggregate are serialized by a transaction-level advisory lock
-- taken before the row is queued: the second queues only after the first has committed (or rolled
-- back), so positions follow commit order per aggregate.

CREATE TABLE taskpool_capture (
    position       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The recording transaction: the drainer turns each transaction's events into commands
    -- together, as the collector does for one transaction.
    transaction_id XID8 NOT NULL DEFAULT pg_current_xact_id(),
    aggregate_type TEXT NOT NULL CHECK (aggregate_type IN ('task', 'data-entry')),
    aggregate_id   TEXT NOT NULL,
    kind           TEXT NOT NULL,
    -- The call's fields, checked and normalized (timestamps as epoch milliseconds).
    fields         JSONB NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Queued events the drainer could not turn into commands, with the reason (a check here and
-- the Rust rules disagreeing); they are taken out of the queue so that nothing blocks behind
-- them.
CREATE TABLE taskpool_capture_dead_letters (
    position       BIGINT PRIMARY KEY,
    transaction_id XID8 NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    kind           TEXT NOT NULL,
    fields         JSONB NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    reason         TEXT NOT NULL,
    failed_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Checks `fields` (a JSON object) against `spec` (field name -> type) and returns it with
-- timestamps as epoch milliseconds. Types: text (a string, or null), text! (a non-empty
-- string), int, timestamp (an RFC 3339 string, or null), texts (an array of non-empty strings),
-- object (a JSON object), references (an array of {"entryType", "entryId"}), and the nested
-- objects source, state and note. A trailing ! makes a field required.
CREATE FUNCTION taskpool_capture_checked(what TEXT, fields JSONB, spec JSONB) RETURNS JSONB
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    key       TEXT;
    kind      TEXT;
    value     JSONB;
    result    JSONB := '{}'::jsonb;
    element   JSONB;
BEGIN
    IF fields IS NULL OR jsonb_typeof(fields) <> 'object' THEN
        RAISE EXCEPTION 'taskpool: the fields of % must be a JSON object', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR key IN SELECT jsonb_object_keys(fields) LOOP
        IF NOT spec ? key THEN
            RAISE EXCEPTION 'taskpool: % has no field "%" (its fields: %)', what, key,
                (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(spec) AS k)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    FOR key, kind IN SELECT * FROM jsonb_each_text(spec) LOOP
        value := fields -> key;
        IF value IS NULL THEN
            IF right(kind, 1) = '!' THEN
                RAISE EXCEPTION 'taskpool: % needs the field "%"', what, key
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            CONTINUE;
        END IF;
        IF jsonb_typeof(value) = 'null' THEN
            IF right(kind, 1) = '!' OR kind NOT IN ('text', 'timestamp') THEN
                RAISE EXCEPTION 'taskpool: % field "%" may not be null', what, key
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            result := result || jsonb_build_object(key, value);
            CONTINUE;
        END IF;
        CASE rtrim(kind, '!')
        WHEN 'text' THEN
            IF jsonb_typeof(value) <> 'string' OR (kind = 'text!' AND value #>> '{}' = '') THEN
                RAISE EXCEPTION 'taskpool: % field "%" must be %, not %', what, key,
                    CASE WHEN kind = 'text!' THEN 'a non-empty string' ELSE 'a string' END, value
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        WHEN 'int' THEN
            IF jsonb_typeof(value) <> 'number' OR value::numeric <> trunc(value::numeric)
               OR abs(value::numeric) > 2147483647 THEN
                RAISE EXCEPTION 'taskpool: % field "%" must be a 32-bit integer, not %', what,
                    key, value USING ERRCODE = 'invalid_parameter_value';
            END IF;
        WHEN 'timestamp' THEN
            IF jsonb_typeof(value) <> 'string' THEN
                RAISE EXCEPTION 'taskpool: % field "%" must be an RFC 3339 timestamp, not %',
                    what, key, value USING ERRCODE = 'invalid_parameter_value';
            END IF;
            BEGIN
                value := to_jsonb((extract(epoch FROM (value #>> '{}')::timestamptz) * 1000)::int8);
            EXCEPTION WHEN others THEN
                RAISE EXCEPTION 'taskpool: % field "%" must be an RFC 3339 timestamp, not %',
                    what, key, value USING ERRCODE = 'invalid_parameter_value';
            END;
        WHEN 'texts' THEN
            IF jsonb_typeof(value) <> 'array' THEN
                RAISE EXCEPTION 'taskpool: % field "%" must be an array of strings, not %',
                    what, key, value USING ERRCODE = 'invalid_parameter_value';
            END IF;
            FOR element IN SELECT jsonb_array_elements(value) LOOP
                IF jsonb_typeof(element) <> 'string' OR element #>> '{}' = '' THEN
                    RAISE EXCEPTION 'taskpool: % field "%" must hold non-empty strings, not %',
                        what, key, element USING ERRCODE = 'invalid_parameter_value';
                END IF;
            END LOOP;
        WHEN 'object' THEN
            IF jsonb_typeof(value) <> 'object' THEN
                RAISE EXCEPTION 'taskpool: % field "%" must be a JSON object, not %', what, key,
                    value USING ERRCODE = 'invalid_parameter_value';
            END IF;
        WHEN 'references' THEN
            IF jsonb_typeof(value) <> 'array' THEN
                RAISE EXCEPTION 'taskpool: % field "%" must be an array of references, not %',
                    what, key, value USING ERRCODE = 'invalid_parameter_value';
            END IF;
            FOR element IN SELECT jsonb_array_elements(value) LOOP
                PERFORM taskpool_capture_checked(what || ' ' || key, element,
                    '{"entryType": "text!", "entryId": "text!"}');
            END LOOP;
        WHEN 'source' THEN
            value := taskpool_capture_checked(what || ' ' || key, value,
                '{"processInstanceId": "text!", "executionId": "text!",
                  "processDefinitionId": "text!", "processDefinitionKey": "text!",
                  "processName": "text!", "applicationName": "text!", "tenantId": "text"}');
        WHEN 'state' THEN
            value := taskpool_capture_checked(what || ' ' || key, value,
                '{"processingType": "text!", "state": "text!"}');
            IF value ->> 'processingType' NOT IN
                ('PRELIMINARY', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED', 'UNDEFINED') THEN
                RAISE EXCEPTION 'taskpool: % field "%" has processingType %, not one of '
                    'PRELIMINARY, IN_PROGRESS, COMPLETED, CANCELLED, UNDEFINED', what, key,
                    value -> 'processingType' USING ERRCODE = 'invalid_parameter_value';
            END IF;
        WHEN 'note' THEN
            value := taskpool_capture_checked(what || ' ' || key, value,
                '{"username": "text", "logMessage": "text", "logDetails": "text"}');
        ELSE
            RAISE EXCEPTION 'taskpool: unknown field type % in a specification', kind;
        END CASE;
        result := result || jsonb_build_object(key, value);
    END LOOP;
    RETURN result;
END
$$;

CREATE FUNCTION taskpool_record_task_event(kind TEXT, task_id TEXT, fields JSONB DEFAULT '{}')
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    what TEXT := format('a task event "%s"', kind);
    spec JSONB;
BEGIN
    IF task_id IS NULL OR task_id = '' THEN
        RAISE EXCEPTION 'taskpool: % needs a task id', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    spec := CASE kind
        WHEN 'created' THEN
            '{"sourceReference": "source!", "taskDefinitionKey": "text!", "name": "text!",
              "description": "text", "formKey": "text", "priority": "int",
              "createTime": "timestamp", "dueDate": "timestamp", "followUpDate": "timestamp",
              "assignee": "text", "owner": "text", "candidateUsers": "texts",
              "candidateGroups": "texts", "businessKey": "text", "payload": "object",
              "correlations": "references"}'
        WHEN 'assigned' THEN '{"assignee": "text"}'
        WHEN 'attributes' THEN
            '{"name": "text", "description": "text", "formKey": "text", "businessKey": "text",
              "owner": "text", "dueDate": "timestamp", "followUpDate": "timestamp",
              "priority": "int", "payload": "object", "correlations": "references"}'
        WHEN 'candidate-user-added' THEN '{"user": "text!"}'
        WHEN 'candidate-user-removed' THEN '{"user": "text!"}'
        WHEN 'candidate-group-added' THEN '{"group": "text!"}'
        WHEN 'candidate-group-removed' THEN '{"group": "text!"}'
        WHEN 'completed' THEN '{}'
        WHEN 'deleted' THEN '{"reason": "text"}'
        END;
    IF spec IS NULL THEN
        RAISE EXCEPTION 'taskpool: unknown task event kind "%" (kinds: created, assigned, '
            'attributes, candidate-user-added, candidate-user-removed, candidate-group-added, '
            'candidate-group-removed, completed, deleted)', kind
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    fields := taskpool_capture_checked(what, fields, spec);
    IF kind = 'attributes' AND fields = '{}'::jsonb THEN
        RAISE EXCEPTION 'taskpool: % changes no attribute', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind = 'attributes' AND fields ? 'name' AND jsonb_typeof(fields -> 'name') = 'null' THEN
        RAISE EXCEPTION 'taskpool: % field "name" may not be null', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Commit order per task: a second transaction waits here until the first has ended.
    PERFORM pg_advisory_xact_lock(hashtextextended('taskpool task ' || task_id, 0));
    INSERT INTO taskpool_capture (aggregate_type, aggregate_id, kind, fields)
    VALUES ('task', task_id, kind, fields);
END
$$;

CREATE FUNCTION taskpool_record_data_entry_event(kind TEXT, entry_type TEXT, entry_id TEXT,
                                                 fields JSONB DEFAULT '{}')
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    what TEXT := format('a data-entry event "%s"', kind);
    spec JSONB;
BEGIN
    IF entry_type IS NULL OR entry_type = '' OR entry_id IS NULL OR entry_id = '' THEN
        RAISE EXCEPTION 'taskpool: % needs an entry type and an entry id', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF strpos(entry_type, ':') > 0 THEN
        RAISE EXCEPTION 'taskpool: entry type "%" may not contain ":"', entry_type
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    spec := CASE kind
        WHEN 'changed' THEN
            '{"type": "text!", "applicationName": "text!", "name": "text!",
              "description": "text", "state": "state!", "payload": "object",
              "correlations": "references", "authorizedUsers": "texts",
              "authorizedGroups": "texts", "formKey": "text", "note": "note"}'
        WHEN 'deleted' THEN '{"note": "note"}'
        END;
    IF spec IS NULL THEN
        RAISE EXCEPTION 'taskpool: unknown data-entry event kind "%" (kinds: changed, deleted)',
            kind USING ERRCODE = 'invalid_parameter_value';
    END IF;
    fields := taskpool_capture_checked(what, fields, spec);
    PERFORM pg_advisory_xact_lock(
        hashtextextended('taskpool data-entry ' || entry_type || ':' || entry_id, 0));
    INSERT INTO taskpool_capture (aggregate_type, aggregate_id, kind, fields)
    VALUES ('data-entry', entry_type || ':' || entry_id, kind, fields);
END
$$;
