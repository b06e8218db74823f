//! The event log invariants on every configured database: append-only
//! tables, gapless positions in commit order under concurrent writers,
//! tamper detection by `audit verify`, and subscribers that resume.

use std::collections::BTreeSet;
use std::sync::Arc;

use tollgate_audit::Finding;
use tollgate_persistence::Database;
use tollgate_ports::outbound::EventLog;

use crate::support::{TestServer, database_kinds, test_config};

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
        app.catch_up().await.unwrap();
        for statement in [
            "UPDATE events SET event_type = 'Forged'",
            "DELETE FROM events",
            "UPDATE audit_seals SET hash = 'x'",
            "DELETE FROM audit_seals",
        ] {
            let err = sql(&db, statement).await.expect_err(statement);
            assert!(
                err.to_string().contains("append-only"),
                "{kind}: {statement}: {err}"
            );
        }
        assert_eq!(app.verify_audit().await.unwrap().sealed, 2);
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
    db.close().await;
    report.finding
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

        let server = TestServer::start_with(config, dir).await;
        let status = server.app().subscriber_status().await.unwrap();
        assert!(
            status.iter().all(|s| s.position == head),
            "{kind}: {status:?}"
        );
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
