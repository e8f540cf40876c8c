-- The floor of tracking_xid (decision 0024). A relay that reads below a horizon scoped to the
-- transactions writing to the outbox raises this, outside any transaction, before it looks for
-- those writers; every outbox row then takes at least the floor it reads in its own statement.
-- A transaction that began long ago but writes its first outbox row only now thus sorts after
-- everything such a relay has already passed. A sequence because its value is seen by every
-- session at once, committed or not.
CREATE SEQUENCE taskpool_outbox_floor AS BIGINT MINVALUE 0 START 0;
