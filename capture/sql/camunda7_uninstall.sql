-- Removes everything capture/sql/camunda7_install.sql added, and nothing else. The engine's
-- tables are as before; events already queued stay in taskpool_capture and are still drained.
DROP TRIGGER IF EXISTS taskpool_capture_task ON act_ru_task;
DROP TRIGGER IF EXISTS taskpool_capture_identity_link ON act_ru_identitylink;
DROP TRIGGER IF EXISTS taskpool_capture_identity_link_updated ON act_ru_identitylink;
DROP TRIGGER IF EXISTS taskpool_capture_identity_link_removed ON act_ru_identitylink;
DROP TRIGGER IF EXISTS taskpool_capture_variable ON act_ru_variable;
DROP TRIGGER IF EXISTS taskpool_capture_variable_removed ON act_ru_variable;
DROP TRIGGER IF EXISTS taskpool_capture_execution ON act_ru_execution;
DROP FUNCTION IF EXISTS taskpool_camunda_task_changed();
DROP FUNCTION IF EXISTS taskpool_camunda_link_changed();
DROP FUNCTION IF EXISTS taskpool_camunda_variable_changed();
DROP FUNCTION IF EXISTS taskpool_camunda_execution_changed();
DROP FUNCTION IF EXISTS taskpool_camunda_sync(TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_watch_variables();
DROP FUNCTION IF EXISTS taskpool_camunda_queue(TEXT, TEXT, JSONB);
DROP FUNCTION IF EXISTS taskpool_camunda_state(TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_form_key(TEXT, TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_time(TIMESTAMP);
DROP TABLE IF EXISTS taskpool_camunda_tasks;
DROP TABLE IF EXISTS taskpool_camunda_form_keys;
DROP TABLE IF EXISTS taskpool_camunda_variables;
DROP TABLE IF EXISTS taskpool_camunda_settings;
