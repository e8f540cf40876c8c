// Records task events through taskpool's SQL functions from Java (JDBC), in the caller's
// transaction: committed, rolled back, and a bad call. Run by capture/tests/clients.rs:
//   java -cp postgresql.jar RecordTask.java <jdbc-url> <task-id-prefix>
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.SQLException;

public class RecordTask {
    static void record(Connection db, String kind, String taskId, String fields) throws SQLException {
        try (PreparedStatement call =
                db.prepareStatement("SELECT taskpool_record_task_event(?, ?, ?::jsonb)")) {
            call.setString(1, kind);
            call.setString(2, taskId);
            call.setString(3, fields);
            call.execute();
        }
    }

    public static void main(String[] args) throws SQLException {
        String prefix = args[1];
        String task = "{\"sourceReference\": {\"processInstanceId\": \"pi-1\", \"executionId\": \"ex-1\","
            + " \"processDefinitionId\": \"order:1\", \"processDefinitionKey\": \"order\","
            + " \"processName\": \"Order\", \"applicationName\": \"shop\"},"
            + " \"taskDefinitionKey\": \"approve\", \"name\": \"Approve order 1\","
            + " \"candidateGroups\": [\"muppets\"], \"dueDate\": \"2030-01-31T09:00:00Z\"}";
        try (Connection db = DriverManager.getConnection(args[0])) {
            db.setAutoCommit(false);
            // The engine's own writes would come here, in the same transaction.
            record(db, "created", prefix + "-committed", task);
            record(db, "assigned", prefix + "-committed", "{\"assignee\": \"kermit\"}");
            db.commit();

            record(db, "created", prefix + "-rolled-back", task);
            db.rollback();

            try {
                record(db, "finished", prefix + "-committed", "{}");
                System.out.println("accepted");
            } catch (SQLException refused) {
                System.out.println("error: " + refused.getMessage());
                db.rollback();
            }
        }
    }
}
