//! Tests of the parent module: a bundle built from a small log, then each
//! way of tampering with it.

use super::*;
use crate::merkle::consistency_proof;
use crate::note::NoteSigner;

fn records(n: u64) -> Vec<BundleRecord> {
    (1..=n)
        .map(|position| BundleRecord {
            position,
            event_id: format!("00000000-0000-4000-8000-{position:012}"),
            aggregate_type: "policy".into(),
            aggregate_id: format!("p{position}"),
            sequence: 1,
            event_type: "PolicyCreated".into(),
            event_version: "1".into(),
            payload: serde_json::json!({"PolicyCreated": {"name": format!("p{position}")}}),
            metadata: serde_json::json!({"actor": "cli", "time": "2026-11-30T00:00:00Z"}),
        })
        .collect()
}

/// A bundle of records `first..=last` of a log of `size`, signed by `signer`.
fn bundle(
    all: &[BundleRecord],
    first: u64,
    last: u64,
    signer: &NoteSigner,
) -> (Vec<BundleRecord>, BundleProof, String) {
    let leaves: Vec<Hash> = all.iter().map(|r| leaf_of(&r.record())).collect();
    let mut left = Frontier::default();
    for leaf in &leaves[..first as usize - 1] {
        left.push(*leaf);
    }
    let size = all.len() as u64;
    let proof = BundleProof {
        first,
        last,
        tree_size: size,
        left: left.nodes().iter().map(hex::encode).collect(),
        leaves: leaves[first as usize - 1..last as usize]
            .iter()
            .map(hex::encode)
            .collect(),
        consistency: consistency_proof(&leaves, last)
            .unwrap()
            .iter()
            .map(hex::encode)
            .collect(),
    };
    let note = Checkpoint {
        origin: "tollgate.test/audit".into(),
        size,
        root: merkle::root(&leaves),
    }
    .sign(signer)
    .unwrap();
    (all[first as usize - 1..last as usize].to_vec(), proof, note)
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("tollgate.test/audit", [5; 32]).unwrap()
}

#[test]
fn every_range_of_a_log_verifies() {
    let all = records(23);
    let signer = signer();
    for first in 1..=23 {
        for last in first..=23 {
            let (records, proof, note) = bundle(&all, first, last, &signer);
            let summary = verify_bundle(&records, &proof, &note, &signer.verifier())
                .unwrap_or_else(|e| panic!("{first}..={last}: {e}"));
            assert_eq!(
                (summary.first, summary.last, summary.tree_size),
                (first, last, 23)
            );
        }
    }
}

#[test]
fn each_kind_of_tampering_is_named() {
    let all = records(20);
    let signer = signer();
    let trusted = signer.verifier();
    let (records, proof, note) = bundle(&all, 5, 15, &signer);

    let mut altered = records.clone();
    altered[3].payload = serde_json::json!({"PolicyCreated": {"name": "forged"}});
    assert_eq!(
        verify_bundle(&altered, &proof, &note, &trusted),
        Err(BundleError::RecordAltered { position: 8 })
    );

    let mut dropped = records.clone();
    dropped.remove(2);
    assert_eq!(
        verify_bundle(&dropped, &proof, &note, &trusted),
        Err(BundleError::RecordMissing { position: 7 })
    );

    let mut swapped = records.clone();
    swapped.swap(1, 2);
    assert_eq!(
        verify_bundle(&swapped, &proof, &note, &trusted),
        Err(BundleError::RecordOutOfPlace {
            position: 7,
            expected: 6
        })
    );

    let truncated = records[..records.len() - 2].to_vec();
    assert_eq!(
        verify_bundle(&truncated, &proof, &note, &trusted),
        Err(BundleError::RecordMissing { position: 14 })
    );

    // Leaves rewritten to match altered records no longer reach the root.
    let mut forged_proof = proof.clone();
    forged_proof.leaves[3] = hex::encode(leaf_of(&altered[3].record()));
    assert!(matches!(
        verify_bundle(&altered, &forged_proof, &note, &trusted),
        Err(BundleError::Root(_))
    ));

    // A replaced signature.
    let sig_start = note.rfind(' ').unwrap() + 1;
    let mut bad_note = note.clone();
    bad_note.replace_range(sig_start + 8..sig_start + 12, "AAAA");
    assert!(matches!(
        verify_bundle(&records, &proof, &bad_note, &trusted),
        Err(BundleError::Signature(_))
    ));

    // An old checkpoint replayed: signed, but for a smaller tree.
    let old_leaves: Vec<Hash> = all[..16].iter().map(|r| leaf_of(&r.record())).collect();
    let old_note = Checkpoint {
        origin: "tollgate.test/audit".into(),
        size: 16,
        root: merkle::root(&old_leaves),
    }
    .sign(&signer)
    .unwrap();
    assert_eq!(
        verify_bundle(&records, &proof, &old_note, &trusted),
        Err(BundleError::TreeSize {
            proof: 20,
            checkpoint: 16
        })
    );
}

#[test]
fn a_self_consistent_bundle_signed_by_another_key_is_refused() {
    // A malicious server rebuilds everything around forged records and
    // signs with its own key under the same name.
    let mut all = records(12);
    all[4].payload = serde_json::json!({"PolicyCreated": {"name": "rewritten"}});
    let impostor = NoteSigner::from_seed("tollgate.test/audit", [6; 32]).unwrap();
    let (records, proof, note) = bundle(&all, 1, 12, &impostor);
    assert!(verify_bundle(&records, &proof, &note, &impostor.verifier()).is_ok());
    assert!(matches!(
        verify_bundle(&records, &proof, &note, &signer().verifier()),
        Err(BundleError::Signature(NoteError::NotSignedBy { .. }))
    ));
}
