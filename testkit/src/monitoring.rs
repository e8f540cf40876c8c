//! What the monitoring files in `deploy/` expect of the binaries' `/metrics`.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The files whose queries name metrics: the alert rules and the dashboard.
fn monitoring_files() -> Vec<PathBuf> {
    let deploy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    vec![
        deploy.join("prometheus/alerts.yml"),
        deploy.join("grafana/dashboards/taskpool.json"),
    ]
}

/// Every metric name starting with `prefix` that the alert rules or the dashboard use.
pub fn referenced_metrics(prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in monitoring_files() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let mut rest = text.as_str();
        while let Some(start) = rest.find(prefix) {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

/// The names among `wanted` that no sample line of a Prometheus text exposition carries.
pub fn missing_from(exposition: &str, wanted: &BTreeSet<String>) -> Vec<String> {
    let exposed: BTreeSet<&str> = exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    wanted
        .iter()
        .filter(|name| !exposed.contains(name.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_and_checked_against_sample_lines() {
        let wanted: BTreeSet<String> = ["a_total", "b_seconds_bucket", "c"]
            .map(String::from)
            .into();
        let exposition = "# HELP c help\n# TYPE c gauge\na_total 1\nb_seconds_bucket{le=\"1\"} 0\n";
        assert_eq!(missing_from(exposition, &wanted), vec!["c".to_string()]);
        assert!(!referenced_metrics("taskpool_relay_").is_empty());
        assert!(!referenced_metrics("taskpool_tasklist_").is_empty());
    }
}
