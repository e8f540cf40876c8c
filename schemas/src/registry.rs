//! Every published schema version, keyed by its CRC-64-AVRO fingerprint.
//!
//! A schema file is never edited once published: a change adds `v<n+1>.avsc` next to the old
//! ones and a line to [`HISTORY`]. Writers always use the newest version; readers accept all.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::Schema;

use crate::canonical;

/// The record families, one Avro record type each: two of events, and the tasklist actions'
/// commands and outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaFamily {
    TaskEvent,
    DataEntryEvent,
    TaskCommand,
    CommandOutcome,
}

impl SchemaFamily {
    pub const ALL: [SchemaFamily; 4] = [
        SchemaFamily::TaskEvent,
        SchemaFamily::DataEntryEvent,
        SchemaFamily::TaskCommand,
        SchemaFamily::CommandOutcome,
    ];

    /// The folder under `schemas/avro/` holding this family's versions.
    pub fn folder(self) -> &'static str {
        match self {
            SchemaFamily::TaskEvent => "task-event",
            SchemaFamily::DataEntryEvent => "data-entry-event",
            SchemaFamily::TaskCommand => "task-command",
            SchemaFamily::CommandOutcome => "command-outcome",
        }
    }
}

/// Published schema texts, oldest first within each family.
pub const HISTORY: &[(SchemaFamily, u32, &str)] = &[
    (
        SchemaFamily::TaskEvent,
        1,
        include_str!("../avro/task-event/v1.avsc"),
    ),
    (
        SchemaFamily::DataEntryEvent,
        1,
        include_str!("../avro/data-entry-event/v1.avsc"),
    ),
    (
        SchemaFamily::TaskCommand,
        1,
        include_str!("../avro/task-command/v1.avsc"),
    ),
    (
        SchemaFamily::CommandOutcome,
        1,
        include_str!("../avro/command-outcome/v1.avsc"),
    ),
];

/// One published version of a family's schema.
#[derive(Debug)]
pub struct SchemaVersion {
    pub family: SchemaFamily,
    pub version: u32,
    pub fingerprint: u64,
    pub schema: Schema,
}

/// All published versions, parsed once.
#[derive(Debug)]
pub struct Registry {
    versions: Vec<SchemaVersion>,
    by_fingerprint: HashMap<u64, usize>,
}

impl Registry {
    /// Parses a schema history. Panics on an unparsable schema or a fingerprint collision:
    /// both are build-time mistakes in the embedded files, caught by this crate's tests.
    pub fn from_history(history: &[(SchemaFamily, u32, &str)]) -> Registry {
        let mut versions = Vec::with_capacity(history.len());
        let mut by_fingerprint = HashMap::new();
        for &(family, version, text) in history {
            let schema = Schema::parse_str(text).unwrap_or_else(|e| {
                panic!("{}/v{version}.avsc does not parse: {e}", family.folder())
            });
            let fingerprint = canonical::fingerprint(text).unwrap_or_else(|e| {
                panic!(
                    "{}/v{version}.avsc has no canonical form: {e}",
                    family.folder()
                )
            });
            let previous = by_fingerprint.insert(fingerprint, versions.len());
            assert!(
                previous.is_none(),
                "{}/v{version}.avsc has the fingerprint of an earlier schema",
                family.folder()
            );
            versions.push(SchemaVersion {
                family,
                version,
                fingerprint,
                schema,
            });
        }
        Registry {
            versions,
            by_fingerprint,
        }
    }

    /// The schema a reader needs for data written with `fingerprint`, if it was ever published.
    pub fn by_fingerprint(&self, fingerprint: u64) -> Option<&SchemaVersion> {
        self.by_fingerprint
            .get(&fingerprint)
            .map(|&i| &self.versions[i])
    }

    /// The newest version of a family: what writers use and what readers resolve to.
    pub fn current(&self, family: SchemaFamily) -> &SchemaVersion {
        self.versions_of(family)
            .last()
            .unwrap_or_else(|| panic!("no schema published for {}", family.folder()))
    }

    /// A family's versions, oldest first.
    pub fn versions_of(&self, family: SchemaFamily) -> Vec<&SchemaVersion> {
        let mut of_family: Vec<_> = self
            .versions
            .iter()
            .filter(|v| v.family == family)
            .collect();
        of_family.sort_by_key(|v| v.version);
        of_family
    }
}

/// The registry of this build's published schemas.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry::from_history(HISTORY));
    &REGISTRY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_a_current_version_and_fingerprints_are_distinct() {
        let registry = registry();
        for family in SchemaFamily::ALL {
            let current = registry.current(family);
            assert_eq!(current.family, family);
            assert_eq!(
                registry
                    .by_fingerprint(current.fingerprint)
                    .map(|v| v.version),
                Some(current.version)
            );
        }
        let mut fingerprints: Vec<u64> = SchemaFamily::ALL
            .iter()
            .map(|family| registry.current(*family).fingerprint)
            .collect();
        fingerprints.sort_unstable();
        fingerprints.dedup();
        assert_eq!(fingerprints.len(), SchemaFamily::ALL.len());
    }

    #[test]
    fn published_fingerprints_match_other_avro_implementations() {
        // Computed with Python fastavro from the same files: any Avro client finds our schemas.
        let wire = |family| registry().current(family).fingerprint.to_le_bytes();
        assert_eq!(
            wire(SchemaFamily::TaskEvent),
            [0xbc, 0xf1, 0x66, 0xd4, 0x8d, 0x23, 0xd7, 0xf9]
        );
        assert_eq!(
            wire(SchemaFamily::DataEntryEvent),
            [0xb1, 0xb9, 0xe2, 0xd0, 0xb5, 0x8d, 0x83, 0xed]
        );
        assert_eq!(
            wire(SchemaFamily::TaskCommand),
            [0xb4, 0x86, 0xac, 0x46, 0x9b, 0xe8, 0xd0, 0xd1]
        );
        assert_eq!(
            wire(SchemaFamily::CommandOutcome),
            [0x5e, 0x87, 0x6e, 0xb4, 0x8a, 0xc7, 0xa8, 0x36]
        );
    }

    #[test]
    fn versions_are_numbered_from_one_without_gaps() {
        for family in SchemaFamily::ALL {
            let numbers: Vec<u32> = registry()
                .versions_of(family)
                .iter()
                .map(|v| v.version)
                .collect();
            let expected: Vec<u32> = (1..=u32::try_from(numbers.len()).unwrap()).collect();
            assert_eq!(numbers, expected, "{}", family.folder());
        }
    }

    #[test]
    fn the_embedded_history_matches_the_schema_files_on_disk() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
        for family in SchemaFamily::ALL {
            let mut on_disk: Vec<String> = std::fs::read_dir(dir.join(family.folder()))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".avsc"))
                .collect();
            on_disk.sort();
            let mut embedded: Vec<String> = registry()
                .versions_of(family)
                .iter()
                .map(|v| format!("v{}.avsc", v.version))
                .collect();
            embedded.sort();
            assert_eq!(
                on_disk, embedded,
                "every .avsc file must be listed in HISTORY"
            );
        }
    }
}
