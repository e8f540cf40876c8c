-- The first step of uninstalling: the engine's tables lose the capture's triggers, so that no
-- engine transaction queues a task's state any more. The states already queued are then drained
-- (they need taskpool_camunda_tasks to be compared with) before camunda7_uninstall.sql.
DROP TRIGGER IF EXISTS taskpool_capture_task ON act_ru_task;
DROP TRIGGER IF EXISTS taskpool_capture_task_deleted ON act_ru_task;
DROP TRIGGER IF EXISTS taskpool_capture_identity_link ON act_ru_identitylink;
DROP TRIGGER IF EXISTS taskpool_capture_identity_link_updated ON act_ru_identitylink;
DROP TRIGGER IF EXISTS taskpool_capture_identity_link_removed ON act_ru_identitylink;
DROP TRIGGER IF EXISTS taskpool_capture_variable ON act_ru_variable;
DROP TRIGGER IF EXISTS taskpool_capture_variable_removed ON act_ru_variable;
DROP TRIGGER IF EXISTS taskpool_capture_execution ON act_ru_execution;
