//! Tests of the parent module.
use serde_json::json;

use super::*;

struct Owned {
    position: u64,
    event_id: String,
    payload: serde_json::Value,
    metadata: serde_json::Value,
}

impl Owned {
    fn new(position: u64) -> Self {
        Owned {
            position,
            event_id: format!("e{position}"),
            payload: json!({"UserCreated": {"username": format!("u{position}"), "home": "/h"}}),
            metadata: json!({"actor": "cli", "time": "2026-01-01T00:00:00Z"}),
        }
    }
    fn record(&self) -> Record<'_> {
        Record {
            position: self.position,
            event_id: &self.event_id,
            aggregate_type: "user",
            aggregate_id: "u",
            sequence: self.position,
            event_type: "UserCreated",
            event_version: "1",
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }
}

fn seal_all(records: &[Owned]) -> Vec<(String, String)> {
    let mut previous = GENESIS;
    records
        .iter()
        .map(|r| {
            previous = chain(&previous, &r.record());
            (r.event_id.clone(), hex::encode(previous))
        })
        .collect()
}

fn verify(
    records: &[Option<&Owned>],
    seals: &[Option<(String, String)>],
) -> Result<Summary, Finding> {
    let mut verifier = Verifier::new();
    for i in 0..records.len().max(seals.len()) {
        let record = records.get(i).copied().flatten().map(Owned::record);
        let seal = seals.get(i).cloned().flatten();
        verifier.step(
            record.as_ref(),
            seal.as_ref().map(|(id, h)| (id.as_str(), h.as_str())),
        )?;
    }
    Ok(verifier.finish())
}

#[test]
fn canonical_json_sorts_keys_at_every_level() {
    let value = json!({"b": 1, "a": {"z": [1, {"y": true, "x": null}], "c": "é"}});
    assert_eq!(
        canonical_json(&value),
        r#"{"a":{"c":"é","z":[1,{"x":null,"y":true}]},"b":1}"#
    );
}

#[test]
fn an_untouched_log_verifies_and_reports_the_unsealed_tail() {
    let records: Vec<Owned> = (1..=5).map(Owned::new).collect();
    let mut seals: Vec<_> = seal_all(&records).into_iter().map(Some).collect();
    seals.truncate(3);
    let refs: Vec<_> = records.iter().map(Some).collect();
    assert_eq!(
        verify(&refs, &seals),
        Ok(Summary {
            sealed: 3,
            unsealed: 2
        })
    );
}

#[test]
fn a_modified_record_is_found() {
    let mut records: Vec<Owned> = (1..=4).map(Owned::new).collect();
    let seals: Vec<_> = seal_all(&records).into_iter().map(Some).collect();
    records[2].payload = json!({"UserCreated": {"username": "mallory", "home": "/h"}});
    let refs: Vec<_> = records.iter().map(Some).collect();
    assert_eq!(verify(&refs, &seals), Err(Finding::Altered { position: 3 }));
}

#[test]
fn a_removed_record_is_found() {
    let records: Vec<Owned> = (1..=4).map(Owned::new).collect();
    let seals: Vec<_> = seal_all(&records).into_iter().map(Some).collect();
    let refs = vec![
        Some(&records[0]),
        None,
        Some(&records[2]),
        Some(&records[3]),
    ];
    assert_eq!(verify(&refs, &seals), Err(Finding::Removed { position: 2 }));
}

#[test]
fn swapped_records_are_found() {
    let mut records: Vec<Owned> = (1..=4).map(Owned::new).collect();
    let seals: Vec<_> = seal_all(&records).into_iter().map(Some).collect();
    let (a, b) = (records[1].payload.clone(), records[2].payload.clone());
    records[1].payload = b;
    records[2].payload = a;
    let refs: Vec<_> = records.iter().map(Some).collect();
    assert_eq!(verify(&refs, &seals), Err(Finding::Altered { position: 2 }));
}

#[test]
fn a_removed_seal_in_the_middle_is_found() {
    let records: Vec<Owned> = (1..=4).map(Owned::new).collect();
    let mut seals: Vec<_> = seal_all(&records).into_iter().map(Some).collect();
    seals[1] = None;
    let refs: Vec<_> = records.iter().map(Some).collect();
    assert_eq!(
        verify(&refs, &seals),
        Err(Finding::SealBroken { position: 2 })
    );
}

#[test]
fn the_encoding_separates_fields_unambiguously() {
    let a = Owned::new(1);
    let mut b = Owned::new(1);
    b.event_id = "e".into();
    let mut ra = a.record();
    ra.aggregate_id = "1u";
    let mut rb = b.record();
    rb.aggregate_id = "11u";
    assert_ne!(encode(&ra), encode(&rb));
}
