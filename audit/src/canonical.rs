//! Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace,
//! strings and numbers as serde_json writes them. Independent of how the
//! JSON was stored (PostgreSQL `jsonb` reorders keys).

use serde_json::Value;

/// The canonical text of a JSON value.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write(value, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Appends the canonical text of `value` to `out`, without an allocation
/// of its own unless an object's keys come out of order.
pub(crate) fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            // serde_json's map keeps its keys sorted (a `BTreeMap` of
            // `String`, whose order is that of the bytes) unless a crate
            // in the build turns on `preserve_order`.
            if map.keys().is_sorted_by(|a, b| a.as_bytes() <= b.as_bytes()) {
                write_entries(map.iter(), out);
            } else {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                write_entries(entries.into_iter(), out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_entries<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut Vec<u8>) {
    for (i, (key, item)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_scalar(key.as_str(), out);
        out.push(b':');
        write(item, out);
    }
}

/// A string, number, boolean or null as serde_json writes it.
fn write_scalar(scalar: &(impl serde::Serialize + ?Sized), out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, scalar).expect("a JSON scalar writes to memory");
}
