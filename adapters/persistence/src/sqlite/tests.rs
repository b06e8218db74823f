//! Tests of the SQLite store's own encodings.
use serde_json::{Value, json};

use super::*;

fn event(sequence: usize, payload: Value) -> SerializedEvent {
    SerializedEvent {
        aggregate_id: "a \"quoted\" id".to_string(),
        sequence,
        aggregate_type: "policy".to_string(),
        event_type: "PolicyCreated".to_string(),
        event_version: "1".to_string(),
        payload,
        metadata: json!({"actor": "cli\\admin", "at": "2026-12-02T00:00:00Z"}),
    }
}

#[test]
fn event_rows_hold_each_document_as_the_string_of_its_text() {
    let tricky = "q\"b\\s/\u{1}\u{1f}\n\t\u{7f}é\u{2028}\u{10000}";
    let events = [
        event(
            1,
            json!({"PolicyCreated": {"name": tricky, "n": [1, -2.5, u64::MAX]}}),
        ),
        event(2, json!({"path": "\\\\\"\"", "empty": {}})),
    ];
    let rows: Value = serde_json::from_str(&event_rows(&events)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, event) in rows.iter().zip(&events) {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), 8);
        assert_eq!(row[0].as_str().unwrap().len(), 36, "a UUID");
        assert_eq!(row[1], "policy");
        assert_eq!(row[2], "a \"quoted\" id");
        assert_eq!(row[3], json!(event.sequence));
        assert_eq!(row[4], "PolicyCreated");
        assert_eq!(row[5], "1");
        assert_eq!(row[6].as_str().unwrap(), event.payload.to_string());
        assert_eq!(row[7].as_str().unwrap(), event.metadata.to_string());
    }
    assert_eq!(event_rows(&[]), "[]");
}
