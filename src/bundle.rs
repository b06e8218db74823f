//! Evidence bundles on disk: `tollgate audit export` writes one folder,
//! `tollgate audit verify --bundle` checks it with no database and no
//! server, only the trusted public key. The layout is documented in
//! `docs/audit-format.md`.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, bail};
use tollgate_audit::bundle::{
    BUNDLE_FORMAT, BundleProof, BundleRecord, BundleSummary, verify_bundle,
};
use tollgate_audit::note::NoteVerifier;

use crate::App;

/// The records, one JSON object per line, in position order.
pub const RECORDS: &str = "records.ndjson";
/// The proof of the records against the checkpoint.
pub const PROOF: &str = "proof.json";
/// The signed checkpoint (C2SP signed note).
pub const CHECKPOINT: &str = "checkpoint.txt";
/// The checkpoint keys the log activated, one `NAME+KEYID+KEY` per line.
pub const KEYS: &str = "keys.txt";
/// What the bundle holds.
pub const MANIFEST: &str = "manifest.json";

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The first and last positions.
    pub first: u64,
    /// The last position.
    pub last: u64,
    /// The signed tree's size.
    pub tree_size: u64,
}

/// Writes the bundle of the records between `since` and `until` into
/// `out` (created; it must not exist or be empty). `None` when no record
/// is in range.
pub async fn export(
    app: &App,
    actor: &str,
    since: Option<&str>,
    until: Option<&str>,
    out: &Path,
) -> anyhow::Result<Option<Exported>> {
    if out.exists() && out.read_dir()?.next().is_some() {
        bail!("{} exists and is not empty", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let file = std::fs::File::create(out.join(RECORDS))?;
    let mut records = BufWriter::new(file);
    let mut count = 0u64;
    let head = app
        .export_bundle(since, until, &mut |record: &BundleRecord| {
            serde_json::to_writer(&mut records, record)
                .and_then(|()| records.write_all(b"\n").map_err(serde_json::Error::io))
                .map_err(|e| tollgate_application::AppError::Invalid(e.to_string()))?;
            count += 1;
            Ok(())
        })
        .await?;
    records.flush()?;
    records.get_ref().sync_all()?;
    let Some(head) = head else {
        std::fs::remove_dir_all(out).ok();
        return Ok(None);
    };
    std::fs::write(
        out.join(PROOF),
        serde_json::to_string_pretty(&head.proof)? + "\n",
    )?;
    std::fs::write(out.join(CHECKPOINT), &head.checkpoint)?;
    std::fs::write(out.join(KEYS), head.keys.join("\n") + "\n")?;
    let origin = head.checkpoint.lines().next().unwrap_or_default();
    let manifest = serde_json::json!({
        "format": BUNDLE_FORMAT,
        "origin": origin,
        "first": head.proof.first,
        "last": head.proof.last,
        "records": count,
        "tree_size": head.proof.tree_size,
        "since": since,
        "until": until,
        "exported_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    std::fs::write(
        out.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    let query = format!(
        "since={} until={} positions={}..={}",
        since.unwrap_or("-"),
        until.unwrap_or("-"),
        head.proof.first,
        head.proof.last
    );
    app.record_bundle_export(actor, &query).await?;
    Ok(Some(Exported {
        first: head.proof.first,
        last: head.proof.last,
        tree_size: head.proof.tree_size,
    }))
}

/// How a bundle verification went.
#[derive(Debug)]
pub struct Verified {
    /// What the bundle proved.
    pub summary: BundleSummary,
    /// The key it was checked with.
    pub key: String,
    /// Whether that key came from the bundle itself (to be compared with
    /// a copy obtained independently).
    pub key_from_bundle: bool,
}

/// Verifies the bundle in `dir` offline. With `trusted` (a verifier key),
/// only that key is accepted; without, the bundle's own `keys.txt` is
/// used and the caller should say so.
pub fn verify(dir: &Path, trusted: Option<&str>) -> anyhow::Result<Verified> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("cannot read {}", dir.join(name).display()))
    };
    let note = read(CHECKPOINT)?;
    let proof: BundleProof =
        serde_json::from_str(&read(PROOF)?).context("proof.json is malformed")?;
    let file = std::fs::File::open(dir.join(RECORDS))
        .with_context(|| format!("cannot read {}", dir.join(RECORDS).display()))?;
    let mut records = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let record: BundleRecord = serde_json::from_str(&line)
            .with_context(|| format!("{RECORDS} line {} is not a record", n + 1))?;
        records.push(record);
    }
    let (keys, key_from_bundle) = match trusted {
        Some(key) => (vec![key.trim().to_string()], false),
        None => (
            read(KEYS)?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            true,
        ),
    };
    let mut last_error = None;
    for key in &keys {
        let verifier = NoteVerifier::from_key(key)
            .with_context(|| format!("{key:?} is not a verifier key"))?;
        match verify_bundle(&records, &proof, &note, &verifier) {
            Ok(summary) => {
                return Ok(Verified {
                    summary,
                    key: key.clone(),
                    key_from_bundle,
                });
            }
            // Another key of the list may have signed it.
            Err(tollgate_audit::bundle::BundleError::Signature(err)) if keys.len() > 1 => {
                last_error = Some(tollgate_audit::bundle::BundleError::Signature(err));
            }
            Err(err) => return Err(err.into()),
        }
    }
    match last_error {
        Some(err) => Err(err.into()),
        None => bail!("no key to verify the checkpoint with"),
    }
}

/// The records a bundle holds, once it verified with a key this log
/// activated: what `audit prune` needs. The bundle is named by the SHA-256
/// of its `manifest.json`, `proof.json` and `checkpoint.txt`, in that order.
pub async fn exported_range(
    app: &App,
    dir: &Path,
) -> anyhow::Result<tollgate_application::ExportedRange> {
    let verified = verify(dir, None).context("the bundle does not verify")?;
    let key_id = verified.key.split('+').nth(1).unwrap_or_default();
    let logged = app
        .verifier_key_of(key_id)
        .await
        .context("the bundle is not signed by a key of this log")?;
    if logged != verified.key {
        bail!("the bundle is not signed by a key of this log");
    }
    let mut digest = <sha2::Sha256 as sha2::Digest>::new();
    for name in [MANIFEST, PROOF, CHECKPOINT] {
        let bytes = std::fs::read(dir.join(name))
            .with_context(|| format!("cannot read {}", dir.join(name).display()))?;
        sha2::Digest::update(&mut digest, &bytes);
    }
    let proof: BundleProof = serde_json::from_str(&std::fs::read_to_string(dir.join(PROOF))?)
        .context("proof.json is malformed")?;
    Ok(tollgate_application::ExportedRange {
        first: proof.first,
        last: proof.last,
        leaves: proof.leaves,
        bundle_sha256: hex::encode(sha2::Digest::finalize(digest)),
    })
}
