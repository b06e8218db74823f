//! Tests of the SQLite store's own encodings.
use serde_json::{Value, json};
use tollgate_ports::outbound::EventLog;

use super::*;

fn event(sequence: usize, payload: Value) -> SerializedEvent {
    SerializedEvent {
        aggregate_id: "a \"quoted\" id".to_string(),
        sequence,
        aggregate_type: "policy".to_string(),
        event_type: "PolicyCreated".to_string(),
        event_version: "1".to_string(),
        payload,
        metadata: json!({"actor": "cli\\admin", "at": "2026-12-02T00:00:00Z"}),
    }
}

#[test]
fn event_rows_hold_each_document_as_the_string_of_its_text() {
    let tricky = "q\"b\\s/\u{1}\u{1f}\n\t\u{7f}é\u{2028}\u{10000}";
    let events = [
        event(
            1,
            json!({"PolicyCreated": {"name": tricky, "n": [1, -2.5, u64::MAX]}}),
        ),
        event(2, json!({"path": "\\\\\"\"", "empty": {}})),
    ];
    let new: Vec<NewEvent> = events.iter().map(NewEvent::new).collect();
    let rows: Value = serde_json::from_str(&event_rows(&new.iter().collect::<Vec<_>>())).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, event) in rows.iter().zip(&events) {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), 8);
        assert_eq!(row[0].as_str().unwrap().len(), 36, "a UUID");
        assert_eq!(row[1], "policy");
        assert_eq!(row[2], "a \"quoted\" id");
        assert_eq!(row[3], json!(event.sequence));
        assert_eq!(row[4], "PolicyCreated");
        assert_eq!(row[5], "1");
        assert_eq!(row[6].as_str().unwrap(), event.payload.to_string());
        assert_eq!(row[7].as_str().unwrap(), event.metadata.to_string());
    }
    assert_eq!(event_rows(&[]), "[]");
}

/// A store on a new database file in the temporary directory.
async fn temp_store(name: &str) -> (SqliteStore, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("tollgate-{name}-{}.db", uuid::Uuid::new_v4()));
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    (store, path)
}

/// Closes `store` and removes its files.
async fn remove_store(store: SqliteStore, path: &std::path::Path) {
    store.close().await;
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Groups of any size land at the next positions, in order, each event as
/// it was sent: bound as rows (one event, a number between two powers of
/// two, the most one statement binds) or as JSON (one more than that). A
/// group with a taken sequence number leaves nothing behind.
#[tokio::test]
async fn groups_of_any_size_append_in_order() {
    let (store, path) = temp_store("groups").await;
    let append = |events: &[SerializedEvent]| {
        let new: Vec<NewEvent> = events.iter().map(NewEvent::new).collect();
        let store = store.clone();
        async move { insert_events(&mut store.write().await.unwrap(), &new).await }
    };
    let group = |name: &str, size: usize| -> Vec<SerializedEvent> {
        (1..=size)
            .map(|sequence| SerializedEvent {
                aggregate_id: name.to_string(),
                ..event(
                    sequence,
                    json!({"group": name, "n": sequence, "text": "q\"\\\u{1}é\u{2028}"}),
                )
            })
            .collect()
    };
    let mut sent = Vec::new();
    for (name, size) in [
        ("one", 1),
        ("three", 3),
        ("most", BOUND_ROWS),
        ("json", BOUND_ROWS + 1),
    ] {
        let events = group(name, size);
        let appended = append(&events).await;
        assert!(appended.is_ok(), "a group of {size}");
        sent.extend(events);
    }
    let mut clash = group("new", 2);
    clash.extend(group("three", 1));
    let refused = append(&clash).await;
    assert!(matches!(
        refused,
        Err(AppendError::Refused(PersistenceError::OptimisticLockError))
    ));

    let rows = sqlx::query(
        "SELECT position, aggregate_id, sequence, payload, metadata FROM events ORDER BY position",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), sent.len());
    for (index, (row, event)) in rows.iter().zip(&sent).enumerate() {
        let position: i64 = row.get("position");
        assert_eq!(position, i64::try_from(index + 1).unwrap());
        assert_eq!(row.get::<String, _>("aggregate_id"), event.aggregate_id);
        assert_eq!(row.get::<i64, _>("sequence"), event.sequence as i64);
        let payload: Value = serde_json::from_str(row.get("payload")).unwrap();
        assert_eq!(payload, event.payload);
        let metadata: Value = serde_json::from_str(row.get("metadata")).unwrap();
        assert_eq!(metadata, event.metadata);
    }
    remove_store(store, &path).await;
}

