//! The schema evolution rule: every version of a family can read data written with any older
//! version of it (backward compatibility, transitively), so consumers upgrade first.

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

/// Why a newer schema cannot read data written with an older one.
#[derive(Debug, thiserror::Error)]
#[error("v{reader} cannot read data written with v{writer}: {reason}")]
pub struct Incompatible {
    pub writer: u32,
    pub reader: u32,
    pub reason: String,
}

/// Checks that each schema in `history` (oldest first, `(version, schema)`) reads all earlier ones.
pub fn check_history(history: &[(u32, &Schema)]) -> Result<(), Incompatible> {
    for (i, (reader_version, reader)) in history.iter().enumerate() {
        for (writer_version, writer) in &history[..i] {
            match SchemaCompatibility::can_read(writer, reader) {
                Ok(Compatibility::Full) => {}
                Ok(Compatibility::Partial) => {
                    return Err(Incompatible {
                        writer: *writer_version,
                        reader: *reader_version,
                        reason: "only some values can be read (enum symbols or union branches were removed)".into(),
                    });
                }
                Err(e) => {
                    return Err(Incompatible {
                        writer: *writer_version,
                        reader: *reader_version,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
    Ok(())
}
