//! Avro Parsing Canonical Form and its CRC-64-AVRO fingerprint, as the Avro specification
//! defines them, so fingerprints match every other Avro implementation (Java, Python, ...).
//! (apache-avro 0.22 keeps `{"type":"long"}` where a logical type was stripped, which changes
//! the fingerprint; hence our own implementation.)

use serde_json::{Map, Value};

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// Why a schema text has no canonical form.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    #[error("schema is not JSON")]
    Json(#[from] serde_json::Error),
    #[error("malformed schema: {0}")]
    Malformed(String),
}

/// The Parsing Canonical Form of a schema given as JSON text.
pub fn parsing_canonical_form(schema_json: &str) -> Result<String, CanonicalError> {
    let schema: Value = serde_json::from_str(schema_json)?;
    let mut out = String::new();
    write_schema(&schema, "", &mut out)?;
    Ok(out)
}

/// CRC-64-AVRO (Rabin) fingerprint of bytes, per the Avro specification.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    static TABLE: std::sync::LazyLock<[u64; 256]> = std::sync::LazyLock::new(|| {
        let mut table = [0u64; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            }
            *slot = fp;
        }
        table
    });
    bytes.iter().fold(EMPTY, |fp, &b| {
        (fp >> 8) ^ TABLE[usize::from((fp as u8) ^ b)]
    })
}

/// The fingerprint single-object encoding puts in its header.
pub fn fingerprint(schema_json: &str) -> Result<u64, CanonicalError> {
    parsing_canonical_form(schema_json).map(|pcf| crc64_avro(pcf.as_bytes()))
}

fn malformed(what: impl Into<String>) -> CanonicalError {
    CanonicalError::Malformed(what.into())
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

fn write_str(text: &str, out: &mut String) {
    out.push_str(&Value::String(text.to_string()).to_string());
}

fn write_schema(schema: &Value, namespace: &str, out: &mut String) -> Result<(), CanonicalError> {
    match schema {
        Value::String(name) if PRIMITIVES.contains(&name.as_str()) => write_str(name, out),
        Value::String(name) => write_str(&full_name(name, namespace), out),
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(branch, namespace, out)?;
            }
            out.push(']');
        }
        Value::Object(object) => write_complex(object, namespace, out)?,
        other => return Err(malformed(format!("unexpected schema {other}"))),
    }
    Ok(())
}

fn write_complex(
    object: &Map<String, Value>,
    namespace: &str,
    out: &mut String,
) -> Result<(), CanonicalError> {
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(nested) => return write_schema(nested, namespace, out),
        None => return Err(malformed("object without \"type\"")),
    };
    if PRIMITIVES.contains(&kind) {
        // A primitive with extra attributes (a logical type, say) is just the primitive.
        write_str(kind, out);
        return Ok(());
    }
    match kind {
        "record" | "error" | "enum" | "fixed" => {
            let name = object
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(format!("{kind} without a name")))?;
            let explicit_namespace = object.get("namespace").and_then(Value::as_str);
            let name = full_name(name, explicit_namespace.unwrap_or(namespace));
            let inner_namespace = name.rsplit_once('.').map_or("", |(ns, _)| ns);
            out.push_str("{\"name\":");
            write_str(&name, out);
            out.push_str(",\"type\":");
            write_str(kind, out);
            match kind {
                "enum" => {
                    out.push_str(",\"symbols\":");
                    let symbols = object
                        .get("symbols")
                        .ok_or_else(|| malformed("enum without symbols"))?;
                    out.push_str(&symbols.to_string());
                }
                "fixed" => {
                    let size = object
                        .get("size")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| malformed("fixed without a size"))?;
                    out.push_str(&format!(",\"size\":{size}"));
                }
                _ => {
                    out.push_str(",\"fields\":[");
                    let fields = object
                        .get("fields")
                        .and_then(Value::as_array)
                        .ok_or_else(|| malformed("record without fields"))?;
                    for (i, field) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let field_name = field
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| malformed("field without a name"))?;
                        let field_type = field
                            .get("type")
                            .ok_or_else(|| malformed("field without a type"))?;
                        out.push_str("{\"name\":");
                        write_str(field_name, out);
                        out.push_str(",\"type\":");
                        write_schema(field_type, inner_namespace, out)?;
                        out.push('}');
                    }
                    out.push(']');
                }
            }
            out.push('}');
        }
        "array" => {
            out.push_str("{\"type\":\"array\",\"items\":");
            let items = object
                .get("items")
                .ok_or_else(|| malformed("array without items"))?;
            write_schema(items, namespace, out)?;
            out.push('}');
        }
        "map" => {
            out.push_str("{\"type\":\"map\",\"values\":");
            let values = object
                .get("values")
                .ok_or_else(|| malformed("map without values"))?;
            write_schema(values, namespace, out)?;
            out.push('}');
        }
        other => return Err(malformed(format!("unknown type {other}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers computed with an independent implementation (Python fastavro), written as
    // the little-endian bytes single-object encoding puts on the wire.
    fn wire_hex(fingerprint: u64) -> String {
        fingerprint
            .to_le_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn primitive_fingerprints_match_the_specification() {
        assert_eq!(
            wire_hex(fingerprint(r#""null""#).unwrap()),
            "8a8f25cce724dd63"
        );
        assert_eq!(
            wire_hex(fingerprint(r#""int""#).unwrap()),
            "8f5c393f1ad57572"
        );
        assert_eq!(
            wire_hex(fingerprint(r#"{"type":"long","logicalType":"timestamp-millis"}"#).unwrap()),
            "b71df49344e154d0"
        );
    }

    #[test]
    fn named_types_get_full_names_and_only_parsing_attributes_stay() {
        let schema = r#"{"type":"record","name":"E","namespace":"a.b","doc":"x","fields":[
            {"name":"x","type":{"type":"enum","name":"K","symbols":["A","B"]}},
            {"name":"y","type":"K","default":"A","doc":"d"},
            {"name":"z","type":{"type":"fixed","name":"c.F","size":4}},
            {"name":"m","type":{"type":"map","values":["null","c.F"]}},
            {"name":"arr","type":{"type":"array","items":{"type":"int"}}},
            {"name":"r","type":{"type":"record","name":"Inner","namespace":"q","fields":[{"name":"k","type":"a.b.K"}]}}]}"#;
        assert_eq!(
            parsing_canonical_form(schema).unwrap(),
            r#"{"name":"a.b.E","type":"record","fields":[{"name":"x","type":{"name":"a.b.K","type":"enum","symbols":["A","B"]}},{"name":"y","type":"a.b.K"},{"name":"z","type":{"name":"c.F","type":"fixed","size":4}},{"name":"m","type":{"type":"map","values":["null","c.F"]}},{"name":"arr","type":{"type":"array","items":"int"}},{"name":"r","type":{"name":"q.Inner","type":"record","fields":[{"name":"k","type":"a.b.K"}]}}]}"#
        );
        assert_eq!(wire_hex(fingerprint(schema).unwrap()), "f82921ca8244355c");
    }

    #[test]
    fn malformed_schemas_are_errors() {
        assert!(fingerprint("{").is_err());
        assert!(fingerprint(r#"{"type":"record","fields":[]}"#).is_err());
        assert!(fingerprint(r#"{"type":"wat"}"#).is_err());
    }
}
