//! The outbox writers' horizon under stress, within the test run: `taskpool-bench
//! horizon-stress` for 40 seconds (writers of every kind against the relay's reader polling
//! back to back) must read every committed event exactly once, in version order.

use std::process::Command;

/// The value of `name=` in the benchmark's RESULT line.
fn result_value(output: &str, name: &str) -> Option<u64> {
    let line = output.lines().find(|l| l.starts_with("RESULT "))?;
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))?
        .parse()
        .ok()
}

#[test]
fn no_committed_event_is_skipped_or_reordered_under_writers_of_every_kind() {
    let output = Command::new(env!("CARGO_BIN_EXE_taskpool-bench"))
        .args(["horizon-stress", "--secs", "40", "--writers", "8"])
        .output()
        .expect("run taskpool-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        result_value(&stdout, "horizon_skipped"),
        Some(0),
        "{stdout}"
    );
    assert_eq!(
        result_value(&stdout, "horizon_out_of_order"),
        Some(0),
        "{stdout}"
    );
    // The run did stress something.
    let transactions = result_value(&stdout, "horizon_transactions").unwrap_or(0);
    assert!(transactions >= 1000, "{stdout}");
    // Prepared transactions where the server allows them (the servers of services.sh do).
    if stdout.contains("prepared transactions on") {
        assert!(
            result_value(&stdout, "horizon_prepared") > Some(0),
            "{stdout}"
        );
    }
}
