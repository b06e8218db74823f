//! The Merkle tree over the audit records, checked record by record: each
//! record's leaf (compared with the stored one, if given), and at each
//! checkpoint's size, the root and the signature.

use std::collections::{BTreeMap, HashMap};

use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, NoteVerifier};
use crate::{Finding, Record, encode};

/// The Merkle leaf hash of a record: `SHA-256(0x00 || encode(record))`.
pub fn leaf_of(record: &Record<'_>) -> Hash {
    leaf_hash(&encode(record))
}

/// A signed checkpoint as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedCheckpoint {
    /// The tree size it covers.
    pub size: u64,
    /// The key id (8 hex digits) of its signature.
    pub key_id: String,
    /// The signed note.
    pub note: String,
}

/// What a finished tree verification saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeSummary {
    /// Records in the tree.
    pub records: u64,
    /// Checkpoints whose root and signature verified.
    pub checkpoints: u64,
    /// The largest verified checkpoint's size (0 if none).
    pub latest: u64,
}

/// Walks records in position order, growing the tree, and checks every
/// checkpoint when the tree reaches its size. Checkpoints may be given up
/// front or fed while walking ([`TreeVerifier::expect`]), so memory stays
/// bounded however many there are; one whose key is not known yet when it
/// is reached is checked at the end.
#[derive(Debug)]
pub struct TreeVerifier {
    frontier: Frontier,
    /// Checkpoints not reached yet, by size.
    pending: BTreeMap<u64, LoggedCheckpoint>,
    /// Reached checkpoints whose key was not known yet, with their roots.
    deferred: Vec<(LoggedCheckpoint, Hash)>,
    /// Checkpoints verified so far, and the largest size among them.
    verified: u64,
    latest: u64,
    keys: HashMap<String, NoteVerifier>,
    /// Where each retired key was retired (the position of the record).
    retired: HashMap<String, u64>,
}

impl TreeVerifier {
    /// A verifier for these checkpoints (more may be added while walking).
    pub fn new(checkpoints: Vec<LoggedCheckpoint>) -> TreeVerifier {
        let mut verifier = TreeVerifier {
            frontier: Frontier::default(),
            pending: BTreeMap::new(),
            deferred: Vec::new(),
            verified: 0,
            latest: 0,
            keys: HashMap::new(),
            retired: HashMap::new(),
        };
        for checkpoint in checkpoints {
            verifier.expect(checkpoint);
        }
        verifier
    }

    /// Adds a checkpoint to check when the tree reaches its size.
    pub fn expect(&mut self, checkpoint: LoggedCheckpoint) {
        self.pending.insert(checkpoint.size, checkpoint);
    }

    /// How many given checkpoints the walk has not reached yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Trusts a verifier key (`NAME+KEYID+KEY`); a malformed one is refused.
    pub fn trust(&mut self, key: &str) -> Result<(), crate::note::NoteError> {
        let verifier = NoteVerifier::from_key(key)?;
        let id = key.split('+').nth(1).unwrap_or_default().to_string();
        self.keys.insert(id, verifier);
        Ok(())
    }

    /// Records that key `key_id` was retired by the record at `position`:
    /// a checkpoint covering that record cannot carry its signature.
    pub fn retire(&mut self, key_id: &str, position: u64) {
        self.retired.entry(key_id.to_string()).or_insert(position);
    }

    /// Adds the next record, with the leaf stored for it (hex), if any.
    pub fn step(&mut self, record: &Record<'_>, stored: Option<&str>) -> Result<(), Finding> {
        let leaf = leaf_of(record);
        if stored.is_some_and(|s| s != hex::encode(leaf)) {
            return Err(Finding::LeafAltered {
                position: record.position,
            });
        }
        self.push(leaf)
    }

    /// Adds the next position, whose record was pruned: its stored leaf
    /// (hex) stands for it, and the checkpoints over it check that leaf.
    pub fn step_pruned(&mut self, stored: Option<&str>) -> Result<(), Finding> {
        let position = self.frontier.size() + 1;
        let leaf = stored
            .and_then(|s| hex::decode(s).ok())
            .and_then(|h| Hash::try_from(h).ok())
            .ok_or(Finding::LeafAltered { position })?;
        self.push(leaf)
    }

    fn push(&mut self, leaf: Hash) -> Result<(), Finding> {
        self.frontier.push(leaf);
        let size = self.frontier.size();
        if let Some(checkpoint) = self.pending.remove(&size) {
            let root = self.frontier.root();
            if self.keys.contains_key(&checkpoint.key_id) {
                self.check(&checkpoint, &root)?;
            } else {
                self.deferred.push((checkpoint, root));
            }
        }
        Ok(())
    }

    /// Checks one reached checkpoint against the root of its records.
    fn check(&mut self, checkpoint: &LoggedCheckpoint, computed: &Hash) -> Result<(), Finding> {
        let size = checkpoint.size;
        let signature = |reason: String| Finding::CheckpointSignature { size, reason };
        let verifier = self
            .keys
            .get(&checkpoint.key_id)
            .ok_or_else(|| signature(format!("key {} is not trusted", checkpoint.key_id)))?;
        let body =
            Checkpoint::open(&checkpoint.note, verifier).map_err(|e| signature(e.to_string()))?;
        if body.size != size {
            return Err(signature(format!("the note is for size {}", body.size)));
        }
        if let Some(&at) = self.retired.get(&checkpoint.key_id)
            && size >= at
        {
            return Err(signature(format!(
                "key {} was retired at record {at}",
                checkpoint.key_id
            )));
        }
        if &body.root != computed {
            return Err(Finding::CheckpointMismatch {
                size,
                claimed: hex::encode(body.root),
                computed: hex::encode(computed),
            });
        }
        self.verified += 1;
        self.latest = self.latest.max(size);
        Ok(())
    }

    /// Ends the walk: every checkpoint must have been reached, match the
    /// records and carry a valid signature by a trusted key.
    pub fn finish(mut self) -> Result<TreeSummary, Finding> {
        let records = self.frontier.size();
        if let Some((&size, _)) = self.pending.iter().next() {
            return Err(Finding::CheckpointBeyondLog { size, records });
        }
        for (checkpoint, computed) in std::mem::take(&mut self.deferred) {
            self.check(&checkpoint, &computed)?;
        }
        Ok(TreeSummary {
            records,
            checkpoints: self.verified,
            latest: self.latest,
        })
    }
}