/// The `synchronous` level the write connection's next commit uses:
/// 1 is NORMAL (no sync), 2 is FULL.
async fn sync_level(store: &SqliteStore) -> i64 {
    let mut writer = store.writer.lock().await;
    sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut writer.conn)
        .await
        .unwrap()
}

/// Derived state (a read model, seals, leaves) commits without a sync; an
/// event appended after it is synced, and with it everything before.
#[tokio::test]
async fn derived_state_commits_unsynced_and_the_next_event_syncs() {
    let (store, path) = temp_store("sync").await;
    assert_eq!(sync_level(&store).await, 2, "a new store syncs");
    let doc = DocChange {
        projection: "users".to_string(),
        key: "alice".to_string(),
        doc: Some(json!({"name": "alice"}).to_string()),
    };
    store.commit("projector", 0, 1, &[doc]).await.unwrap();
    assert_eq!(sync_level(&store).await, 1, "a read model's commit");
    store
        .persist(&[event(1, json!({"n": 1}))], None)
        .await
        .unwrap();
    assert_eq!(sync_level(&store).await, 2, "an event's commit");
    let seal = Seal {
        position: 1,
        event_id: uuid::Uuid::now_v7().to_string(),
        hash: "00".repeat(32),
    };
    store.append_seals(&[seal]).await.unwrap();
    assert_eq!(sync_level(&store).await, 1, "a seal's commit");
    // Any other write waits for the disk, as events do.
    store.prune("prune-1", &[1]).await.unwrap();
    assert_eq!(sync_level(&store).await, 2, "a prune's commit");
    remove_store(store, &path).await;
}

/// What a store read back from the database for `after`, never from the
/// events it holds.
async fn stored_after(store: &SqliteStore, after: u64) -> Vec<LoggedEvent> {
    store.read_after(after, 100).await.unwrap()
}

