-- Removes everything capture/sql/camunda7_install.sql and camunda7_commit.sql added, and
-- nothing else, once camunda7_detach.sql has removed the triggers and the states they queued
-- were drained. The engine's tables are as before.
DROP FUNCTION IF EXISTS taskpool_camunda_task_changed();
DROP FUNCTION IF EXISTS taskpool_camunda_task_deleted();
DROP FUNCTION IF EXISTS taskpool_camunda_link_changed();
DROP FUNCTION IF EXISTS taskpool_camunda_variable_changed();
DROP FUNCTION IF EXISTS taskpool_camunda_execution_changed();
DROP FUNCTION IF EXISTS taskpool_camunda_touch(TEXT, TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_sync(TEXT, TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_sync_ended(TEXT, TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_instance_changed(TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_instance_lock(TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_watch_variables();
DROP FUNCTION IF EXISTS taskpool_camunda_allowed_variables();
DROP FUNCTION IF EXISTS taskpool_camunda_state(TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_shape(JSONB);
DROP FUNCTION IF EXISTS taskpool_camunda_form_key(TEXT, TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_read_form_keys(TEXT);
-- What older installations had.
DROP FUNCTION IF EXISTS taskpool_camunda_touch(TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_sync(TEXT);
DROP FUNCTION IF EXISTS taskpool_camunda_queue(TEXT, TEXT, JSONB);
DROP FUNCTION IF EXISTS taskpool_camunda_time(TIMESTAMP);
DROP TABLE IF EXISTS taskpool_camunda_tasks;
DROP TABLE IF EXISTS taskpool_camunda_form_keys;
DROP TABLE IF EXISTS taskpool_camunda_variables;
DROP TABLE IF EXISTS taskpool_camunda_settings;
DROP TABLE IF EXISTS taskpool_camunda_catching_up;
DROP TYPE IF EXISTS taskpool_camunda_task;
