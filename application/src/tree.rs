//! The Merkle tree over the audit log: a subscriber that appends one leaf
//! per record and writes signed checkpoints (every N records or T
//! seconds), and the inclusion and consistency proofs read from it.

use std::time::{Duration, Instant};

use cqrs_es::persist::PersistedEventRepository;
use tollgate_audit::bundle::{BundleProof, BundleRecord};
use tollgate_audit::merkle::{self, Frontier, Hash};
use tollgate_audit::note::Checkpoint;
use tollgate_domain::RefusalKind;
use tollgate_domain::audit_access::AuditAccessCommand;
use tollgate_domain::audit_key::{AuditKey, AuditKeyCommand};
use tollgate_ports::api::{ConsistencyProof, InclusionProof};
use tollgate_ports::outbound::{CheckpointRecord, StoreErrorKind};

use crate::aggregates::Actor;
use crate::subscribers::Reading;
use crate::{AppError, Tollgate};

/// How many leaves are read per query when building a proof.
const LEAF_PAGE: u32 = 10_000;

/// When checkpoints are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// After this many new records.
    pub every: u64,
    /// Or after this long, when at least one record is new.
    pub interval: Duration,
}

/// The tree as this process follows it.
pub(crate) struct TreeState {
    frontier: Frontier,
    /// The size of the latest checkpoint, and when this process saw it.
    checkpointed: u64,
    checkpointed_at: Instant,
}

/// What an evidence bundle holds besides its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleHead {
    /// The proof of the records against the checkpoint.
    pub proof: BundleProof,
    /// The signed checkpoint.
    pub checkpoint: String,
    /// Every checkpoint key the log activated (`NAME+KEYID+KEY`).
    pub keys: Vec<String>,
}

