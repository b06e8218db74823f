//! Event fan-out under a burst: a running server with one webhook
//! subscription (to a local receiver) and one Kafka subscription (to
//! librdkafka's mock cluster, read back by a consumer), then a burst of
//! records committed at once. Prints how long sealing and each delivery
//! took to drain the burst: events/s and the lag of the burst's last event.
//!
//! `cargo bench --bench fanout` — env: `EVENTS` (100000).
//! A benchmark, not a test: it prints figures and asserts only that every
//! event arrived.
// Printing the table is the benchmark's output.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use poem::listener::TcpAcceptor;
use poem::web::Data;
use poem::{EndpointExt, Route, handler, post};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use tollgate::{Config, Listeners, Server};
use tollgate_domain::admin::Role;
use tollgate_persistence::Database;
use tollgate_ports::api::{Principal, SubscriptionRecord};

const TOPIC: &str = "bench.events";

#[handler]
async fn hook(Data(count): Data<&Arc<AtomicU64>>) -> &'static str {
    count.fetch_add(1, Ordering::Relaxed);
    ""
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tollgate::install_tls_provider();
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let events: u64 = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benchmarking { 100_000 } else { 2_000 });

    // The webhook receiver.
    let received = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_addr = listener.local_addr()?;
    let app = Route::new().at("/hook", post(hook)).data(received.clone());
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?)
            .run(app)
            .await;
        Ok::<_, std::io::Error>(())
    });

    // The Kafka cluster and its consumer.
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(TOPIC, 3, 1)?;
    let brokers = cluster.bootstrap_servers();
    let consumed = Arc::new(AtomicU64::new(0));
    {
        let consumed = consumed.clone();
        let brokers = brokers.clone();
        std::thread::spawn(move || {
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", "bench")
                .set("auto.offset.reset", "earliest")
                .create()
                .expect("a consumer");
            // Assigned, not subscribed: no group rebalance delay in the figures.
            let mut partitions = rdkafka::TopicPartitionList::new();
            for partition in 0..3 {
                partitions
                    .add_partition_offset(TOPIC, partition, rdkafka::Offset::Beginning)
                    .expect("a partition");
            }
            consumer.assign(&partitions).expect("assigned");
            loop {
                if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                    consumed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    let dir = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.database.url = format!("sqlite:{}", dir.path().join("bench.db").display());
    config.webhooks.allow_private_targets = true;
    config.kafka.brokers = brokers;
    let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await };
    let server = Server::start(
        config,
        Listeners {
            sftp: Some(bind().await?),
            http: Some(bind().await?),
            ftp: Some(bind().await?),
            ftps: None,
        },
    )
    .await?;
    let admin = Principal::Admin {
        name: tollgate_application::FIRST_ADMIN.to_string(),
        role: Role::Admin,
    };
    let api = server.app.admin_api();
    for (name, url, topic) in [
        ("hook", format!("http://{hook_addr}/hook"), None),
        ("kafka", String::new(), Some(TOPIC.to_string())),
    ] {
        api.create_subscription(
            &admin,
            SubscriptionRecord {
                name: name.to_string(),
                url,
                kafka_topic: topic,
                event_types: vec!["BenchRecorded".to_string()],
                ..SubscriptionRecord::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }

    // The burst: committed in one transaction, straight into the log.
    let db =
        Database::connect(&format!("sqlite:{}", dir.path().join("bench.db").display())).await?;
    let Database::Sqlite(store) = &db else {
        anyhow::bail!("the benchmark runs on SQLite");
    };
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1),
              base(p) AS (SELECT COALESCE(MAX(position), 0) FROM events)
         INSERT INTO events (position, event_id, aggregate_type, aggregate_id, sequence,
                             event_type, event_version, payload, metadata)
         SELECT p + i, lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' ||
                substr(lower(hex(randomblob(2))), 2) || '-a' || substr(lower(hex(randomblob(2))), 2)
                || '-' || lower(hex(randomblob(6))),
                'bench', 'b' || (i % 1000), 1 + i / 1000, 'BenchRecorded', '1',
                '{\"BenchRecorded\":{\"n\":' || i || '}}',
                '{\"actor\":\"bench\",\"time\":\"' || strftime('%Y-%m-%dT%H:%M:%fZ', 'now') || '\"}'
         FROM n, base",
    )
    .bind(events as i64)
    .execute(store.pool())
    .await?;
    let head: i64 = sqlx::query_scalar("SELECT MAX(position) FROM events")
        .fetch_one(store.pool())
        .await?;
    db.close().await;
    let burst = Instant::now();

    let mut sealed_at = None;
    let mut hook_at = None;
    let mut kafka_at = None;
    let limit = Duration::from_secs(if benchmarking { 1800 } else { 300 });
    while (hook_at.is_none() || kafka_at.is_none()) && burst.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if sealed_at.is_none() {
            let status = server.app.subscriber_status().await?;
            if status
                .iter()
                .filter(|s| s.name.starts_with("audit"))
                .all(|s| s.position >= head as u64)
            {
                sealed_at = Some(burst.elapsed());
            }
        }
        if hook_at.is_none() && received.load(Ordering::Relaxed) >= events {
            hook_at = Some(burst.elapsed());
        }
        if kafka_at.is_none() && consumed.load(Ordering::Relaxed) >= events {
            kafka_at = Some(burst.elapsed());
        }
    }
    server.stop().await?;
    let (Some(hook_at), Some(kafka_at)) = (hook_at, kafka_at) else {
        anyhow::bail!(
            "not every event arrived: webhook {}, kafka {} of {events}",
            received.load(Ordering::Relaxed),
            consumed.load(Ordering::Relaxed)
        );
    };
    let sealed_at = sealed_at.unwrap_or_default();
    println!(
        "| target | events | sealed (chain + tree) after | all delivered after | events/s | lag of the burst's last event |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (target, done) in [
        ("webhook (local receiver)", hook_at),
        ("Kafka (mock cluster)", kafka_at),
    ] {
        println!(
            "| {target} | {events} | {:.2} s | {:.2} s | {:.0} | {:.2} s |",
            sealed_at.as_secs_f64(),
            done.as_secs_f64(),
            events as f64 / done.as_secs_f64(),
            done.as_secs_f64(),
        );
    }
    Ok(())
}
