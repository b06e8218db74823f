//! The tamper-evident audit trail: a canonical byte encoding of every event
//! record and the SHA-256 hash chain over them, with a streaming verifier.
//!
//! Architecture invariant: this crate is a pure library. It does no I/O,
//! needs no database and no runtime, so an export can be verified offline
//! with nothing but this code. The format is documented in
//! `docs/audit-format.md` and is a stable API boundary.
#![warn(missing_docs)]

use sha2::{Digest, Sha256};

pub mod bundle;
mod canonical;
pub mod merkle;
pub mod note;
mod tree;

pub use tree::{LoggedCheckpoint, TreeSummary, TreeVerifier, leaf_of};

pub use canonical::canonical_json;

/// The domain separator that starts every encoded record.
pub const RECORD_TAG: &[u8] = b"tollgate-audit-record-v1";

/// The hash that precedes the first record.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// One event record as the audit trail sees it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Gapless global position.
    pub position: u64,
    /// Stable event id.
    pub event_id: &'a str,
    /// Aggregate type.
    pub aggregate_type: &'a str,
    /// Aggregate id.
    pub aggregate_id: &'a str,
    /// Sequence within the aggregate.
    pub sequence: u64,
    /// Event type.
    pub event_type: &'a str,
    /// Event version.
    pub event_version: &'a str,
    /// The payload.
    pub payload: &'a serde_json::Value,
    /// The metadata.
    pub metadata: &'a serde_json::Value,
}

/// The canonical bytes of a record: the tag, then each field as a 4-byte
/// big-endian length and its UTF-8 bytes, in a fixed order.
pub fn encode(record: &Record<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(RECORD_TAG);
    push_text(&mut out, &record.position.to_string());
    push_text(&mut out, record.event_id);
    push_text(&mut out, record.aggregate_type);
    push_text(&mut out, record.aggregate_id);
    push_text(&mut out, &record.sequence.to_string());
    push_text(&mut out, record.event_type);
    push_text(&mut out, record.event_version);
    push_field(&mut out, |out| canonical::write(record.payload, out));
    push_field(&mut out, |out| canonical::write(record.metadata, out));
    out
}

fn push_text(out: &mut Vec<u8>, text: &str) {
    push_field(out, |out| out.extend_from_slice(text.as_bytes()));
}

/// Appends one field of a record: its length as 4 bytes big-endian, then
/// what `write` appends.
fn push_field(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out);
    let len = u32::try_from(out.len() - at - 4).expect("an event field is smaller than 4 GiB");
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// The chain hash of `record` following `previous`:
/// `SHA-256(previous || encode(record))`.
pub fn chain(previous: &[u8; 32], record: &Record<'_>) -> [u8; 32] {
    chain_encoded(previous, &encode(record))
}

/// `chain` of a record already encoded (`encode`), for a caller that
/// needs the encoding for something else too.
pub fn chain_encoded(previous: &[u8; 32], encoded: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(encoded);
    hasher.finalize().into()
}

