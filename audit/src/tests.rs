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
fn a_record_encodes_to_the_same_bytes_as_ever() {
    // Escapes, keys that sort differently by bytes than by UTF-16 units,
    // numbers of each kind, nesting: the bytes every sealed hash and proof
    // depends on (docs/audit-format.md), fixed here as their SHA-256.
    let payload = json!({
        "TransferCompleted": {
            "path": "/in/a \"quoted\"\nname\u{1}\u{7f}.csv",
            "\u{ffff}": 1,
            "\u{10000}": 2,
            "é": [-1, 0.5, 1e300, u64::MAX, null, true, false, "", {}, []],
            "bytes": 4096,
        }
    });
    let metadata =
        json!({"actor": "bench", "remote_addr": "127.0.0.1:50000", "z": {"b": {}, "a": [[]]}});
    let record = Record {
        position: 18_446_744_073_709_551_615,
        event_id: "0194b0c4-3f00-7000-8000-000000000001",
        aggregate_type: "transfer",
        aggregate_id: "t-1",
        sequence: 2,
        event_type: "TransferCompleted",
        event_version: "1",
        payload: &payload,
        metadata: &metadata,
    };
    let digest: [u8; 32] = Sha256::digest(encode(&record)).into();
    assert_eq!(
        hex::encode(digest),
        "172ba1e632d15c85bb5a95283e02e727d8f3c12d9ccfa08121b31bb6f9351a7c"
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
            unsealed: 2,
            pruned: 0,
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

/// Walks records 1..=n where the positions in `pruned` keep only their seal.
fn verify_pruned(
    records: &[Owned],
    seals: &[(String, String)],
    pruned: &[u64],
) -> Result<Summary, Finding> {
    let mut verifier = Verifier::new();
    for (record, (id, hash)) in records.iter().zip(seals) {
        let seal = Some((id.as_str(), hash.as_str()));
        if pruned.contains(&record.position) {
            verifier.skip_pruned(seal)?;
        } else {
            verifier.step(Some(&record.record()), seal)?;
        }
    }
    Ok(verifier.finish())
}

#[test]
fn pruned_records_keep_the_chain_through_their_seals() {
    let records: Vec<Owned> = (1..=6).map(Owned::new).collect();
    let seals = seal_all(&records);
    assert_eq!(
        verify_pruned(&records, &seals, &[2, 4]),
        Ok(Summary {
            sealed: 6,
            unsealed: 0,
            pruned: 2,
        })
    );
    // The seal of a pruned record altered: the next record no longer chains.
    let mut altered = seals.clone();
    altered[3].1 = hex::encode([7u8; 32]);
    assert_eq!(
        verify_pruned(&records, &altered, &[2, 4]),
        Err(Finding::Altered { position: 5 })
    );
    // A pruned record whose seal is gone, or malformed.
    let mut verifier = Verifier::new();
    verifier
        .step(
            Some(&records[0].record()),
            Some(("e1", seals[0].1.as_str())),
        )
        .unwrap();
    assert_eq!(
        verifier.clone().skip_pruned(None),
        Err(Finding::SealBroken { position: 2 })
    );
    assert_eq!(
        verifier.skip_pruned(Some(("e2", "zz"))),
        Err(Finding::SealBroken { position: 2 })
    );
}

#[test]
fn pruned_records_stand_in_the_tree_by_their_stored_leaves() {
    let records: Vec<Owned> = (1..=5).map(Owned::new).collect();
    let leaves: Vec<String> = records
        .iter()
        .map(|r| hex::encode(tree::leaf_of(&r.record())))
        .collect();
    let signer = note::NoteSigner::from_seed("tollgate.test/audit", [5; 32]).unwrap();
    let mut frontier = merkle::Frontier::default();
    for leaf in &leaves {
        frontier.push(hex::decode(leaf).unwrap().try_into().unwrap());
    }
    let checkpoint = |root| tree::LoggedCheckpoint {
        size: 5,
        key_id: signer.key_id(),
        note: note::Checkpoint {
            origin: "tollgate.test/audit".into(),
            size: 5,
            root,
        }
        .sign(&signer)
        .unwrap(),
    };
    let walk = |stored: &[String], root| {
        let mut verifier = tree::TreeVerifier::new(vec![checkpoint(root)]);
        verifier.trust(&signer.verifier().key()).unwrap();
        for (record, leaf) in records.iter().zip(stored) {
            if record.position == 3 {
                verifier.step_pruned(Some(leaf))?;
            } else {
                verifier.step(&record.record(), Some(leaf))?;
            }
        }
        verifier.finish()
    };
    let summary = walk(&leaves, frontier.root()).unwrap();
    assert_eq!((summary.records, summary.checkpoints), (5, 1));
    let mut altered = leaves.clone();
    altered[2] = hex::encode([1u8; 32]);
    assert!(matches!(
        walk(&altered, frontier.root()),
        Err(Finding::CheckpointMismatch { size: 5, .. })
    ));
    let mut broken = leaves.clone();
    broken[2] = "not hex".into();
    assert_eq!(
        walk(&broken, frontier.root()),
        Err(Finding::LeafAltered { position: 3 })
    );
}