fn positions(events: &[LoggedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

/// The events a process committed reach its followers as the database
/// holds them: the same positions, ids and documents, whether a read takes
/// them from memory or reads them back.
#[tokio::test]
async fn committed_events_are_followed_as_the_database_holds_them() {
    let (store, path) = temp_store("committed").await;
    let db = crate::Database::Sqlite(store.clone());
    let tricky = "q\"b\\s/\u{1}\u{1f}\n\t\u{7f}é\u{2028}\u{10000}";
    let payloads = [
        json!({"PolicyCreated": {"name": tricky, "n": [1, -2.5, 0.1, 1e300, u64::MAX, i64::MIN]}}),
        json!({"nested": {"b": [true, null, {"z": "", "a": -0.0}], "a": 3.0}}),
        json!({"empty": {}, "list": []}),
    ];
    for (index, payload) in payloads.iter().enumerate() {
        store
            .persist(&[event(index + 1, payload.clone())], None)
            .await
            .unwrap();
    }
    // A read of the log is answered by the database alone.
    let stored = db.read_after(0, 100).await.unwrap();
    assert_eq!(positions(&stored), [1, 2, 3]);
    let taken = store
        .take_committed(0, 100)
        .expect("held since their commit");
    assert_eq!(taken, stored);
    for (event, payload) in taken.iter().zip(&payloads) {
        assert_eq!(&event.payload, payload);
        assert_eq!(event.payload.to_string(), payload.to_string());
    }
    // Taken once: the next follower reads them from the database.
    assert!(store.take_committed(0, 100).is_none());
    assert_eq!(db.follow(0, 100).await.unwrap(), stored);
    remove_store(store, &path).await;
}

/// A follower takes held events only from where it starts, at most as many
/// as it asks for, and never skips a position that another process
/// committed in between; what another process committed after them, it
/// gets when it comes back.
#[tokio::test]
async fn following_held_events_never_skips_a_position() {
    let (store, path) = temp_store("gapless").await;
    let db = crate::Database::Sqlite(store.clone());
    let other = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let group = |from: usize, to: usize| -> Vec<SerializedEvent> {
        (from..=to)
            .map(|sequence| event(sequence, json!({"n": sequence})))
            .collect()
    };
    store.persist(&group(1, 3), None).await.unwrap();
    assert_eq!(positions(&db.follow(0, 2).await.unwrap()), [1, 2]);

    // 3 is still held when another process appends 4 and 5, and then
    // this one 6: following after 2 must not go from 3 to 6.
    other.persist(&group(4, 5), None).await.unwrap();
    store.persist(&group(6, 6), None).await.unwrap();
    let followed = db.follow(2, 10).await.unwrap();
    assert_eq!(positions(&followed), [3, 4, 5, 6]);
    assert_eq!(followed, stored_after(&store, 2).await);
    assert_eq!(positions(&db.follow(5, 10).await.unwrap()), [6]);
    assert!(store.take_committed(6, 10).is_none(), "all taken");

    // A follower that moved past held events drops them.
    store.persist(&group(7, 8), None).await.unwrap();
    assert_eq!(positions(&db.follow(7, 10).await.unwrap()), [8]);
    assert!(store.take_committed(6, 10).is_none());
    assert_eq!(positions(&db.follow(6, 10).await.unwrap()), [7, 8]);

    // Held events that stop short of the head: a read of the log goes on
    // to the head, a follower gets the rest when it comes back.
    store.persist(&group(9, 10), None).await.unwrap();
    other.persist(&group(11, 11), None).await.unwrap();
    assert_eq!(positions(&db.read_after(8, 10).await.unwrap()), [9, 10, 11]);
    assert_eq!(positions(&db.follow(8, 10).await.unwrap()), [9, 10]);
    assert_eq!(positions(&db.follow(10, 10).await.unwrap()), [11]);
    assert!(db.follow(11, 10).await.unwrap().is_empty());
    other.close().await;
    drop(other);
    remove_store(store, &path).await;
}

/// A round's seals, and its Merkle leaves, go in one statement each, which
/// is atomic on its own: a batch lands whole where the stored ones end, or
/// not at all.
#[tokio::test]
async fn seals_and_leaves_land_whole_where_the_stored_ones_end_or_not_at_all() {
    use tollgate_ports::outbound::StoreErrorKind;
    let (store, path) = temp_store("derived").await;
    let seal = |position: u64| Seal {
        position,
        event_id: uuid::Uuid::now_v7().to_string(),
        hash: format!("{position:064x}"),
    };
    store.append_seals(&[seal(1), seal(2)]).await.unwrap();
    let err = store.append_seals(&[seal(3), seal(2)]).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Conflict);
    let last = store.last_seal().await.unwrap().unwrap();
    assert_eq!(last.position, 2, "nothing of a refused batch landed");

    let leaves = |n: u64| (0..n).map(|i| format!("{i:064x}")).collect::<Vec<_>>();
    store.append_leaves(0, &leaves(2), None).await.unwrap();
    // Behind the stored end (those positions are taken) or past it (a gap).
    for after in [0, 1, 3] {
        let err = store
            .append_leaves(after, &leaves(1), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Conflict, "after {after}");
    }
    assert_eq!(store.leaf_count().await.unwrap(), 2);
    store.append_leaves(2, &leaves(3), None).await.unwrap();
    let stored = store.read_leaves(0, 10).await.unwrap();
    let positions: Vec<u64> = stored.iter().map(|(position, _)| *position).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5]);
    assert_eq!(
        stored[2].1,
        leaves(1)[0],
        "the third leaf is the new batch's first"
    );
    assert_eq!(sync_level(&store).await, 1, "the leaves committed unsynced");
    remove_store(store, &path).await;
}
