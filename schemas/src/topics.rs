//! Where events travel: one topic per aggregate type, `<prefix>.tasks` and
//! `<prefix>.data-entries`, keyed by aggregate id. The relay publishes to
//! these names and tasklist services subscribe to them, so both take them from here.
//!
//! Tasklist actions travel apart from events: commands on `<prefix>.task-commands` (keyed by
//! task id; every engine application reads it and takes the commands addressed to it), outcomes
//! on `<prefix>.command-outcomes` (keyed by command id).

/// The topic names for a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub tasks: String,
    pub data_entries: String,
    pub commands: String,
    pub outcomes: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Topics {
        Topics {
            tasks: format!("{prefix}.tasks"),
            data_entries: format!("{prefix}.data-entries"),
            commands: format!("{prefix}.task-commands"),
            outcomes: format!("{prefix}.command-outcomes"),
        }
    }

    /// The topic of an aggregate type as the outbox names it (`task`, `data-entry`), if known.
    pub fn for_aggregate(&self, aggregate_type: &str) -> Option<&str> {
        match aggregate_type {
            "task" => Some(&self.tasks),
            "data-entry" => Some(&self.data_entries),
            _ => None,
        }
    }

    /// The event topics (what the relay publishes and projections read).
    pub fn all(&self) -> [&str; 2] {
        [&self.tasks, &self.data_entries]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_aggregate_type_has_its_topic_under_the_prefix() {
        let topics = Topics::new("shop");
        assert_eq!(topics.for_aggregate("task"), Some("shop.tasks"));
        assert_eq!(
            topics.for_aggregate("data-entry"),
            Some("shop.data-entries")
        );
        assert_eq!(topics.for_aggregate("invoice"), None);
        assert_eq!(topics.all(), ["shop.tasks", "shop.data-entries"]);
        assert_eq!(topics.commands, "shop.task-commands");
        assert_eq!(topics.outcomes, "shop.command-outcomes");
    }
}
