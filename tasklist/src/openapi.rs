//! `/openapi.json`: an OpenAPI 3 description of every endpoint.

use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn task_filters() -> Vec<Value> {
    vec![
        query(
            "businessKey",
            "Exact business key.",
            json!({"type": "string"}),
        ),
        query(
            "processDefinitionKey",
            "Exact process definition key.",
            json!({"type": "string"}),
        ),
        query(
            "application",
            "Exact application name.",
            json!({"type": "string"}),
        ),
        query(
            "priorityMin",
            "Lowest priority (inclusive).",
            json!({"type": "integer"}),
        ),
        query(
            "priorityMax",
            "Highest priority (inclusive).",
            json!({"type": "integer"}),
        ),
        query(
            "dueBefore",
            "Due before this time (RFC 3339 or epoch ms).",
            json!({"type": "string"}),
        ),
        query(
            "dueAfter",
            "Due after this time (RFC 3339 or epoch ms).",
            json!({"type": "string"}),
        ),
        query(
            "q",
            "Text in the name or description, case-insensitive.",
            json!({"type": "string", "maxLength": 200}),
        ),
        query(
            "sort",
            "priority, createTime, dueDate or name; prefix - for descending. Default -priority.",
            json!({"type": "string", "enum": ["priority", "-priority", "createTime", "-createTime", "dueDate", "-dueDate", "name", "-name"]}),
        ),
    ]
}

fn secured(operation: Value) -> Value {
    let mut operation = operation;
    operation["security"] = json!([{ "bearer": [] }]);
    let responses = operation["responses"].as_object_mut().expect("responses");
    responses.insert("401".into(), error_response("No or invalid identity."));
    responses.insert("503".into(), error_response("A dependency is unavailable."));
    operation
}

