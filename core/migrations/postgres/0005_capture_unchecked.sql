-- The queue's CHECK on aggregate_type goes (decision 0027): PostgreSQL parses a table's CHECK
-- constraints again at the start of every INSERT statement on it (ExecRelCheck reads them from
-- their stored node strings), and the Camunda capture inserts into this queue in the engine's
-- commit, where that parse was a sixteenth of what the capture cost. Nothing is lost with it:
-- the recording functions write only 'task' and 'data-entry', and the drain dead-letters a row
-- of any other aggregate type with the reason.
ALTER TABLE taskpool_capture DROP CONSTRAINT IF EXISTS taskpool_capture_aggregate_type_check;
