//! Avro single-object encoding of events, and decoding of any published schema version.

use std::sync::LazyLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::commands::{CommandOutcome, TaskCommand};
use crate::registry::{SchemaFamily, registry};
use crate::types::{DataEntryEvent, TaskEvent};

/// The two marker bytes that open every single-object encoded message.
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// An event type with a schema family.
pub trait WireEvent: Serialize + DeserializeOwned {
    const FAMILY: SchemaFamily;
}

impl WireEvent for TaskEvent {
    const FAMILY: SchemaFamily = SchemaFamily::TaskEvent;
}

impl WireEvent for DataEntryEvent {
    const FAMILY: SchemaFamily = SchemaFamily::DataEntryEvent;
}

impl WireEvent for TaskCommand {
    const FAMILY: SchemaFamily = SchemaFamily::TaskCommand;
}

impl WireEvent for CommandOutcome {
    const FAMILY: SchemaFamily = SchemaFamily::CommandOutcome;
}

/// Why an event could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the current {0:?} schema cannot be used for writing: {1}")]
    Schema(SchemaFamily, String),
    #[error("cannot encode {family:?}")]
    Value {
        family: SchemaFamily,
        #[source]
        source: apache_avro::Error,
    },
}

/// Why bytes could not be decoded into an event. The text names the cause, never the data.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {0} bytes, shorter than the 10-byte single-object header")]
    TooShort(usize),
    #[error("message does not start with the Avro single-object marker C3 01")]
    NotSingleObject,
    #[error("schema fingerprint {0:016x} is not a published taskpool schema")]
    UnknownSchema(u64),
    #[error("schema fingerprint {fingerprint:016x} belongs to {actual:?}, expected {expected:?}")]
    WrongFamily {
        fingerprint: u64,
        expected: SchemaFamily,
        actual: SchemaFamily,
    },
    #[error("body does not match its schema")]
    Body(#[source] apache_avro::Error),
    #[error("{0} trailing bytes after the Avro body")]
    TrailingBytes(usize),
    #[error("schema fingerprint {fingerprint:016x} belongs to {family:?}, not to an event")]
    NotAnEvent {
        fingerprint: u64,
        family: SchemaFamily,
    },
}

/// A writer per family, built once: resolving a schema's names costs more than encoding.
fn writer(family: SchemaFamily) -> Result<&'static GenericDatumWriter<'static>, EncodeError> {
    type Cached = Result<GenericDatumWriter<'static>, String>;
    fn build(family: SchemaFamily) -> Cached {
        GenericDatumWriter::builder(&registry().current(family).schema)
            .build()
            .map_err(|e| e.to_string())
    }
    static TASK: LazyLock<Cached> = LazyLock::new(|| build(SchemaFamily::TaskEvent));
    static DATA_ENTRY: LazyLock<Cached> = LazyLock::new(|| build(SchemaFamily::DataEntryEvent));
    static COMMAND: LazyLock<Cached> = LazyLock::new(|| build(SchemaFamily::TaskCommand));
    static OUTCOME: LazyLock<Cached> = LazyLock::new(|| build(SchemaFamily::CommandOutcome));
    let cached = match family {
        SchemaFamily::TaskEvent => &*TASK,
        SchemaFamily::DataEntryEvent => &*DATA_ENTRY,
        SchemaFamily::TaskCommand => &*COMMAND,
        SchemaFamily::CommandOutcome => &*OUTCOME,
    };
    cached
        .as_ref()
        .map_err(|reason| EncodeError::Schema(family, reason.clone()))
}

/// Encodes an event with its family's current schema: marker, fingerprint, Avro body.
pub fn encode<E: WireEvent>(event: &E) -> Result<Vec<u8>, EncodeError> {
    let current = registry().current(E::FAMILY);
    let writer = writer(E::FAMILY)?;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&SINGLE_OBJECT_MARKER);
    out.extend_from_slice(&current.fingerprint.to_le_bytes());
    writer
        .write_ser(&mut out, event)
        .map_err(|source| EncodeError::Value {
            family: E::FAMILY,
            source,
        })?;
    Ok(out)
}

/// Reads the fingerprint from a single-object header.
pub fn fingerprint(bytes: &[u8]) -> Result<u64, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes[..2] != SINGLE_OBJECT_MARKER {
        return Err(DecodeError::NotSingleObject);
    }
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[2..HEADER_LEN]);
    Ok(u64::from_le_bytes(le))
}

/// Decodes an event of a known family written with any published version of its schema.
pub fn decode_as<E: WireEvent>(bytes: &[u8]) -> Result<E, DecodeError> {
    let fingerprint = fingerprint(bytes)?;
    let writer = registry()
        .by_fingerprint(fingerprint)
        .ok_or(DecodeError::UnknownSchema(fingerprint))?;
    if writer.family != E::FAMILY {
        return Err(DecodeError::WrongFamily {
            fingerprint,
            expected: E::FAMILY,
            actual: writer.family,
        });
    }
    let current = registry().current(E::FAMILY);
    let mut body = &bytes[HEADER_LEN..];
    let event = if writer.fingerprint == current.fingerprint {
        GenericDatumReader::builder(&writer.schema)
            .build()
            .and_then(|reader| reader.read_deser(&mut body))
            .map_err(DecodeError::Body)?
    } else {
        // Older writer: resolve the written value into the current schema (defaults fill new
        // fields), then map it onto the Rust type.
        let value = GenericDatumReader::builder(&writer.schema)
            .reader_schema(&current.schema)
            .build()
            .and_then(|reader| reader.read_value(&mut body))
            .map_err(DecodeError::Body)?;
        apache_avro::from_value(&value).map_err(DecodeError::Body)?
    };
    if !body.is_empty() {
        return Err(DecodeError::TrailingBytes(body.len()));
    }
    Ok(event)
}

/// An event of either family.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodedEvent {
    Task(TaskEvent),
    DataEntry(DataEntryEvent),
}

/// Decodes an event of either family, telling which by its schema fingerprint.
pub fn decode(bytes: &[u8]) -> Result<DecodedEvent, DecodeError> {
    let fingerprint = fingerprint(bytes)?;
    let writer = registry()
        .by_fingerprint(fingerprint)
        .ok_or(DecodeError::UnknownSchema(fingerprint))?;
    match writer.family {
        SchemaFamily::TaskEvent => decode_as::<TaskEvent>(bytes).map(DecodedEvent::Task),
        SchemaFamily::DataEntryEvent => {
            decode_as::<DataEntryEvent>(bytes).map(DecodedEvent::DataEntry)
        }
        family @ (SchemaFamily::TaskCommand | SchemaFamily::CommandOutcome) => {
            Err(DecodeError::NotAnEvent {
                fingerprint,
                family,
            })
        }
    }
}
