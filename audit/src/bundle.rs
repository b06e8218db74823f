//! Evidence bundles: a contiguous run of audit records with what proves
//! them against a signed checkpoint, verifiable offline with nothing but
//! the trusted public key.
//!
//! The proof of records `first..=last` in a tree of `tree_size` leaves is:
//! the leaf hashes of those records; the roots of the perfect subtrees
//! left of them (`left`, the frontier of the first `first - 1` leaves);
//! and the RFC 6962 consistency proof from the tree of `last` leaves to
//! the checkpoint's. The verifier rebuilds the root of the first `last`
//! leaves from `left` and the leaves, checks it is consistent with the
//! signed root, then checks each record against its (now authenticated)
//! leaf, so the first altered, missing or extra record is named.

use serde::{Deserialize, Serialize};

use crate::merkle::{self, Frontier, Hash};
use crate::note::{Checkpoint, NoteError, NoteVerifier};
use crate::{Record, leaf_of};

/// The version of the bundle layout.
pub const BUNDLE_FORMAT: &str = "tollgate-evidence-bundle-v1";

/// One record as a bundle carries it (`records.ndjson`, one per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct BundleRecord {
    pub position: u64,
    pub event_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
}

impl BundleRecord {
    /// The record, as the audit encoding sees it.
    pub fn record(&self) -> Record<'_> {
        Record {
            position: self.position,
            event_id: &self.event_id,
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }
}

/// What proves a bundle's records (`proof.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleProof {
    /// The first record's position.
    pub first: u64,
    /// The last record's position.
    pub last: u64,
    /// The size of the signed checkpoint's tree.
    pub tree_size: u64,
    /// Hex roots of the perfect subtrees before `first`, largest first.
    pub left: Vec<String>,
    /// Hex leaf hashes of records `first..=last`.
    pub leaves: Vec<String>,
    /// Hex consistency proof from `last` leaves to `tree_size`.
    pub consistency: Vec<String>,
}

/// Why a bundle does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The checkpoint is not validly signed by the trusted key.
    #[error("the checkpoint is not signed by the trusted key: {0}")]
    Signature(NoteError),
    /// The proof is for another tree than the checkpoint's.
    #[error("the proof is for a tree of {proof} records, the checkpoint for {checkpoint}")]
    TreeSize {
        /// Size in the proof.
        proof: u64,
        /// Size in the signed checkpoint.
        checkpoint: u64,
    },
    /// The proof's shape does not fit its range.
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// The leaves and proof do not lead to the signed root.
    #[error("the proof does not lead to the signed root: {0}")]
    Root(merkle::ProofError),
    /// A record differs from the one the log committed to.
    #[error("record {position} was altered: it is not the record the log committed to")]
    RecordAltered {
        /// Its position.
        position: u64,
    },
    /// A record of the range is missing.
    #[error("record {position} is missing from the bundle")]
    RecordMissing {
        /// The missing position.
        position: u64,
    },
    /// A record outside the range or out of order.
    #[error("record {position} is out of place (expected record {expected})")]
    RecordOutOfPlace {
        /// The position found.
        position: u64,
        /// The position expected there.
        expected: u64,
    },
}

/// What a verified bundle proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSummary {
    /// Records verified.
    pub records: u64,
    /// Their positions.
    pub first: u64,
    /// The last one.
    pub last: u64,
    /// The signed checkpoint's tree size.
    pub tree_size: u64,
    /// The checkpoint's origin.
    pub origin: String,
}

fn hash(text: &str) -> Result<Hash, BundleError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| BundleError::Malformed(format!("{text:?} is not a hex SHA-256 hash")))?;
    Ok(out)
}

fn hashes(texts: &[String]) -> Result<Vec<Hash>, BundleError> {
    texts.iter().map(|t| hash(t)).collect()
}

/// Verifies `records` (in file order) against `proof` and the checkpoint
/// `note`, trusting only `trusted`.
pub fn verify_bundle(
    records: &[BundleRecord],
    proof: &BundleProof,
    note: &str,
    trusted: &NoteVerifier,
) -> Result<BundleSummary, BundleError> {
    let checkpoint = Checkpoint::open(note, trusted).map_err(BundleError::Signature)?;
    if proof.tree_size != checkpoint.size {
        return Err(BundleError::TreeSize {
            proof: proof.tree_size,
            checkpoint: checkpoint.size,
        });
    }
    if proof.first == 0 || proof.first > proof.last || proof.last > proof.tree_size {
        return Err(BundleError::Malformed(format!(
            "records {}..={} do not fit a tree of {}",
            proof.first, proof.last, proof.tree_size
        )));
    }
    let count = proof.last - proof.first + 1;
    if proof.leaves.len() as u64 != count {
        return Err(BundleError::Malformed(format!(
            "{} leaves for {count} records",
            proof.leaves.len()
        )));
    }
    let leaves = hashes(&proof.leaves)?;
    let mut frontier = Frontier::from_nodes(proof.first - 1, hashes(&proof.left)?)
        .ok_or_else(|| BundleError::Malformed("the left subtrees do not fit the range".into()))?;
    for leaf in &leaves {
        frontier.push(*leaf);
    }
    merkle::verify_consistency(
        proof.last,
        proof.tree_size,
        &frontier.root(),
        &checkpoint.root,
        &hashes(&proof.consistency)?,
    )
    .map_err(BundleError::Root)?;
    // The leaves are authentic; now each record must be its leaf.
    let present: std::collections::HashSet<u64> = records.iter().map(|r| r.position).collect();
    let mut records = records.iter();
    for (expected, leaf) in (proof.first..=proof.last).zip(&leaves) {
        let Some(record) = records.next() else {
            return Err(BundleError::RecordMissing { position: expected });
        };
        if record.position != expected {
            return Err(if present.contains(&expected) {
                BundleError::RecordOutOfPlace {
                    position: record.position,
                    expected,
                }
            } else {
                BundleError::RecordMissing { position: expected }
            });
        }
        if leaf_of(&record.record()) != *leaf {
            return Err(BundleError::RecordAltered { position: expected });
        }
    }
    if let Some(extra) = records.next() {
        return Err(BundleError::RecordOutOfPlace {
            position: extra.position,
            expected: proof.last + 1,
        });
    }
    Ok(BundleSummary {
        records: count,
        first: proof.first,
        last: proof.last,
        tree_size: proof.tree_size,
        origin: checkpoint.origin,
    })
}

#[cfg(test)]
mod tests;
