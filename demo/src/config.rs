//! What the demo runs: its rate, its users and their groups.

use serde::Deserialize;

/// A user of the demo, with the groups they belong to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoUser {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The demo's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Engine transactions per second (each one a step in some process instance's life).
    pub rate: f64,
    /// Process instances kept running at once: new requests start while there are fewer.
    pub active_requests: usize,
    /// The people and their groups. The process hands approval to `approvers` (`managers`
    /// above [`DemoConfig::manager_threshold`]), ordering to `purchasing`, and the receipt back
    /// to the requester.
    pub users: Vec<DemoUser>,
    /// Amount from which a request needs a manager's approval.
    pub manager_threshold: i64,
    /// Seed of the demo's choices; the same seed, the same history.
    pub seed: Option<u64>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        let user = |name: &str, groups: &[&str]| DemoUser {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        DemoConfig {
            rate: 2.0,
            active_requests: 12,
            users: vec![
                user("kermit", &["approvers", "managers"]),
                user("piggy", &["approvers"]),
                user("gonzo", &["purchasing"]),
                user("fozzie", &["purchasing"]),
                user("rowlf", &[]),
            ],
            manager_threshold: 5_000,
            seed: None,
        }
    }
}

impl DemoConfig {
    /// The demo's people for a tasklist's development sign-in setting (`dev_sign_in.users`):
    /// `name:group+group,...`.
    pub fn dev_sign_in_users(&self) -> String {
        let users: Vec<String> = self
            .users
            .iter()
            .map(|u| format!("{}:{}", u.name, u.groups.join("+")))
            .collect();
        users.join(",")
    }

    /// The members of a group.
    pub fn members(&self, group: &str) -> Vec<&str> {
        self.users
            .iter()
            .filter(|u| u.groups.iter().any(|g| g == group))
            .map(|u| u.name.as_str())
            .collect()
    }

    /// Why the settings cannot run, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Some("demo.rate must be a positive number of transactions per second".into());
        }
        if self.users.is_empty() {
            return Some("demo.users must name at least one user".into());
        }
        if self.active_requests == 0 {
            return Some("demo.active_requests must be at least 1".into());
        }
        None
    }
}