fn hex_hash(text: &str) -> Result<Hash, AppError> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).map_err(|e| AppError::Store(Box::new(e)))?;
    Ok(hash)
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// Records the checkpoint key in the log the first time it is used, so
    /// verifiers learn to trust it from the records themselves, and retires
    /// the keys that signed checkpoints before it (a rotation).
    pub(crate) async fn activate_audit_key(&self) -> Result<(), AppError> {
        let signer = &self.inner.deps.checkpoints;
        let current = signer.key_id();
        let key: AuditKey = self.load(&current).await?;
        if key.exists() {
            return Ok(());
        }
        let actor = Actor {
            actor: "system".to_string(),
            ..Actor::default()
        };
        let command = AuditKeyCommand::Activate {
            name: signer.origin().to_string(),
            verifier_key: signer.verifier_key(),
        };
        match self
            .execute::<AuditKey>(&current, &actor, || command.clone())
            .await
        {
            Ok(_) => {}
            // Another process activated it first, and retires the others.
            Err(AppError::Rejected { .. }) => return Ok(()),
            Err(err) => return Err(err),
        }
        for previous in self.checkpoint_key_ids().await? {
            if previous == current {
                continue;
            }
            let retire = AuditKeyCommand::Retire {
                replaced_by: current.clone(),
            };
            match self
                .execute::<AuditKey>(&previous, &actor, || retire.clone())
                .await
            {
                Ok(_) | Err(AppError::Rejected { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The ids of the keys that signed checkpoints.
    async fn checkpoint_key_ids(&self) -> Result<std::collections::BTreeSet<String>, AppError> {
        let audit = &self.inner.deps.audit;
        let mut ids = std::collections::BTreeSet::new();
        let mut after = 0;
        loop {
            let page = audit.read_checkpoints(after, LEAF_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.size;
            ids.extend(page.into_iter().map(|c| c.key_id));
        }
        Ok(ids)
    }

    /// Appends the next records' leaves and writes a checkpoint when one
    /// is due; returns how many leaves and checkpoints it wrote.
    pub async fn grow_tree(&self) -> Result<usize, AppError> {
        self.grow_tree_from(&mut Reading::default()).await
    }

    /// `grow_tree`, reading the log through `reading`.
    pub(crate) async fn grow_tree_from(&self, reading: &mut Reading) -> Result<usize, AppError> {
        let deps = &self.inner.deps;
        let mut guard = self.inner.tree.lock().await;
        if guard.is_none() {
            *guard = Some(self.load_tree().await?);
        }
        let state = guard.as_mut().expect("loaded above");
        let after = state.frontier.size();
        let (_, records) = reading.records_after(deps.log.as_ref(), after).await?;
        let mut frontier = state.frontier.clone();
        let mut leaves = Vec::with_capacity(records.len());
        for record in records {
            let leaf = tollgate_audit::merkle::leaf_hash(record);
            frontier.push(leaf);
            leaves.push(hex::encode(leaf));
        }
        let size = frontier.size();
        let policy = deps.checkpoint_policy;
        let due = size > state.checkpointed
            && (size - state.checkpointed >= policy.every
                || state.checkpointed_at.elapsed() >= policy.interval);
        let checkpoint = due.then(|| self.checkpoint(size, frontier.root()));
        if leaves.is_empty() && checkpoint.is_none() {
            return Ok(0);
        }
        let stored = if leaves.is_empty() {
            deps.audit
                .append_checkpoint(checkpoint.as_ref().expect("due"))
                .await
        } else {
            deps.audit
                .append_leaves(after, &leaves, checkpoint.as_ref())
                .await
        };
        match stored {
            Ok(()) => {
                state.frontier = frontier;
                if checkpoint.is_some() {
                    state.checkpointed = size;
                    state.checkpointed_at = Instant::now();
                }
                Ok(leaves.len() + usize::from(checkpoint.is_some()))
            }
            // Another process grew the tree first: follow its state.
            Err(err) if err.kind == StoreErrorKind::Conflict => {
                *guard = None;
                Ok(leaves.len())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Signs the checkpoint of a tree of `size` records with `root`.
    fn checkpoint(&self, size: u64, root: Hash) -> CheckpointRecord {
        let signer = &self.inner.deps.checkpoints;
        let body = Checkpoint {
            origin: signer.origin().to_string(),
            size,
            root,
        }
        .body();
        CheckpointRecord {
            size,
            root: hex::encode(root),
            key_id: signer.key_id(),
            note: signer.sign(&body),
            time: self.now_text(),
        }
    }

    /// Rebuilds the frontier from the stored leaves, after making sure
    /// the key this process signs with is recorded in the log.
    async fn load_tree(&self) -> Result<TreeState, AppError> {
        self.activate_audit_key().await?;
        let audit = &self.inner.deps.audit;
        let mut frontier = Frontier::default();
        loop {
            let page = audit.read_leaves(frontier.size(), LEAF_PAGE).await?;
            if page.is_empty() {
                break;
            }
            for (_, leaf) in &page {
                frontier.push(hex_hash(leaf)?);
            }
        }
        let checkpointed = audit
            .latest_checkpoint()
            .await?
            .map(|c| c.size)
            .unwrap_or(0);
        Ok(TreeState {
            frontier,
            checkpointed,
            checkpointed_at: Instant::now(),
        })
    }

    /// The leaf hashes of the first `size` records.
    async fn leaves_up_to(&self, size: u64) -> Result<Vec<Hash>, AppError> {
        let audit = &self.inner.deps.audit;
        let mut leaves = Vec::with_capacity(size as usize);
        while (leaves.len() as u64) < size {
            let after = leaves.len() as u64;
            let limit = LEAF_PAGE.min(u32::try_from(size - after).unwrap_or(u32::MAX));
            let page = audit.read_leaves(after, limit).await?;
            if page.is_empty() {
                return Err(AppError::Invalid(format!(
                    "the Merkle tree holds {after} leaves, fewer than {size}"
                )));
            }
            for (_, leaf) in &page {
                leaves.push(hex_hash(leaf)?);
            }
        }
        Ok(leaves)
    }

    /// Brings the tree up to the log's head and signs a checkpoint of it
    /// unless the latest one already covers it; returns the latest.
    pub async fn checkpoint_now(&self) -> Result<Option<CheckpointRecord>, AppError> {
        while self.grow_tree().await? > 0 {}
        {
            let mut guard = self.inner.tree.lock().await;
            if guard.is_none() {
                *guard = Some(self.load_tree().await?);
            }
            let state = guard.as_mut().expect("loaded above");
            let size = state.frontier.size();
            if size > state.checkpointed {
                let checkpoint = self.checkpoint(size, state.frontier.root());
                match self.inner.deps.audit.append_checkpoint(&checkpoint).await {
                    // Another process signed this size first; either serves.
                    Ok(()) => {}
                    Err(err) if err.kind == StoreErrorKind::Conflict => {}
                    Err(err) => return Err(err.into()),
                }
                state.checkpointed = size;
                state.checkpointed_at = Instant::now();
            }
        }
        self.latest_checkpoint().await
    }

    /// The latest signed checkpoint, if any.
    pub async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, AppError> {
        Ok(self.inner.deps.audit.latest_checkpoint().await?)
    }

    /// The verifier key of this process's checkpoint signer.
    pub fn checkpoint_verifier_key(&self) -> String {
        self.inner.deps.checkpoints.verifier_key()
    }

    /// The inclusion proof of event `event_id` in the latest checkpoint.
    pub async fn inclusion_proof(&self, event_id: &str) -> Result<InclusionProof, AppError> {
        let deps = &self.inner.deps;
        let position = deps
            .log
            .position_of(event_id)
            .await?
            .ok_or_else(|| AppError::Rejected {
                kind: RefusalKind::NotFound,
                message: format!("no event has the id {event_id:?}"),
            })?;
        let checkpoint = deps
            .audit
            .latest_checkpoint()
            .await?
            .filter(|c| c.size >= position)
            .ok_or_else(|| AppError::Rejected {
                kind: RefusalKind::Conflict,
                message: format!(
                    "record {position} is not in a checkpoint yet; try again after the next one"
                ),
            })?;
        let leaves = self.leaves_up_to(checkpoint.size).await?;
        let index = position - 1;
        let proof = merkle::inclusion_proof(&leaves, index)
            .map_err(|e| AppError::Invalid(e.to_string()))?;
        let leaf = leaves[index as usize];
        // The stored leaves must still lead to the signed root.
        merkle::verify_inclusion(
            index,
            checkpoint.size,
            &leaf,
            &proof,
            &hex_hash(&checkpoint.root)?,
        )
        .map_err(|e| AppError::Invalid(format!("the stored tree is inconsistent: {e}")))?;
        Ok(InclusionProof {
            event_id: event_id.to_string(),
            position,
            leaf_hash: hex::encode(leaf),
            tree_size: checkpoint.size,
            proof: proof.iter().map(hex::encode).collect(),
            checkpoint: checkpoint.note,
            verifier_key: self.verifier_key_of(&checkpoint.key_id).await?,
        })
    }

    /// The consistency proof between the checkpoints of `first` and
    /// `second` records.
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProof, AppError> {
        let audit = &self.inner.deps.audit;
        if first > second {
            return Err(AppError::Invalid(format!(
                "the first checkpoint ({first}) must not be larger than the second ({second})"
            )));
        }
        let missing = |size| AppError::Rejected {
            kind: RefusalKind::NotFound,
            message: format!("there is no checkpoint of size {size}"),
        };
        let a = audit
            .checkpoint_of_size(first)
            .await?
            .ok_or_else(|| missing(first))?;
        let b = audit
            .checkpoint_of_size(second)
            .await?
            .ok_or_else(|| missing(second))?;
        let leaves = self.leaves_up_to(second).await?;
        let proof = merkle::consistency_proof(&leaves, first)
            .map_err(|e| AppError::Invalid(e.to_string()))?;
        merkle::verify_consistency(
            first,
            second,
            &hex_hash(&a.root)?,
            &hex_hash(&b.root)?,
            &proof,
        )
        .map_err(|e| AppError::Invalid(format!("the stored tree is inconsistent: {e}")))?;
        Ok(ConsistencyProof {
            first,
            second,
            proof: proof.iter().map(hex::encode).collect(),
            first_checkpoint: a.note,
            second_checkpoint: b.note,
        })
    }

    /// Records that `actor` exported an evidence bundle (`AuditLogRead`,
    /// format `bundle`): reading the audit trail is itself audited.
    pub async fn record_bundle_export(&self, actor: &str, query: &str) -> Result<(), AppError> {
        let command = AuditAccessCommand::RecordRead {
            query: query.to_string(),
            format: "bundle".to_string(),
        };
        self.record_audit_access(actor, command).await
    }

    /// Writes an evidence bundle of the records whose time is within
    /// `since..=until` (RFC 3339; open ends when absent): every record from
    /// the first to the last one in range goes to `sink`, in order, and
    /// the proof against a checkpoint signed now is returned. `None` when
    /// no record is in range.
    pub async fn export_bundle(
        &self,
        since: Option<&str>,
        until: Option<&str>,
        sink: &mut (dyn FnMut(&BundleRecord) -> Result<(), AppError> + Send),
    ) -> Result<Option<BundleHead>, AppError> {
        let deps = &self.inner.deps;
        let checkpoint = match self.checkpoint_now().await? {
            Some(checkpoint) => checkpoint,
            None => return Ok(None),
        };
        let bound = |text: Option<&str>| {
            text.map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|_| AppError::Invalid(format!("{t:?} is not an RFC 3339 time")))
            })
            .transpose()
        };
        let (since, until) = (bound(since)?, bound(until)?);
        // Find the range by time, within the checkpoint.
        let in_range = |event: &tollgate_ports::outbound::LoggedEvent| {
            let time = event
                .metadata
                .get("time")
                .and_then(serde_json::Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            time.is_some_and(|time| {
                since.is_none_or(|s| time >= s) && until.is_none_or(|u| time <= u)
            })
        };
        let (mut first, mut last) = (None, None);
        let mut after = 0;
        while after < checkpoint.size {
            let page = deps.log.read_after(after, LEAF_PAGE).await?;
            if page.is_empty() {
                break;
            }
            for event in page.iter().take_while(|e| e.position <= checkpoint.size) {
                if in_range(event) {
                    first.get_or_insert(event.position);
                    last = Some(event.position);
                }
                after = event.position;
            }
        }
        let (Some(mut first), Some(last)) = (first, last) else {
            return Ok(None);
        };
        // A bundle is a contiguous run of records: pruned ones (already in
        // earlier bundles) cannot be in it.
        let mut pruned = crate::retention::PrunedCursor::new(deps.audit.as_ref());
        let mut last_pruned = None;
        while let Some(position) = pruned.next().await? {
            if position > last {
                break;
            }
            if position >= first {
                last_pruned = Some(position);
            }
        }
        if let Some(position) = last_pruned {
            if since.is_some() {
                return Err(AppError::Invalid(format!(
                    "records up to {position} in this range were pruned after an earlier export \
                     (see the AuditRecordsPruned records); export from a later time"
                )));
            }
            first = position + 1;
            if first > last {
                return Ok(None);
            }
        }
        let mut after = first - 1;
        while after < last {
            let limit = LEAF_PAGE.min(u32::try_from(last - after).unwrap_or(u32::MAX));
            let page = deps.log.read_after(after, limit).await?;
            if page.is_empty() {
                break;
            }
            for event in &page {
                sink(&BundleRecord {
                    position: event.position,
                    event_id: event.event_id.clone(),
                    aggregate_type: event.aggregate_type.clone(),
                    aggregate_id: event.aggregate_id.clone(),
                    sequence: event.sequence,
                    event_type: event.event_type.clone(),
                    event_version: event.event_version.clone(),
                    payload: event.payload.clone(),
                    metadata: event.metadata.clone(),
                })?;
                after = event.position;
            }
        }
        let leaves = self.leaves_up_to(checkpoint.size).await?;
        let mut left = Frontier::default();
        for leaf in &leaves[..first as usize - 1] {
            left.push(*leaf);
        }
        let consistency = merkle::consistency_proof(&leaves, last)
            .map_err(|e| AppError::Invalid(e.to_string()))?;
        let keys = self.activated_keys().await?;
        Ok(Some(BundleHead {
            proof: BundleProof {
                first,
                last,
                tree_size: checkpoint.size,
                left: left.nodes().iter().map(hex::encode).collect(),
                leaves: leaves[first as usize - 1..last as usize]
                    .iter()
                    .map(hex::encode)
                    .collect(),
                consistency: consistency.iter().map(hex::encode).collect(),
            },
            checkpoint: checkpoint.note,
            keys,
        }))
    }

    /// The verifier keys of every checkpoint key the log activated.
    async fn activated_keys(&self) -> Result<Vec<String>, AppError> {
        let mut ids = self.checkpoint_key_ids().await?;
        ids.insert(self.inner.deps.checkpoints.key_id());
        let mut keys = Vec::new();
        for id in ids {
            keys.push(self.verifier_key_of(&id).await?);
        }
        Ok(keys)
    }

    /// The verifier key the log activated for key id `key_id`.
    pub async fn verifier_key_of(&self, key_id: &str) -> Result<String, AppError> {
        let key: AuditKey = self.load(key_id).await?;
        if key.exists() {
            Ok(key.verifier_key)
        } else {
            Err(AppError::Invalid(format!(
                "the checkpoint key {key_id} was never activated in the log"
            )))
        }
    }
}
