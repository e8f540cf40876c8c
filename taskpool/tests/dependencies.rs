//! single-node's promise is "no servers": it builds neither a Kafka client (librdkafka) nor a
//! MongoDB driver. Cargo resolves features per package being built, so the graph asked of
//! `cargo tree -p taskpool` is what `cargo run` builds (`cargo metadata` unifies the features
//! of the whole workspace, where the server binaries turn Kafka on).

use std::process::Command;

#[test]
fn single_node_builds_neither_a_kafka_client_nor_a_mongodb_driver() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--locked", "--offline", "-p", "taskpool"])
        .args([
            "--edges",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
    let packages: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    // The graph is really there: single-node's own parts are in it.
    for expected in ["taskpool", "taskpool-tasklist", "taskpool-demo", "sqlx"] {
        assert!(packages.contains(&expected), "{expected} not in:\n{tree}");
    }
    for server_client in ["rdkafka", "rdkafka-sys", "mongodb", "bson", "tasklist-api"] {
        assert!(
            !packages.contains(&server_client),
            "single-node depends on {server_client}:\n{tree}"
        );
    }
}