pub fn document() -> Value {
    let mut list_parameters = task_filters();
    list_parameters.push(query(
        "limit",
        "Page size, 1 to 500 (default 50).",
        json!({"type": "integer", "minimum": 1, "maximum": 500}),
    ));
    list_parameters.push(query(
        "cursor",
        "nextCursor of the previous page.",
        json!({"type": "string"}),
    ));
    let mut stream_parameters = task_filters();
    stream_parameters.push(json!({ "name": "Last-Event-ID", "in": "header", "required": false,
        "description": "The id of the last event received, to resume.", "schema": { "type": "string" } }));
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "taskpool tasklist API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Each user's tasks and data entries, and a live stream of the changes that concern them."
        },
        "paths": {
            "/api/tasks": { "get": secured(json!({
                "summary": "The caller's active tasks (assignee, candidate user or candidate group).",
                "parameters": list_parameters,
                "responses": {
                    "200": { "description": "A page of tasks.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/TaskPage" } } } },
                    "400": error_response("Malformed filter, sort, limit or cursor.")
                }
            })) },
            "/api/tasks/stream": { "get": secured(json!({
                "summary": "The caller's tasks, a marker, then upsert/remove events for their changes, until the client goes away.",
                "description": "Server-Sent Events (default) or NDJSON (Accept: application/x-ndjson). Events: upsert (data: task), remove (data: {id}), marker (data: {tasks}), resync (data: {reason}), outcome (data: {commandId, taskId, result: applied|rejected, reason, taskVersion}: what the engine did with one of the caller's actions); SSE comments or {\"event\":\"heartbeat\"} keep the connection alive. Live events have ids; send Last-Event-ID to resume.",
                "parameters": stream_parameters,
                "responses": {
                    "200": { "description": "The stream.", "content": {
                        "text/event-stream": { "schema": { "type": "string" } },
                        "application/x-ndjson": { "schema": { "type": "string" } }
                    } },
                    "400": error_response("Malformed filter.")
                }
            })) },
            "/api/tasks/{id}": { "get": secured(json!({
                "summary": "One task, if the caller may see it.",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": {
                    "200": { "description": "The task.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Task" } } } },
                    "404": error_response("No such task, or not visible to the caller.")
                }
            })) },
            "/api/tasks/{id}/{action}": { "post": secured(json!({
                "summary": "An action on a task, sent to the engine that owns it; its outcome follows on the caller's stream.",
                "description": "claim and unclaim (no body), complete (body: the form's values as a JSON object), defer (body: {\"followUpDate\": RFC 3339}), undefer (no body), assign (body: {\"assignee\": user}). Checked against the caller's view first: nothing is sent for a refused request.",
                "parameters": [
                    { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "action", "in": "path", "required": true, "schema": { "type": "string", "enum": ["claim", "unclaim", "complete", "defer", "undefer", "assign"] } },
                    { "name": "Idempotency-Key", "in": "header", "required": false, "description": "1 to 255 visible ASCII characters. For a day (http.idempotency_key_secs) the key names the request it first came with: the same request again is the same command (the same commandId), which the engine applies once and answers as before, so retry freely; another request with the key is 422; afterwards the key starts a new command.", "schema": { "type": "string", "maxLength": 255 } },
                    query("wait", "Answer only once the outcome is known, waiting at most this long (5s, 500ms; at most 30s): 200 when applied and visible in the caller's view, 409 when the engine rejected it, 202 when the wait ran out.", json!({"type": "string"}))
                ],
                "requestBody": { "required": false, "content": { "application/json": { "schema": { "type": "object" } } } },
                "responses": {
                    "200": { "description": "With wait: applied, and the caller's view shows it.", "content": { "application/json": { "schema": { "type": "object", "properties": { "commandId": { "type": "string" }, "status": { "type": "string", "enum": ["applied"] }, "taskVersion": { "type": ["integer", "null"] } } } } } },
                    "202": { "description": "Sent to the engine.", "content": { "application/json": { "schema": { "type": "object", "properties": { "commandId": { "type": "string", "format": "uuid" }, "status": { "type": "string", "enum": ["pending"] } } } } } },
                    "400": error_response("The body is missing or wrong for this action."),
                    "403": error_response("The caller sees the task but may not do this (not a candidate, not the assignee)."),
                    "404": error_response("No such task or action, or the task is not visible to the caller."),
                    "409": error_response("The task's state does not allow it (claimed by someone else, not claimed, not deferred), or, with wait, the engine rejected it (error \"rejected\", its reason as message)."),
                    "422": error_response("The Idempotency-Key was sent with another request (error \"idempotency_key_reused\")."),
                    "501": error_response("This deployment does not offer actions."),
                    "503": error_response("The command could not be handed to the broker; try again.")
                }
            })) },
            "/api/data-entries": { "get": secured(json!({
                "summary": "Data entries the caller is authorized for.",
                "parameters": [
                    query("entryType", "Exact entry type.", json!({"type": "string"})),
                    query("limit", "Page size, 1 to 500 (default 50).", json!({"type": "integer", "minimum": 1, "maximum": 500})),
                    query("cursor", "nextCursor of the previous page.", json!({"type": "string"}))
                ],
                "responses": {
                    "200": { "description": "A page of data entries.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/DataEntryPage" } } } },
                    "400": error_response("Malformed parameters.")
                }
            })) },
            "/api/data-entries/{entryType}/{entryId}": { "get": secured(json!({
                "summary": "One data entry, if the caller is authorized.",
                "parameters": [
                    { "name": "entryType", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "entryId", "in": "path", "required": true, "schema": { "type": "string" } }
                ],
                "responses": {
                    "200": { "description": "The data entry.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/DataEntry" } } } },
                    "404": error_response("No such entry, or not visible to the caller.")
                }
            })) },
            "/api/dev/users": { "get": {
                "summary": "Development sign-in only (single-node demo): its users, each with a fresh bearer token. Not found elsewhere.",
                "responses": {
                    "200": { "description": "Users with groups and tokens, and a notice to show." },
                    "404": error_response("Development sign-in is off.")
                }
            } },
            "/health/live": { "get": { "summary": "The process runs.", "responses": { "200": { "description": "Live." } } } },
            "/health/ready": { "get": { "summary": "The view answers, its change feed is open and the projection runs; the body says which (view, changeStream, projection).", "responses": {
                "200": { "description": "Ready." }, "503": { "description": "Not ready." } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics.", "responses": { "200": { "description": "Text exposition format.", "content": { "text/plain": { "schema": { "type": "string" } } } } } } },
            "/openapi.json": { "get": { "summary": "This document.", "responses": { "200": { "description": "OpenAPI 3 JSON." } } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error", "message"], "properties": {
                    "error": { "type": "string" }, "message": { "type": "string" } } },
                "Task": { "type": "object", "properties": {
                    "id": { "type": "string" }, "version": { "type": "integer" }, "name": { "type": "string" },
                    "description": { "type": "string", "nullable": true }, "priority": { "type": "integer" },
                    "createTime": { "type": "integer", "description": "epoch milliseconds" },
                    "dueDate": { "type": "integer", "nullable": true }, "followUpDate": { "type": "integer", "nullable": true },
                    "assignee": { "type": "string", "nullable": true }, "owner": { "type": "string", "nullable": true },
                    "candidateUsers": { "type": "array", "items": { "type": "string" } },
                    "candidateGroups": { "type": "array", "items": { "type": "string" } },
                    "businessKey": { "type": "string", "nullable": true }, "formKey": { "type": "string", "nullable": true },
                    "taskDefinitionKey": { "type": "string" }, "sourceReference": { "type": "object" },
                    "payload": { "type": "object" }, "correlations": { "type": "array", "items": { "type": "object" } },
                    "state": { "type": "string", "enum": ["ACTIVE", "COMPLETED", "DELETED"] },
                    "deleteReason": { "type": "string", "nullable": true }, "occurredAt": { "type": "integer" } } },
                "TaskPage": { "type": "object", "properties": {
                    "items": { "type": "array", "items": { "$ref": "#/components/schemas/Task" } },
                    "nextCursor": { "type": "string", "nullable": true } } },
                "DataEntry": { "type": "object", "properties": {
                    "id": { "type": "string" }, "version": { "type": "integer" }, "entryType": { "type": "string" },
                    "entryId": { "type": "string" }, "type": { "type": "string" }, "name": { "type": "string" },
                    "applicationName": { "type": "string" }, "processingType": { "type": "string" }, "state": { "type": "string" },
                    "payload": { "type": "object" }, "authorizedUsers": { "type": "array", "items": { "type": "string" } },
                    "authorizedGroups": { "type": "array", "items": { "type": "string" } },
                    "protocol": { "type": "array", "items": { "type": "object" } } } },
                "DataEntryPage": { "type": "object", "properties": {
                    "items": { "type": "array", "items": { "$ref": "#/components/schemas/DataEntry" } },
                    "nextCursor": { "type": "string", "nullable": true } } }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_described() {
        let document = super::document();
        for route in crate::http::ROUTES {
            assert!(document["paths"].get(route).is_some(), "{route} is missing");
        }
        assert_eq!(
            document["paths"].as_object().unwrap().len(),
            crate::http::ROUTES.len()
        );
    }
}
