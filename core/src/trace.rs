//! W3C trace context (`traceparent`) carried from the engine's transaction to Kafka headers.

use std::fmt;

use uuid::Uuid;

/// A valid W3C `traceparent` value: `00-<trace id>-<parent id>-<flags>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent(String);

impl TraceParent {
    /// Accepts a version-00 traceparent with non-zero lowercase-hex ids; anything else is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.split('-').collect();
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let non_zero = |s: &str| s.bytes().any(|b| b != b'0');
        match parts.as_slice() {
            ["00", trace, parent, flags]
                if hex(trace, 32)
                    && hex(parent, 16)
                    && hex(flags, 2)
                    && non_zero(trace)
                    && non_zero(parent) =>
            {
                Some(TraceParent(value.to_string()))
            }
            _ => None,
        }
    }

    /// A new trace, for work that did not arrive with one.
    pub fn new_root() -> Self {
        let trace = Uuid::new_v4().simple().to_string();
        let parent = &Uuid::new_v4().simple().to_string()[..16];
        TraceParent(format!("00-{trace}-{parent}-01"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_root_is_a_valid_traceparent() {
        let root = TraceParent::new_root();
        assert_eq!(TraceParent::parse(root.as_str()), Some(root));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        assert!(
            TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_some()
        );
    }
}
