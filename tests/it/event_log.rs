//! The event log invariants on every configured database: append-only
//! tables, gapless positions in commit order under concurrent writers,
//! tamper detection by `audit verify`, and subscribers that resume.

use std::collections::BTreeSet;
use std::sync::Arc;

use tollgate_audit::merkle;
use tollgate_audit::note::{Checkpoint, NoteSigner, NoteVerifier};
use tollgate_audit::{Finding, Record, leaf_of};
use tollgate_persistence::Database;
use tollgate_ports::outbound::{CheckpointRecord, EventLog, LoggedEvent};

use crate::support::{TestServer, database_kinds, metric, test_config, unhex};

async fn open(kind: &str) -> (tollgate::App, Database, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(kind, dir.path()).await;
    let (app, db) = tollgate::open(&config).await.unwrap();
    (app, db, dir)
}

/// Runs one statement the way an attacker with database access would.
async fn sql(db: &Database, statement: &str) -> Result<u64, sqlx::Error> {
    match db {
        Database::Sqlite(store) => sqlx::query(statement)
            .execute(store.pool())
            .await
            .map(|r| r.rows_affected()),
        Database::Postgres(store) => sqlx::query(statement)
            .execute(store.pool())
            .await
            .map(|r| r.rows_affected()),
    }
}

