"""Records task events through taskpool's SQL functions from Python (psycopg), in the caller's
transaction: committed, rolled back, and a bad call. Run by capture/tests/clients.rs:
    python record_task.py <conninfo> <task-id-prefix>
"""
import json
import sys

import psycopg

TASK = {
    "sourceReference": {
        "processInstanceId": "pi-1", "executionId": "ex-1",
        "processDefinitionId": "order:1", "processDefinitionKey": "order",
        "processName": "Order", "applicationName": "shop",
    },
    "taskDefinitionKey": "approve",
    "name": "Approve order 1",
    "candidateGroups": ["muppets"],
    "dueDate": "2030-01-31T09:00:00Z",
}


def record(db, kind, task_id, fields):
    db.execute("SELECT taskpool_record_task_event(%s, %s, %s::jsonb)",
               (kind, task_id, json.dumps(fields)))


def main(conninfo, prefix):
    with psycopg.connect(conninfo) as db:
        with db.transaction():
            # The engine's own writes would come here, in the same transaction.
            record(db, "created", f"{prefix}-committed", TASK)
            record(db, "assigned", f"{prefix}-committed", {"assignee": "kermit"})

        class RolledBack(Exception):
            pass

        try:
            with db.transaction():
                record(db, "created", f"{prefix}-rolled-back", TASK)
                raise RolledBack()
        except RolledBack:
            pass

        try:
            with db.transaction():
                record(db, "finished", f"{prefix}-committed", {})
            print("accepted")
        except psycopg.Error as refused:
            print(f"error: {refused.diag.message_primary}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
