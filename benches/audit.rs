//! The audit trail at scale: how fast records are sealed into the hash
//! chain and the Merkle tree (with a signed checkpoint every second), how
//! long `audit verify` takes, and the size and time of an inclusion proof
//! and of an evidence bundle, on SQLite and (when reachable) PostgreSQL.
//!
//! `cargo bench --bench audit` — env: `RECORDS` (1000000), `DATABASES`
//! ("sqlite postgres"), `POSTGRES_URL` (postgres://postgres@127.0.0.1:5432).
//! A benchmark, not a test: it prints figures and asserts only that the
//! work succeeded.
// Printing the table is the benchmark's output.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use tollgate::Config;
use tollgate_persistence::Database;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tollgate::install_tls_provider();
    // `cargo test --all-targets` runs this target too, without `--bench`:
    // then a small SQLite run checks that the benchmark still works.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let records: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benchmarking { 1_000_000 } else { 20_000 });
    let databases = match std::env::var("DATABASES") {
        Ok(list) => list,
        Err(_) if benchmarking => "sqlite postgres".to_string(),
        Err(_) => "sqlite".to_string(),
    };
    println!(
        "| database | records | insert (setup) | chain seal rec/s | tree + checkpoints rec/s | checkpoints | audit verify | proof hashes | proof time | bundle of the first second |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for kind in databases.split_whitespace() {
        match run(kind, records).await {
            Ok(row) => println!("{row}"),
            // A database that is not reachable is skipped in a benchmark
            // run; as a test, any failure fails.
            Err(err) if benchmarking => println!("| {kind} | skipped: {err:#} |"),
            Err(err) => return Err(err.context(format!("the {kind} run failed"))),
        }
    }
    Ok(())
}

async fn run(kind: &str, records: u64) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.audit.checkpoint_every = u64::MAX;
    config.audit.checkpoint_interval_secs = 1;
    config.database.url = match kind {
        "sqlite" => format!("sqlite:{}", dir.path().join("bench.db").display()),
        "postgres" => {
            let server = std::env::var("POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let name = format!("tollgate_bench_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&format!("{server}/postgres")).await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await?;
            admin.close().await;
            format!("{server}/{name}")
        }
        other => anyhow::bail!("unknown database {other}"),
    };
    let (app, db) = tollgate::open(&config).await?;
    let row = measure(&app, &db, kind, records, dir.path()).await;
    db.close().await;
    if let Some(name) = config.database.url.strip_prefix("postgres://") {
        let (server, name) = name.rsplit_once('/').expect("a database name");
        let admin = sqlx::PgPool::connect(&format!("postgres://{server}/postgres")).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&admin)
            .await?;
        admin.close().await;
    }
    row
}

async fn measure(
    app: &tollgate::App,
    db: &Database,
    kind: &str,
    records: u64,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    let started = Instant::now();
    insert(db, records).await?;
    let insert = started.elapsed();

    let started = Instant::now();
    while app.seal_pending().await? > 0 {}
    let seal = started.elapsed();
    let started = Instant::now();
    while app.grow_tree().await? > 0 {}
    app.checkpoint_now().await?.expect("a checkpoint");
    let tree = started.elapsed();
    let started = Instant::now();
    let report = app.verify_audit().await?;
    let verify = started.elapsed();
    anyhow::ensure!(report.finding.is_none(), "{:?}", report.finding);

    let middle = format!("00000000-0000-4000-8000-{:012}", records / 2);
    let started = Instant::now();
    let proof = app.inclusion_proof(&middle).await?;
    let proof_time = started.elapsed();

    let out = dir.join("bundle");
    let started = Instant::now();
    let from = "2026-01-01T00:00:00Z";
    let to = "2026-01-01T00:00:01Z";
    let exported = tollgate::bundle::export(app, "bench", Some(from), Some(to), &out)
        .await?
        .expect("records in range");
    let bundle = started.elapsed();
    let bundled = exported.last - exported.first + 1;
    Ok(format!(
        "| {kind} | {records} | {} | {:.0} | {:.0} | {} | {} | {} ({} B) | {} | {} ({bundled} records) |",
        secs(insert),
        records as f64 / seal.as_secs_f64(),
        records as f64 / tree.as_secs_f64(),
        report.checkpoints,
        secs(verify),
        proof.proof.len(),
        proof.proof.len() * 32,
        secs(proof_time),
        secs(bundle),
    ))
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `records` synthetic records, one per aggregate, record `i` at
/// 2026-01-01 plus `i` × 100 µs, written straight into the log (setup, not
/// measured).
async fn insert(db: &Database, records: u64) -> anyhow::Result<()> {
    match db {
        Database::Sqlite(store) => {
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
                 INSERT INTO events (position, event_id, aggregate_type, aggregate_id, sequence,
                                     event_type, event_version, payload, metadata)
                 SELECT i, printf('00000000-0000-4000-8000-%012d', i), 'bench', 'b' || i, 1,
                        'BenchRecorded', '1', '{\"BenchRecorded\":{\"n\":' || i || '}}',
                        '{\"actor\":\"bench\",\"time\":\"' ||
                        strftime('%Y-%m-%dT%H:%M:%f', '2026-01-01', '+' || (i / 10000.0) || ' seconds')
                        || 'Z\"}'
                 FROM n",
            )
            .bind(records as i64)
            .execute(store.pool())
            .await?;
        }
        Database::Postgres(store) => {
            // In transactions of 10k rows: every insert bumps the one
            // position counter row, and a million versions of it in one
            // transaction would measure PostgreSQL's row chains, not us.
            let mut from = 1;
            while from <= records {
                let to = (from + 9_999).min(records);
                sqlx::query(
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                     event_version, payload, metadata, position, event_id)
                 SELECT 'bench', 'b' || i, 1, 'BenchRecorded', '1',
                        json_build_object('BenchRecorded', json_build_object('n', i)),
                        json_build_object('actor', 'bench', 'time',
                            to_char(timestamp '2026-01-01' + i * interval '100 microseconds',
                                    'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')),
                        0,
                        ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid
                 FROM generate_series($1, $2) AS i",
                )
                .bind(from as i64)
                .bind(to as i64)
                .execute(store.pool())
                .await?;
                from = to + 1;
            }
        }
    }
    Ok(())
}