async fn add_policies(app: &tollgate::App, names: std::ops::Range<u32>) {
    for i in names {
        app.create_policy("test", &format!("p{i}"), &["/=list".to_string()])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_rejects_updates_and_deletes_of_events_and_seals() {
    for kind in database_kinds() {
        let (app, db, _dir) = open(kind).await;
        add_policies(&app, 0..2).await;
        app.checkpoint_now().await.unwrap();
        app.catch_up().await.unwrap();
        for statement in [
            "UPDATE events SET event_type = 'Forged'",
            "DELETE FROM events",
            "UPDATE audit_seals SET hash = 'x'",
            "DELETE FROM audit_seals",
            "UPDATE audit_leaves SET leaf = 'x'",
            "DELETE FROM audit_leaves",
            "UPDATE audit_checkpoints SET note = 'x'",
            "DELETE FROM audit_checkpoints",
        ] {
            let err = sql(&db, statement).await.expect_err(statement);
            assert!(
                err.to_string().contains("append-only"),
                "{kind}: {statement}: {err}"
            );
        }
        // Two policies and the activation of the checkpoint key.
        let report = app.verify_audit().await.unwrap();
        assert_eq!((report.sealed, report.finding), (3, None), "{kind}");
        db.close().await;
    }
}

async fn tamper(kind: &str, attack: &[&str]) -> Option<Finding> {
    let (app, db, _dir) = open(kind).await;
    add_policies(&app, 0..5).await;
    app.catch_up().await.unwrap();
    assert_eq!(
        app.verify_audit().await.unwrap().finding,
        None,
        "untouched log verifies"
    );
    let disable = match kind {
        "sqlite" => vec![
            "DROP TRIGGER events_no_update",
            "DROP TRIGGER events_no_delete",
        ],
        _ => vec!["ALTER TABLE events DISABLE TRIGGER USER"],
    };
    for statement in disable.iter().chain(attack) {
        sql(&db, statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let report = app.verify_audit().await.unwrap();
    // A failed verification is an alert: counted for the metrics endpoint.
    let failures = metric(&app, "tollgate_audit_verification_failures_total")
        .await
        .map(|(_, value)| value);
    assert_eq!(failures, Some(1.0), "{kind}");
    // Recorded as a failure of its own type, for alerting on it (the
    // attacker's disabled triggers, which number new events, back on).
    if kind != "sqlite" {
        sql(&db, "ALTER TABLE events ENABLE TRIGGER USER")
            .await
            .unwrap();
    }
    app.record_audit_verification("test", &report)
        .await
        .unwrap();
    let recorded = app
        .list_events(&tollgate_application::EventFilter {
            event_type: Some("AuditVerificationFailed".to_string()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(recorded.len(), 1, "{kind}");
    assert_eq!(recorded[0].outcome, "failure", "{kind}");
    db.close().await;
    report.finding
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_marked_pruned_without_a_recorded_prune_is_found() {
    for kind in database_kinds() {
        let finding = tamper(
            kind,
            &[
                "INSERT INTO audit_pruned (position, pruned_by) VALUES (3, 'forged')",
                "DELETE FROM events WHERE position = 3",
            ],
        )
        .await;
        assert_eq!(
            finding,
            Some(Finding::PrunedUndeclared { position: 3 }),
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_finds_a_modified_removed_or_reordered_record() {
    for kind in database_kinds() {
        let modified = tamper(
            kind,
            &["UPDATE events SET aggregate_id = 'forged' WHERE position = 3"],
        )
        .await;
        assert_eq!(modified, Some(Finding::Altered { position: 3 }), "{kind}");

        let payload = match kind {
            "sqlite" => {
                "UPDATE events SET payload = replace(payload, 'p3', 'px') WHERE position = 4"
            }
            _ => {
                "UPDATE events SET payload = replace(payload::text, 'p3', 'px')::json WHERE position = 4"
            }
        };
        assert_eq!(
            tamper(kind, &[payload]).await,
            Some(Finding::Altered { position: 4 }),
            "{kind}"
        );

        let removed = tamper(kind, &["DELETE FROM events WHERE position = 2"]).await;
        assert_eq!(removed, Some(Finding::Removed { position: 2 }), "{kind}");

        let reordered = tamper(
            kind,
            &[
                "UPDATE events SET position = 1000 WHERE position = 2",
                "UPDATE events SET position = 2 WHERE position = 3",
                "UPDATE events SET position = 3 WHERE position = 1000",
            ],
        )
        .await;
        assert_eq!(reordered, Some(Finding::Altered { position: 2 }), "{kind}");
    }
}

/// A writer that holds its transaction open while others commit must not
/// let a tailing reader skip its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailing_reader_never_skips_an_event_that_commits_late() {
    for kind in database_kinds() {
        let (app, db, _dir) = open(kind).await;
        let log: Arc<dyn EventLog> = Arc::new(db.clone());

        // The slow writer: another node inserting inside a long transaction.
        let insert_slow = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)";
        let values = "VALUES ('policy', 'slow', 1, 'PolicyCreated', '1', '{\"PolicyCreated\":{\"name\":\"slow\",\"rules\":[]}}', '{}')";
        let slow = match &db {
            Database::Sqlite(store) => {
                let mut tx = store.pool().begin().await.unwrap();
                sqlx::query(
                    "INSERT INTO events (position, event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                     VALUES ((SELECT COALESCE(MAX(position), 0) + 1 FROM events), 'slow-event', 'policy', 'slow', 1, 'PolicyCreated', '1', '{}', '{}')"
                )
                .execute(&mut *tx)
                .await
                .unwrap();
                SlowTx::Sqlite(tx)
            }
            Database::Postgres(store) => {
                let mut tx = store.pool().begin().await.unwrap();
                sqlx::query(&format!("{insert_slow} {values}"))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                SlowTx::Postgres(tx)
            }
        };

        // Fast writers queue up behind it.
        // (Two of them: with the slow one and the reader they use every
        // connection of the SQLite pool.)
        let writers: Vec<_> = (0..2u32)
            .map(|w| {
                let app = app.clone();
                tokio::spawn(async move { add_policies(&app, w * 100..w * 100 + 10).await })
            })
            .collect();

        // While the slow transaction is open nothing after it is visible.
        for _ in 0..20 {
            assert!(
                log.read_after(0, 100).await.unwrap().is_empty(),
                "{kind}: a later commit became visible first"
            );
            tokio::task::yield_now().await;
        }
        slow.commit().await;

        // Tail the log while the writers finish.
        let total = 21u64;
        let mut seen = Vec::new();
        let mut last = 0u64;
        while last < total {
            for event in log.read_after(last, 3).await.unwrap() {
                assert_eq!(
                    event.position,
                    last + 1,
                    "{kind}: the tail skipped a position"
                );
                last = event.position;
                seen.push(event.aggregate_id);
            }
            tokio::task::yield_now().await;
        }
        for writer in writers {
            writer.await.unwrap();
        }
        assert_eq!(
            seen[0], "slow",
            "{kind}: the slow transaction holds the first position"
        );
        assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 21);
        assert_eq!(log.head().await.unwrap(), total);
        db.close().await;
    }
}

enum SlowTx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl SlowTx {
    async fn commit(self) {
        match self {
            SlowTx::Sqlite(tx) => tx.commit().await.unwrap(),
            SlowTx::Postgres(tx) => tx.commit().await.unwrap(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_catch_up_after_a_restart_and_projections_rebuild() {
    for kind in database_kinds() {
        let server = TestServer::start(kind).await;
        server.add_user("ivan", &[]).await;
        let (config, dir) = server.stop().await;

        // Events committed while the server is down (by the CLI, another node).
        let (app, db) = tollgate::open(&config).await.unwrap();
        add_policies(&app, 0..3).await;
        app.set_user_enabled("cli", "ivan", false).await.unwrap();
        let head = db.head().await.unwrap();
        let before: Vec<_> = app
            .subscriber_status()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.position)
            .collect();
        assert!(
            before.iter().all(|p| *p < head),
            "{kind}: subscribers are behind: {before:?} < {head}"
        );
        db.close().await;

        // The start catches up before it serves (then records its own start).
        let server = TestServer::start_with(config, dir).await;
        let status = server.app().subscriber_status().await.unwrap();
        assert!(
            status.iter().all(|s| s.position >= head),
            "{kind}: {status:?}"
        );
        server.app().catch_up().await.unwrap();
        let head = head + 1;
        let users = server.app().list_users().await.unwrap();
        assert_eq!(users.len(), 1);
        assert!(
            !users[0].enabled,
            "{kind}: the projection saw the change made while stopped"
        );
        let report = server.app().verify_audit().await.unwrap();
        assert_eq!((report.sealed, report.finding), (head, None));

        assert!(server.app().rebuild_projections().await.unwrap() >= head);
        assert_eq!(
            server.app().list_users().await.unwrap(),
            users,
            "{kind}: a rebuild gives the same read model"
        );
        server.stop().await;
    }
}

/// Every record's inclusion proof and the consistency proof between two
/// checkpoints verify with nothing but the published algorithms and the
/// key the log itself recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_checkpoints_prove_inclusion_and_consistency() {
    for kind in database_kinds() {
        let (app, db, _dir) = open(kind).await;
        add_policies(&app, 0..5).await;
        let first = app.checkpoint_now().await.unwrap().expect("a checkpoint");
        add_policies(&app, 5..12).await;
        let second = app.checkpoint_now().await.unwrap().expect("a checkpoint");
        assert!(first.size >= 6 && second.size == first.size + 7, "{kind}");

        let events = db.read_after(0, 1000).await.unwrap();
        let activated: Vec<_> = events
            .iter()
            .filter(|e| e.event_type == "AuditKeyActivated")
            .collect();
        assert_eq!(activated.len(), 1, "{kind}");
        let key = activated[0].payload["AuditKeyActivated"]["verifier_key"]
            .as_str()
            .unwrap();
        let verifier = NoteVerifier::from_key(key).unwrap();
        let signed = Checkpoint::open(&second.note, &verifier).unwrap();
        assert_eq!(signed.size, second.size);

        for event in events.iter().filter(|e| e.position <= second.size) {
            let proof = app.inclusion_proof(&event.event_id).await.unwrap();
            assert_eq!(proof.verifier_key, key);
            let leaf = leaf_of(&record_of(event));
            assert_eq!(proof.leaf_hash, hex::encode(leaf));
            let path: Vec<[u8; 32]> = proof.proof.iter().map(|h| unhex(h)).collect();
            let root = Checkpoint::open(&proof.checkpoint, &verifier).unwrap().root;
            merkle::verify_inclusion(event.position - 1, proof.tree_size, &leaf, &path, &root)
                .unwrap_or_else(|e| panic!("{kind}: record {}: {e}", event.position));
        }

        let consistency = app
            .consistency_proof(first.size, second.size)
            .await
            .unwrap();
        let old = Checkpoint::open(&consistency.first_checkpoint, &verifier).unwrap();
        let new = Checkpoint::open(&consistency.second_checkpoint, &verifier).unwrap();
        let path: Vec<[u8; 32]> = consistency.proof.iter().map(|h| unhex(h)).collect();
        merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &path).unwrap();

        let report = app.verify_audit().await.unwrap();
        assert_eq!(report.finding, None, "{kind}");
        assert_eq!((report.checkpoints, report.checkpointed), (2, second.size));
        db.close().await;
    }
}

fn record_of(event: &LoggedEvent) -> Record<'_> {
    Record {
        position: event.position,
        event_id: &event.event_id,
        aggregate_type: &event.aggregate_type,
        aggregate_id: &event.aggregate_id,
        sequence: event.sequence,
        event_type: &event.event_type,
        event_version: &event.event_version,
        payload: &event.payload,
        metadata: &event.metadata,
    }
}

/// A log with two checkpoints, its triggers off, altered by `attack`
/// (given the two checkpoints and the data directory); what `audit
/// verify` then finds.
async fn tamper_tree<F>(kind: &str, attack: F) -> Option<Finding>
where
    F: FnOnce(&CheckpointRecord, &CheckpointRecord, &std::path::Path) -> Vec<String>,
{
    let (app, db, dir) = open(kind).await;
    add_policies(&app, 0..5).await;
    let first = app.checkpoint_now().await.unwrap().unwrap();
    add_policies(&app, 5..9).await;
    let second = app.checkpoint_now().await.unwrap().unwrap();
    assert_eq!(app.verify_audit().await.unwrap().finding, None);
    let tables = ["events", "audit_seals", "audit_leaves", "audit_checkpoints"];
    let disable: Vec<String> = match kind {
        "sqlite" => tables
            .iter()
            .flat_map(|t| {
                [
                    format!("DROP TRIGGER {t}_no_update"),
                    format!("DROP TRIGGER {t}_no_delete"),
                ]
            })
            .collect(),
        _ => tables
            .iter()
            .map(|t| format!("ALTER TABLE {t} DISABLE TRIGGER USER"))
            .collect(),
    };
    for statement in disable.iter().chain(&attack(&first, &second, dir.path())) {
        sql(&db, statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let report = app.verify_audit().await.unwrap();
    db.close().await;
    report.finding
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_finds_altered_leaves_forged_checkpoints_and_a_truncated_tail() {
    for kind in database_kinds() {
        let zero = "0".repeat(64);
        let altered = tamper_tree(kind, |_, _, _| {
            vec![format!(
                "UPDATE audit_leaves SET leaf = '{zero}' WHERE position = 3"
            )]
        })
        .await;
        assert_eq!(
            altered,
            Some(Finding::LeafAltered { position: 3 }),
            "{kind}"
        );

        let dropped = tamper_tree(kind, |_, _, _| {
            vec!["DELETE FROM audit_leaves WHERE position = 4".to_string()]
        })
        .await;
        assert_eq!(
            dropped,
            Some(Finding::LeafAltered { position: 4 }),
            "{kind}"
        );

        // Self-consistent, but signed by a key the log never activated.
        let forged = tamper_tree(kind, |_, second, _| {
            let impostor = NoteSigner::from_seed("tollgate.local/audit", [7; 32]).unwrap();
            let body = Checkpoint {
                origin: "tollgate.local/audit".to_string(),
                size: second.size,
                root: unhex(&second.root),
            };
            let note = body.sign(&impostor).unwrap();
            vec![format!(
                "UPDATE audit_checkpoints SET note = {}, key_id = '{}' WHERE size = {}",
                quoted(&note),
                impostor.key_id(),
                second.size
            )]
        })
        .await;
        assert!(
            matches!(forged, Some(Finding::CheckpointSignature { .. })),
            "{kind}: {forged:?}"
        );

        // An old checkpoint replayed in place of the newer one.
        let replayed = tamper_tree(kind, |first, second, _| {
            vec![format!(
                "UPDATE audit_checkpoints SET note = {} WHERE size = {}",
                quoted(&first.note),
                second.size
            )]
        })
        .await;
        assert!(
            matches!(&replayed, Some(Finding::CheckpointSignature { size, reason })
                if reason.contains("for size")),
            "{kind}: {replayed:?}"
        );

        // Signed with the real key, but over another root.
        let wrong_root = tamper_tree(kind, |_, second, data| {
            let key = std::fs::read_to_string(data.join("data/audit_checkpoint.key"))
                .expect("the key file");
            let signer = NoteSigner::from_private_key(&key).unwrap();
            let mut body = Checkpoint::open(&second.note, &signer.verifier()).unwrap();
            body.root = [9; 32];
            vec![format!(
                "UPDATE audit_checkpoints SET note = {} WHERE size = {}",
                quoted(&body.sign(&signer).unwrap()),
                second.size
            )]
        })
        .await;
        assert!(
            matches!(&wrong_root, Some(Finding::CheckpointMismatch { size, .. }) if *size > 0),
            "{kind}: {wrong_root:?}"
        );

        // The newest records removed together with their seals and
        // leaves: the chain alone cannot tell, the checkpoint can.
        let truncated = tamper_tree(kind, |_, second, _| {
            let keep = second.size - 2;
            ["events", "audit_seals", "audit_leaves"]
                .iter()
                .map(|t| format!("DELETE FROM {t} WHERE position > {keep}"))
                .collect()
        })
        .await;
        assert!(
            matches!(truncated, Some(Finding::CheckpointBeyondLog { .. })),
            "{kind}: {truncated:?}"
        );
    }
}

/// Verification reads checkpoints a page at a time as the walk reaches
/// them; every one is checked, and a forged one deep in the list is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_checks_every_checkpoint_of_a_long_history() {
    let (app, db, _dir) = open("sqlite").await;
    let mut sizes = Vec::new();
    for i in 0..230 {
        add_policies(&app, i..i + 1).await;
        sizes.push(app.checkpoint_now().await.unwrap().unwrap().size);
    }
    app.catch_up().await.unwrap();
    let report = app.verify_audit().await.unwrap();
    assert_eq!(report.finding, None);
    assert_eq!(report.checkpoints, 230);
    assert_eq!(report.checkpointed, *sizes.last().unwrap());

    let target = sizes[150];
    let impostor = NoteSigner::from_seed("tollgate.local/audit", [8; 32]).unwrap();
    let root = {
        let Database::Sqlite(store) = &db else {
            unreachable!()
        };
        let root: String = sqlx::query_scalar("SELECT root FROM audit_checkpoints WHERE size = $1")
            .bind(target as i64)
            .fetch_one(store.pool())
            .await
            .unwrap();
        unhex(&root)
    };
    let forged = Checkpoint {
        origin: "tollgate.local/audit".to_string(),
        size: target,
        root,
    }
    .sign(&impostor)
    .unwrap();
    for statement in [
        "DROP TRIGGER audit_checkpoints_no_update".to_string(),
        format!(
            "UPDATE audit_checkpoints SET note = {} WHERE size = {target}",
            quoted(&forged)
        ),
    ] {
        sql(&db, &statement).await.unwrap();
    }
    let report = app.verify_audit().await.unwrap();
    assert!(
        matches!(report.finding, Some(Finding::CheckpointSignature { size, .. }) if size == target),
        "{:?}",
        report.finding
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_runs_and_subscriber_failures_are_events() {
    for kind in database_kinds() {
        let server = TestServer::start(kind).await;
        let started = server.wait_for_type("ServerStarted").await;
        let run = started[0].aggregate.clone();
        let listeners = &started[0].payload["ServerStarted"]["listeners"];
        assert!(
            listeners
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(format!("sftp {}", server.addr))),
            "{kind}: {listeners}"
        );
        // The projector's table goes away, as in a broken database.
        let db = Database::connect(&server.config.database.url)
            .await
            .unwrap();
        sql(
            &db,
            "ALTER TABLE projection_docs RENAME TO projection_docs_away",
        )
        .await
        .unwrap();
        server.add_user("zed", &[]).await;
        let failed = server.wait_for_type("SubscriberFailed").await;
        assert_eq!(failed.len(), 1, "{kind}: recorded once while it fails");
        assert_eq!(failed[0].aggregate, run, "{kind}");
        assert_eq!(
            failed[0].payload["SubscriberFailed"]["subscriber"], "projector",
            "{kind}"
        );
        sql(
            &db,
            "ALTER TABLE projection_docs_away RENAME TO projection_docs",
        )
        .await
        .unwrap();
        db.close().await;
        server.wait_for_type("SubscriberRecovered").await;
        // The user it could not project is projected once it recovers.
        let users = server.app().list_users().await.unwrap();
        assert!(users.iter().any(|u| u.username == "zed"), "{kind}");

        let (config, _dir) = server.stop().await;
        let (app, db) = tollgate::open(&config).await.unwrap();
        let stopped = app
            .list_events(&tollgate_application::EventFilter {
                event_type: Some("ServerStopped".to_string()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(stopped.len(), 1, "{kind}");
        assert_eq!(
            (stopped[0].aggregate.as_str(), stopped[0].actor.as_str()),
            (run.as_str(), "system")
        );
        assert_eq!(app.verify_audit().await.unwrap().finding, None, "{kind}");
        db.close().await;
    }
}

/// Creates the policies `names` all at once; whether each was created.
async fn create_policies_at_once(app: &Arc<tollgate::App>, names: Vec<String>) -> Vec<bool> {
    let tasks: Vec<_> = names
        .into_iter()
        .map(|name| {
            let app = app.clone();
            tokio::spawn(async move {
                app.create_policy("test", &name, &["/=list".to_string()])
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        created.push(task.await.unwrap());
    }
    created
}

/// Every event in the log, checked to sit at gapless positions from 1.
async fn gapless_events(db: &Database, kind: &str) -> Vec<LoggedEvent> {
    let events = db.read_after(0, 1000).await.unwrap();
    let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        (1..=positions.len() as u64).collect::<Vec<_>>(),
        "{kind}: gapless"
    );
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_keep_positions_gapless_and_a_conflict_takes_no_other_with_it() {
    for kind in database_kinds() {
        let (app, db, _dir) = open(kind).await;
        let app = Arc::new(app);
        // Many distinct commands at once, and several racing to create the
        // same policy: the losers of the race fail alone.
        let names = (0..64)
            .map(|i| {
                if i % 8 == 0 {
                    "contested".to_string()
                } else {
                    format!("q{i}")
                }
            })
            .collect();
        let created = create_policies_at_once(&app, names).await;
        assert_eq!(
            created.iter().filter(|c| **c).count(),
            56 + 1,
            "{kind}: every distinct policy, one contested"
        );
        let events = gapless_events(&db, kind).await;
        let policies: BTreeSet<&str> = events
            .iter()
            .filter(|e| e.event_type == "PolicyCreated")
            .map(|e| e.aggregate_id.as_str())
            .collect();
        assert_eq!(policies.len(), 57, "{kind}");
        let contested = events
            .iter()
            .filter(|e| e.aggregate_id == "contested")
            .count();
        assert_eq!(contested, 1, "{kind}: the contested policy is created once");
    }
}

/// A command whose event the database refuses (here a trigger, as a
/// constraint would) fails alone, whatever commands it was committed with.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_event_takes_no_other_command_with_it() {
    for kind in database_kinds() {
        let (app, db, _dir) = open(kind).await;
        let refuse: &[&str] = if kind == "sqlite" {
            &["CREATE TRIGGER refuse_some BEFORE INSERT ON events \
               WHEN NEW.aggregate_id LIKE 'refused%' \
               BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"]
        } else {
            &[
                "CREATE FUNCTION refuse_some() RETURNS trigger AS $$ BEGIN \
                 IF NEW.aggregate_id LIKE 'refused%' THEN \
                 RAISE EXCEPTION 'refused by the database'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse_some BEFORE INSERT ON events \
                 FOR EACH ROW EXECUTE FUNCTION refuse_some()",
            ]
        };
        for statement in refuse {
            sql(&db, statement).await.unwrap();
        }
        let app = Arc::new(app);
        let names: Vec<String> = (0..64)
            .map(|i| {
                if i % 8 == 0 {
                    format!("refused{i}")
                } else {
                    format!("r{i}")
                }
            })
            .collect();
        let created = create_policies_at_once(&app, names.clone()).await;
        for (name, created) in names.iter().zip(created) {
            assert_eq!(created, !name.starts_with("refused"), "{kind}: {name}");
        }
        let events = gapless_events(&db, kind).await;
        let policies = events
            .iter()
            .filter(|e| e.event_type == "PolicyCreated")
            .count();
        assert_eq!(policies, 56, "{kind}");
        db.close().await;
    }
}

/// Text that JSON must escape reaches the log as it was given, whether its
/// command commits alone or in a group with others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_text_in_an_event_reads_back_unchanged() {
    let path = "/in/\"quoted\"\\back\u{1}\u{1f}\n\t\u{7f}é\u{2028}\u{10000}";
    for kind in database_kinds() {
        let (app, db, _dir) = open(kind).await;
        let app = Arc::new(app);
        let alone = app
            .create_policy("test", "alone", &[format!("{path}=list")])
            .await;
        assert!(alone.is_ok(), "{kind}: {alone:?}");
        let names: Vec<String> = (0..16).map(|i| format!("g{i}")).collect();
        let grouped = futures::future::join_all(names.iter().map(|name| {
            let app = app.clone();
            let rule = format!("{path}/{name}=list");
            async move { app.create_policy("test", name, &[rule]).await }
        }))
        .await;
        assert!(grouped.iter().all(Result::is_ok), "{kind}: {grouped:?}");
        let events = gapless_events(&db, kind).await;
        let texts: Vec<String> = events
            .iter()
            .filter(|e| e.event_type == "PolicyCreated")
            .map(|e| e.payload.to_string())
            .collect();
        assert_eq!(texts.len(), 17, "{kind}");
        let quoted = |text: &str| serde_json::to_string(text).unwrap();
        assert!(
            texts.iter().any(|t| t.contains(&quoted(path))),
            "{kind}: {texts:?}"
        );
        for name in &names {
            let rule = quoted(&format!("{path}/{name}"));
            assert!(texts.iter().any(|t| t.contains(&rule)), "{kind}: {name}");
        }
        db.close().await;
    }
}

/// A projector batch read before a rebuild's reset (which empties the read
/// models and forgets the checkpoint) must not land after it: it would put
/// the checkpoint past events whose documents the reset removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_batch_from_before_a_reset_is_refused() {
    use tollgate_ports::outbound::{DocChange, ProjectionStore, StoreErrorKind};
    for kind in database_kinds() {
        let (_app, db, _dir) = open(kind).await;
        let store: Arc<dyn ProjectionStore> = Arc::new(db.clone());
        let doc = |key: &str| DocChange {
            projection: "test_docs".to_string(),
            key: key.to_string(),
            doc: Some(serde_json::json!({ "key": key }).to_string()),
        };
        store.commit("tester", 0, 5, &[doc("a")]).await.unwrap();
        store.commit("tester", 5, 7, &[]).await.unwrap();
        let stale = store.commit("tester", 5, 9, &[doc("b")]).await.unwrap_err();
        assert_eq!(stale.kind, StoreErrorKind::Conflict, "{kind}");

        store.reset("tester", &["test_docs"]).await.unwrap();
        let late = store.commit("tester", 7, 9, &[doc("b")]).await.unwrap_err();
        assert_eq!(
            late.kind,
            StoreErrorKind::Conflict,
            "{kind}: a batch from before the reset landed"
        );
        assert_eq!(store.checkpoint("tester").await.unwrap(), 0, "{kind}");
        assert!(
            store.get("test_docs", "b").await.unwrap().is_none(),
            "{kind}"
        );

        // Projecting again from the start is accepted.
        store
            .commit("tester", 0, 9, &[doc("a"), doc("b")])
            .await
            .unwrap();
        assert_eq!(store.checkpoint("tester").await.unwrap(), 9, "{kind}");
    }
}

/// A projector batch writes its documents a chunk of rows per statement:
/// every document lands, an existing one is replaced, a removal removes, and
/// a key changed twice in one batch keeps its last change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_batch_writes_replaces_and_removes_its_documents() {
    use tollgate_ports::outbound::{DocChange, ProjectionStore};
    for kind in database_kinds() {
        let (_app, db, _dir) = open(kind).await;
        let store: Arc<dyn ProjectionStore> = Arc::new(db.clone());
        let change = |key: String, doc: Option<u32>| DocChange {
            projection: "test_docs".to_string(),
            key,
            doc: doc.map(|n| serde_json::json!({ "n": n }).to_string()),
        };
        // More documents than one statement carries.
        let first: Vec<DocChange> = (0..1200)
            .map(|i| change(format!("k{i}"), Some(i)))
            .collect();
        store.commit("tester", 0, 1, &first).await.unwrap();

        let second = vec![
            change("k1".into(), Some(1001)),
            change("k2".into(), None),
            change("k3".into(), Some(3)),
            change("k3".into(), None),
            change("k4".into(), None),
            change("k4".into(), Some(4004)),
            change("new".into(), Some(7)),
        ];
        store.commit("tester", 1, 2, &second).await.unwrap();

        let n = |key: &str| {
            let store = store.clone();
            let key = key.to_string();
            async move {
                store
                    .get("test_docs", &key)
                    .await
                    .unwrap()
                    .map(|doc| doc["n"].as_u64().unwrap())
            }
        };
        assert_eq!(n("k0").await, Some(0), "{kind}");
        assert_eq!(n("k1").await, Some(1001), "{kind}");
        assert_eq!(n("k2").await, None, "{kind}");
        assert_eq!(n("k3").await, None, "{kind}");
        assert_eq!(n("k4").await, Some(4004), "{kind}");
        assert_eq!(n("k1199").await, Some(1199), "{kind}");
        assert_eq!(n("new").await, Some(7), "{kind}");
        assert_eq!(
            store.list("test_docs").await.unwrap().len(),
            1200 - 2 + 1,
            "{kind}"
        );
        assert_eq!(store.checkpoint("tester").await.unwrap(), 2, "{kind}");
    }
}

/// PostgreSQL commits derived state (read models, seals, leaves) without
/// waiting for its WAL flush, inside the transaction only: no connection
/// goes back to the pool with its later commits, events among them,
/// unflushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_commit_leaves_no_connection_committing_unflushed() {
    use tollgate_ports::outbound::{DocChange, ProjectionStore};
    if !database_kinds().contains(&"postgres") {
        return;
    }
    let (_app, db, _dir) = open("postgres").await;
    let Database::Postgres(store) = &db else {
        unreachable!("opened on PostgreSQL");
    };
    let projections: Arc<dyn ProjectionStore> = Arc::new(db.clone());
    for to in 1..=4 {
        let doc = DocChange {
            projection: "test_docs".to_string(),
            key: format!("k{to}"),
            doc: Some(serde_json::json!({ "n": to }).to_string()),
        };
        projections
            .commit("tester", to - 1, to, &[doc])
            .await
            .unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..store.pool().options().get_max_connections() {
        let mut conn = store.pool().acquire().await.unwrap();
        let level: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(level, "on");
        held.push(conn);
    }
}

/// Waits until every subscriber of `app` has processed the log up to its
/// head (positions as stored).
async fn subscribers_at_head(app: &tollgate::App) -> u64 {
    for _ in 0..200 {
        let status = app.subscriber_status().await.unwrap();
        if status.iter().all(|s| s.position == s.head) {
            return status[0].head;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the subscribers did not reach the head: {:?}",
        app.subscriber_status().await.unwrap()
    );
}

/// The server's subscribers remember where their own last writes left the
/// audit chain and the read models, and read nothing back between rounds.
/// When another process (the CLI, another node) commits, seals, grows the
/// tree and projects on the same database meanwhile, their next writes find
/// the store moved on, and they carry on from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_carry_on_after_another_process_wrote_for_them() {
    for kind in database_kinds() {
        let server = TestServer::start(kind).await;
        server.add_user("ivan", &[]).await;
        subscribers_at_head(server.app()).await;

        let (other, db) = tollgate::open(&server.config).await.unwrap();
        add_policies(&other, 0..3).await;
        other.set_user_enabled("cli", "ivan", false).await.unwrap();
        other.catch_up().await.unwrap();
        let moved = other.subscriber_status().await.unwrap();
        assert!(
            moved.iter().all(|s| s.position == s.head),
            "{kind}: {moved:?}"
        );
        db.close().await;

        server.add_user("judy", &[]).await;
        let head = subscribers_at_head(server.app()).await;
        assert!(head > moved[0].head, "{kind}");
        let report = server.app().verify_audit().await.unwrap();
        assert_eq!(report.finding, None, "{kind}");
        // Everything up to the head is sealed (`verify_audit` records itself).
        assert!(report.sealed >= head, "{kind}: {} < {head}", report.sealed);
        let users = server.app().list_users().await.unwrap();
        let mut enabled: Vec<(&str, bool)> = users
            .iter()
            .map(|u| (u.username.as_str(), u.enabled))
            .collect();
        enabled.sort();
        assert_eq!(enabled, [("ivan", false), ("judy", true)], "{kind}");
        server.stop().await;
    }
}