/// The first problem a verification found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    /// A sealed record's content no longer matches its hash.
    #[error("record {position} was altered: its hash does not match the chain")]
    Altered {
        /// The first position that does not verify.
        position: u64,
    },
    /// A sealed record is missing from the log.
    #[error("record {position} was removed from the log")]
    Removed {
        /// The missing position.
        position: u64,
    },
    /// A record appears at a position other than the next one.
    #[error("record {position} is out of order (expected position {expected})")]
    OutOfOrder {
        /// The position found.
        position: u64,
        /// The position expected.
        expected: u64,
    },
    /// A seal is missing or does not belong to the record at its position.
    #[error("the seal of record {position} is missing or altered")]
    SealBroken {
        /// The position.
        position: u64,
    },
    /// A stored Merkle leaf does not match its record.
    #[error("the Merkle leaf of record {position} is missing or altered")]
    LeafAltered {
        /// The position.
        position: u64,
    },
    /// A checkpoint's root is not the root of the records it covers.
    #[error(
        "checkpoint {size} does not match the records: root {claimed}, records give {computed}"
    )]
    CheckpointMismatch {
        /// The checkpoint's tree size.
        size: u64,
        /// Hex root in the checkpoint.
        claimed: String,
        /// Hex root of the records.
        computed: String,
    },
    /// A checkpoint's signature does not verify with a trusted key.
    #[error("checkpoint {size} is not validly signed by a trusted key: {reason}")]
    CheckpointSignature {
        /// The checkpoint's tree size.
        size: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record is missing as pruned, but no recorded prune covers it.
    #[error("record {position} is missing and no recorded prune covers it")]
    PrunedUndeclared {
        /// The position.
        position: u64,
    },
    /// A checkpoint covers more records than the log holds.
    #[error("checkpoint {size} covers records the log does not hold (it has {records})")]
    CheckpointBeyondLog {
        /// The checkpoint's tree size.
        size: u64,
        /// Records in the log.
        records: u64,
    },
}

/// Walks records and seals in position order, one position at a time.
#[derive(Debug, Clone)]
pub struct Verifier {
    previous: [u8; 32],
    next: u64,
    sealed: u64,
    pruned: u64,
}

/// What a finished verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records whose seal verified.
    pub sealed: u64,
    /// Records after the last seal (not yet sealed, so not yet protected).
    pub unsealed: u64,
    /// Sealed records pruned from the log after their export (counted in
    /// `sealed`; their content is proven by their evidence bundle).
    pub pruned: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            previous: GENESIS,
            next: 1,
            sealed: 0,
            pruned: 0,
        }
    }
}

impl Verifier {
    /// A verifier positioned before the first record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next position: its record (if present in the log) and its
    /// seal (`event_id`, hex hash) if present.
    pub fn step(
        &mut self,
        record: Option<&Record<'_>>,
        seal: Option<(&str, &str)>,
    ) -> Result<(), Finding> {
        let position = self.next;
        match (record, seal) {
            (None, None) => return Err(Finding::Removed { position }),
            (None, Some(_)) => return Err(Finding::Removed { position }),
            (Some(record), _) if record.position != position => {
                return Err(Finding::OutOfOrder {
                    position: record.position,
                    expected: position,
                });
            }
            (Some(record), Some((event_id, hash))) => {
                if self.sealed + 1 != position {
                    // A record after an unsealed one carries a seal: a seal was removed.
                    return Err(Finding::SealBroken {
                        position: self.sealed + 1,
                    });
                }
                let computed = chain(&self.previous, record);
                if hex::encode(computed) != hash {
                    return Err(Finding::Altered { position });
                }
                if record.event_id != event_id {
                    return Err(Finding::SealBroken { position });
                }
                self.previous = computed;
                self.sealed = position;
            }
            (Some(_), None) => {}
        }
        self.next += 1;
        Ok(())
    }

    /// Passes the next position, whose record was pruned after its export:
    /// its seal (`event_id`, hex hash) must remain, and the chain goes on
    /// from it. The records between two pruned ones are still checked
    /// against each other; an altered seal breaks the next record's check.
    pub fn skip_pruned(&mut self, seal: Option<(&str, &str)>) -> Result<(), Finding> {
        let position = self.next;
        let hash = seal
            .and_then(|(_, hash)| hex::decode(hash).ok())
            .and_then(|h| <[u8; 32]>::try_from(h).ok());
        match hash {
            Some(hash) if self.sealed + 1 == position => {
                self.previous = hash;
                self.sealed = position;
                self.pruned += 1;
                self.next += 1;
                Ok(())
            }
            _ => Err(Finding::SealBroken { position }),
        }
    }

    /// Ends the walk: how many records were sealed and how many were not.
    pub fn finish(self) -> Summary {
        Summary {
            sealed: self.sealed,
            unsealed: self.next - 1 - self.sealed,
            pruned: self.pruned,
        }
    }
}

#[cfg(test)]
mod tests;
