//! The log, audit and projection queries, written once for both databases:
//! the statements use `$N` placeholders, which SQLite and PostgreSQL both
//! accept, and only the pool and row types differ.

/// Implements the log, audit-seal and projection methods on a store with a
/// `pool` field for reads and a `write()` method that lends the connection
/// writes go through, plus the row decoders, for one database.
macro_rules! log_stores {
    ($store:ty, $row:ty, $columns:expr, $event_id_is:expr) => {
        impl $store {
    pub(crate) async fn read_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let sql = format!(
            "SELECT {} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            $columns
        );
        let rows = sqlx::query(&sql)
            .bind(to_i64(after))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|row| event_row(row).map_err(map_err)?.into_logged())
            .collect()
    }

    pub(crate) async fn head(&self) -> Result<u64, StoreError> {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(to_u64(head))
    }

    pub(crate) async fn position_of(&self, event_id: &str) -> Result<Option<u64>, StoreError> {
        // Event ids are UUIDs, stored in their hyphenated lower-case form.
        let Ok(event_id) = uuid::Uuid::parse_str(event_id) else {
            return Ok(None);
        };
        let sql = format!("SELECT position FROM events WHERE {}", $event_id_is);
        let position: Option<i64> = sqlx::query_scalar(&sql)
            .bind(event_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(position.map(to_u64))
    }

    pub(crate) async fn leaf_count(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM audit_leaves")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(to_u64(count))
    }

    pub(crate) async fn append_leaves(
        &self,
        after: u64,
        leaves: &[String],
        checkpoint: Option<&tollgate_ports::outbound::CheckpointRecord>,
    ) -> Result<(), StoreError> {
        // Writing first takes SQLite's write lock at once (a transaction
        // that reads first cannot upgrade once another writer committed).
        // Leaves derive from the log; a signed checkpoint, once shown, is
        // kept as durably as the events.
        let mut conn = if checkpoint.is_some() {
            self.write().await
        } else {
            self.write_derived().await
        }
        .map_err(map_err)?;
        let numbered: Vec<(i64, &String)> = leaves
            .iter()
            .enumerate()
            .map(|(i, leaf)| (to_i64(after + 1 + i as u64), leaf))
            .collect();
        if checkpoint.is_none()
            && !Self::DERIVED_NEEDS_TRANSACTION
            && (1..=crate::shared::INSERT_CHUNK).contains(&numbered.len())
        {
            // One statement, atomic on its own, that lands only where the
            // stored leaves end: no trips for BEGIN, the check and COMMIT.
            let mut insert = sqlx::QueryBuilder::<<$row as sqlx::Row>::Database>::new(
                "INSERT INTO audit_leaves (position, leaf) SELECT column1, column2 FROM (",
            );
            insert.push_values(&numbered, |mut row, (position, leaf)| {
                row.push_bind(*position).push_bind((*leaf).clone());
            });
            insert
                .push(") WHERE (SELECT COALESCE(MAX(position), 0) FROM audit_leaves) = ")
                .push_bind(to_i64(after));
            let landed = insert
                .build()
                .execute(&mut *conn)
                .await
                .map_err(map_err)?
                .rows_affected();
            if landed != numbered.len() as u64 {
                return Err(crate::shared::leaves_moved(after));
            }
            return Ok(());
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(map_err)?;
        if checkpoint.is_none() {
            Self::derive_in(&mut tx).await.map_err(map_err)?;
        }
        for chunk in numbered.chunks(crate::shared::INSERT_CHUNK) {
            let mut insert = sqlx::QueryBuilder::<<$row as sqlx::Row>::Database>::new(
                "INSERT INTO audit_leaves (position, leaf) ",
            );
            insert.push_values(chunk, |mut row, (position, leaf)| {
                row.push_bind(*position).push_bind((*leaf).clone());
            });
            insert.build().execute(&mut *tx).await.map_err(map_err)?;
        }
        // The new leaves must continue the stored ones without a gap.
        let below: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(position), 0) FROM audit_leaves WHERE position <= $1",
        )
        .bind(to_i64(after))
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        if to_u64(below) != after {
            return Err(crate::shared::leaves_moved(after));
        }
        if let Some(checkpoint) = checkpoint {
            insert_checkpoint(&mut *tx, checkpoint).await?;
        }
        tx.commit().await.map_err(map_err)
    }

    pub(crate) async fn read_leaves(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, leaf FROM audit_leaves WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(to_i64(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                Ok((
                    to_u64(row.try_get(0).map_err(map_err)?),
                    row.try_get(1).map_err(map_err)?,
                ))
            })
            .collect()
    }

    pub(crate) async fn append_checkpoint(
        &self,
        checkpoint: &tollgate_ports::outbound::CheckpointRecord,
    ) -> Result<(), StoreError> {
        insert_checkpoint(&mut *self.write().await.map_err(map_err)?, checkpoint).await
    }

    pub(crate) async fn latest_checkpoint(&self) -> Result<Option<tollgate_ports::outbound::CheckpointRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
            crate::shared::CHECKPOINT_COLUMNS
        );
        let row = sqlx::query(&sql)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(checkpoint_row).transpose()
    }

    pub(crate) async fn checkpoint_of_size(
        &self,
        size: u64,
    ) -> Result<Option<tollgate_ports::outbound::CheckpointRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM audit_checkpoints WHERE size = $1",
            crate::shared::CHECKPOINT_COLUMNS
        );
        let row = sqlx::query(&sql)
        .bind(to_i64(size))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(checkpoint_row).transpose()
    }

    pub(crate) async fn read_checkpoints(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<tollgate_ports::outbound::CheckpointRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM audit_checkpoints WHERE size > $1 ORDER BY size LIMIT $2",
            crate::shared::CHECKPOINT_COLUMNS
        );
        let rows = sqlx::query(&sql)
        .bind(to_i64(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(checkpoint_row).collect()
    }

    pub(crate) async fn last_seal(&self) -> Result<Option<Seal>, StoreError> {
        let row = sqlx::query(
            "SELECT position, event_id, hash FROM audit_seals ORDER BY position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(seal_row).transpose()
    }

    pub(crate) async fn append_seals(&self, seals: &[Seal]) -> Result<(), StoreError> {
        // One statement per chunk: a round trip per row is what a sealer
        // following a busy log cannot afford on PostgreSQL. Seals derive
        // from the log.
        let insert = |chunk: &[Seal]| {
            let mut insert = sqlx::QueryBuilder::<<$row as sqlx::Row>::Database>::new(
                "INSERT INTO audit_seals (position, event_id, hash) ",
            );
            insert.push_values(chunk, |mut row, seal| {
                row.push_bind(to_i64(seal.position))
                    .push_bind(seal.event_id.clone())
                    .push_bind(seal.hash.clone());
            });
            insert
        };
        let mut conn = self.write_derived().await.map_err(map_err)?;
        if !Self::DERIVED_NEEDS_TRANSACTION
            && (1..=crate::shared::INSERT_CHUNK).contains(&seals.len())
        {
            // One statement is atomic on its own: no trips for BEGIN and
            // COMMIT.
            insert(seals).build().execute(&mut *conn).await.map_err(map_err)?;
            return Ok(());
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(map_err)?;
        Self::derive_in(&mut tx).await.map_err(map_err)?;
        for chunk in seals.chunks(crate::shared::INSERT_CHUNK) {
            insert(chunk).build().execute(&mut *tx).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    pub(crate) async fn read_seals(&self, after: u64, limit: u32) -> Result<Vec<Seal>, StoreError> {
        let rows = sqlx::query("SELECT position, event_id, hash FROM audit_seals WHERE position > $1 ORDER BY position LIMIT $2")
            .bind(to_i64(after))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(seal_row).collect()
    }

    pub(crate) async fn checkpoint(&self, subscriber: &str) -> Result<u64, StoreError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM subscriber_checkpoints WHERE subscriber = $1")
                .bind(subscriber)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
        Ok(position.map(to_u64).unwrap_or(0))
    }

    pub(crate) async fn commit(
        &self,
        subscriber: &str,
        from: u64,
        to: u64,
        changes: &[DocChange],
    ) -> Result<(), StoreError> {
        // Read models and checkpoints derive from the log.
        let mut conn = self.write_derived().await.map_err(map_err)?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(map_err)?;
        Self::derive_in(&mut tx).await.map_err(map_err)?;
        // Compare-and-set: a subscriber running in two processes must not
        // move the checkpoint backwards or apply a batch twice. No row is
        // position 0, so only a batch read from the start may create it: a
        // batch read before a reset (which deletes the row) must not land
        // after it.
        let sql = if from == 0 {
            "INSERT INTO subscriber_checkpoints (subscriber, position) VALUES ($1, $2)
             ON CONFLICT (subscriber) DO UPDATE SET position = excluded.position
             WHERE subscriber_checkpoints.position = $3"
        } else {
            "UPDATE subscriber_checkpoints SET position = $2
             WHERE subscriber = $1 AND position = $3"
        };
        let moved = sqlx::query(sql)
            .bind(subscriber)
            .bind(to_i64(to))
            .bind(to_i64(from))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if moved.rows_affected() == 0 {
            return Err(moved_checkpoint(subscriber));
        }
        // The documents written go in one statement per chunk: a statement
        // is a round trip to the database, and a busy log changes a
        // document or two per event. A key changed twice keeps its last
        // change, as applying them in order would (and one upsert may not
        // touch a row twice on PostgreSQL).
        let mut last = std::collections::HashMap::with_capacity(changes.len());
        for (i, change) in changes.iter().enumerate() {
            last.insert((change.projection.as_str(), change.key.as_str()), i);
        }
        let (written, deleted): (Vec<&DocChange>, Vec<&DocChange>) = changes
            .iter()
            .enumerate()
            .filter(|(i, change)| {
                last[&(change.projection.as_str(), change.key.as_str())] == *i
            })
            .map(|(_, change)| change)
            .partition(|change| change.doc.is_some());
        for chunk in written.chunks(crate::shared::INSERT_CHUNK) {
            let mut upsert = sqlx::QueryBuilder::<<$row as sqlx::Row>::Database>::new(
                "INSERT INTO projection_docs (projection, key, doc) ",
            );
            upsert.push_values(chunk, |mut row, change| {
                row.push_bind(change.projection.as_str())
                    .push_bind(change.key.as_str())
                    .push_bind(change.doc.as_deref());
            });
            upsert.push(" ON CONFLICT (projection, key) DO UPDATE SET doc = excluded.doc");
            upsert.build().execute(&mut *tx).await.map_err(map_err)?;
        }
        for change in deleted {
            sqlx::query("DELETE FROM projection_docs WHERE projection = $1 AND key = $2")
                .bind(&change.projection)
                .bind(&change.key)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    pub(crate) async fn get(
        &self,
        projection: &str,
        key: &str,
    ) -> Result<Option<Value>, StoreError> {
        let doc: Option<String> = sqlx::query_scalar(
            "SELECT doc FROM projection_docs WHERE projection = $1 AND key = $2",
        )
        .bind(projection)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        doc.map(|text| serde_json::from_str(&text).map_err(|e| corrupt("projection", e)))
            .transpose()
    }

    pub(crate) async fn list(&self, projection: &str) -> Result<Vec<(String, Value)>, StoreError> {
        let rows =
            sqlx::query("SELECT key, doc FROM projection_docs WHERE projection = $1 ORDER BY key")
                .bind(projection)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let doc: String = row.try_get(1).map_err(map_err)?;
                Ok((
                    row.try_get(0).map_err(map_err)?,
                    serde_json::from_str(&doc).map_err(|e| corrupt("projection", e))?,
                ))
            })
            .collect()
    }

    pub(crate) async fn prune(&self, pruned_by: &str, positions: &[u64]) -> Result<(), StoreError> {
        let mut conn = self.write().await.map_err(map_err)?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(map_err)?;
        for chunk in positions.chunks(crate::shared::INSERT_CHUNK) {
            let mut insert = sqlx::QueryBuilder::<<$row as sqlx::Row>::Database>::new(
                "INSERT INTO audit_pruned (position, pruned_by) ",
            );
            insert.push_values(chunk, |mut row, position| {
                row.push_bind(to_i64(*position)).push_bind(pruned_by.to_string());
            });
            insert.build().execute(&mut *tx).await.map_err(map_err)?;
            let mut delete = sqlx::QueryBuilder::<<$row as sqlx::Row>::Database>::new(
                "DELETE FROM events WHERE position IN (",
            );
            let mut list = delete.separated(", ");
            for position in chunk {
                list.push_bind(to_i64(*position));
            }
            delete.push(")");
            let deleted = delete.build().execute(&mut *tx).await.map_err(map_err)?;
            if deleted.rows_affected() != chunk.len() as u64 {
                return Err(StoreError::new(
                    tollgate_ports::outbound::StoreErrorKind::Conflict,
                    "a record to prune is no longer in the log",
                    None,
                ));
            }
        }
        tx.commit().await.map_err(map_err)
    }

    pub(crate) async fn read_pruned(&self, after: u64, limit: u32) -> Result<Vec<u64>, StoreError> {
        let positions: Vec<i64> = sqlx::query_scalar(
            "SELECT position FROM audit_pruned WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(to_i64(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(positions.into_iter().map(to_u64).collect())
    }

    pub(crate) async fn record_deliveries(
        &self,
        attempts: &[tollgate_ports::outbound::DeliveryAttempt],
    ) -> Result<(), StoreError> {
        let mut conn = self.write().await.map_err(map_err)?;
        for chunk in attempts.chunks(crate::shared::INSERT_CHUNK / 2) {
            let mut insert = sqlx::QueryBuilder::<<$row as sqlx::Row>::Database>::new(
                "INSERT INTO webhook_deliveries (subscription, event_id, position, attempt, \
                 status, latency_ms, error, time, redelivery) ",
            );
            insert.push_values(chunk, |mut row, a| {
                row.push_bind(a.subscription.clone())
                    .push_bind(a.event_id.clone())
                    .push_bind(to_i64(a.position))
                    .push_bind(i32::try_from(a.attempt).unwrap_or(i32::MAX))
                    .push_bind(a.status.map(i32::from))
                    .push_bind(to_i64(a.latency_ms))
                    .push_bind(a.error.clone())
                    .push_bind(a.time.clone())
                    .push_bind(a.redelivery);
            });
            insert.build().execute(&mut *conn).await.map_err(map_err)?;
        }
        Ok(())
    }

    pub(crate) async fn deliveries(
        &self,
        subscription: &str,
        limit: u32,
    ) -> Result<Vec<tollgate_ports::outbound::DeliveryAttempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT subscription, event_id, position, attempt, status, latency_ms, error, time, \
             redelivery FROM webhook_deliveries WHERE subscription = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(subscription)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let status: Option<i32> = row.try_get(4)?;
                let attempt: i32 = row.try_get(3)?;
                Ok(tollgate_ports::outbound::DeliveryAttempt {
                    subscription: row.try_get(0)?,
                    event_id: row.try_get(1)?,
                    position: to_u64(row.try_get(2)?),
                    attempt: u32::try_from(attempt).unwrap_or(0),
                    status: status.and_then(|s| u16::try_from(s).ok()),
                    latency_ms: to_u64(row.try_get(5)?),
                    error: row.try_get(6)?,
                    time: row.try_get(7)?,
                    redelivery: row.try_get(8)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    pub(crate) async fn add_subject_key(
        &self,
        key: &tollgate_ports::outbound::SubjectKey,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO subject_keys (key_id, subject, wrapped) VALUES ($1, $2, $3)")
            .bind(&key.key_id)
            .bind(&key.subject)
            .bind(&key.wrapped)
            .execute(&mut *self.write().await.map_err(map_err)?)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(crate) async fn assign_subject_key(
        &self,
        key_id: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE subject_keys SET subject = $1 WHERE key_id = $2")
            .bind(subject)
            .bind(key_id)
            .execute(&mut *self.write().await.map_err(map_err)?)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(crate) async fn subject_keys(
        &self,
        key_ids: &[String],
    ) -> Result<Vec<tollgate_ports::outbound::SubjectKey>, StoreError> {
        let mut keys = Vec::new();
        for chunk in key_ids.chunks(crate::shared::INSERT_CHUNK) {
            let mut select = sqlx::QueryBuilder::<<$row as sqlx::Row>::Database>::new(
                "SELECT key_id, subject, wrapped FROM subject_keys WHERE key_id IN (",
            );
            let mut ids = select.separated(", ");
            for id in chunk {
                ids.push_bind(id.clone());
            }
            select.push(")");
            let rows = select.build().fetch_all(&self.pool).await.map_err(map_err)?;
            for row in &rows {
                keys.push(tollgate_ports::outbound::SubjectKey {
                    key_id: row.try_get(0).map_err(map_err)?,
                    subject: row.try_get(1).map_err(map_err)?,
                    wrapped: row.try_get(2).map_err(map_err)?,
                });
            }
        }
        Ok(keys)
    }

    pub(crate) async fn erase_subject(&self, subject: &str) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> =
            sqlx::query_scalar("DELETE FROM subject_keys WHERE subject = $1 RETURNING key_id")
                .bind(subject)
                .fetch_all(&mut *self.write().await.map_err(map_err)?)
                .await
                .map_err(map_err)?;
        ids.sort();
        Ok(ids)
    }

    pub(crate) async fn reset(
        &self,
        subscriber: &str,
        projections: &[&str],
    ) -> Result<(), StoreError> {
        let mut conn = self.write().await.map_err(map_err)?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(map_err)?;
        sqlx::query("DELETE FROM subscriber_checkpoints WHERE subscriber = $1")
            .bind(subscriber)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        for projection in projections {
            sqlx::query("DELETE FROM projection_docs WHERE projection = $1")
                .bind(projection)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }
        }


fn event_row(row: &$row) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        position: row.try_get(0)?,
        event_id: row.try_get(1)?,
        aggregate_type: row.try_get(2)?,
        aggregate_id: row.try_get(3)?,
        sequence: row.try_get(4)?,
        event_type: row.try_get(5)?,
        event_version: row.try_get(6)?,
        payload: row.try_get(7)?,
        metadata: row.try_get(8)?,
    })
}

fn checkpoint_row(row: &$row) -> Result<tollgate_ports::outbound::CheckpointRecord, StoreError> {
    Ok(tollgate_ports::outbound::CheckpointRecord {
        size: to_u64(row.try_get(0).map_err(map_err)?),
        root: row.try_get(1).map_err(map_err)?,
        key_id: row.try_get(2).map_err(map_err)?,
        note: row.try_get(3).map_err(map_err)?,
        time: row.try_get(4).map_err(map_err)?,
    })
}

async fn insert_checkpoint<'e, E>(executor: E, checkpoint: &tollgate_ports::outbound::CheckpointRecord) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = <$row as sqlx::Row>::Database>,
{
    sqlx::query(
        "INSERT INTO audit_checkpoints (size, root, key_id, note, time) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(to_i64(checkpoint.size))
    .bind(&checkpoint.root)
    .bind(&checkpoint.key_id)
    .bind(&checkpoint.note)
    .bind(&checkpoint.time)
    .execute(executor)
    .await
    .map_err(map_err)?;
    Ok(())
}

fn seal_row(row: &$row) -> Result<Seal, StoreError> {
    Ok(Seal {
        position: to_u64(row.try_get(0).map_err(map_err)?),
        event_id: row.try_get(1).map_err(map_err)?,
        hash: row.try_get(2).map_err(map_err)?,
    })
}

    };
}

pub(crate) use log_stores;

/// Leaves for the Merkle tree after `after` could not land there: the stored
/// leaves do not end at `after` (another process grew the tree, or it has a
/// gap).
pub(crate) fn leaves_moved(after: u64) -> tollgate_ports::outbound::StoreError {
    tollgate_ports::outbound::StoreError::new(
        tollgate_ports::outbound::StoreErrorKind::Conflict,
        format!("the stored Merkle tree does not end at {after} leaves"),
        None,
    )
}

/// The columns `checkpoint_row` decodes, in its order.
pub(crate) const CHECKPOINT_COLUMNS: &str = "size, root, key_id, note, time";

/// Rows per multi-row `INSERT`: well under SQLite's limit of bound
/// parameters (32766) and PostgreSQL's (65535) for three columns.
pub(crate) const INSERT_CHUNK: usize = 500;
