//! Where events travel: one topic per aggregate type, `<prefix>.tasks` and
//! `<prefix>.data-entries`, keyed by aggregate id (ARCHITECTURE.md 5). The relay publishes to
//! these names and tasklist services subscribe to them, so both take them from here.

/// The topic names for a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub tasks: String,
    pub data_entries: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Topics {
        Topics {
            tasks: format!("{prefix}.tasks"),
            data_entries: format!("{prefix}.data-entries"),
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
    }
}
