//! The Kafka export against librdkafka's mock cluster (a real Kafka
//! protocol broker inside librdkafka): events produced and consumed back
//! with a real consumer, through a broker outage and a server restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Message};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestServer, database_kinds, test_config};
use crate::webhooks::{admin, upload};

const TOPIC: &str = "tollgate.events";
const TYPES: [&str; 3] = ["LoginSucceeded", "TransferCompleted", "SessionClosed"];

/// One consumed record: key, the event's id, type and position.
#[derive(Debug, Clone)]
struct Consumed {
    key: String,
    event_id: String,
    position: u64,
    body: serde_json::Value,
}

fn consume_all(brokers: &str, until: impl Fn(&[Consumed]) -> bool) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("check-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline && !until(&got) {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        let headers: BTreeMap<String, String> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(headers["event_type"], body["type"].as_str().unwrap());
        assert_eq!(headers["audit_hash"].len(), 64, "{headers:?}");
        got.push(Consumed {
            key: String::from_utf8_lossy(message.key().unwrap()).into_owned(),
            event_id: headers["event_id"].clone(),
            position: headers["position"].parse().unwrap(),
            body,
        });
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_kafka_in_order_through_an_outage_and_a_restart() {
    for kind in database_kinds() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, 3, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(kind, dir.path()).await;
        config.kafka.brokers = brokers.clone();
        config.kafka.delivery_timeout_ms = 1500;
        config.webhooks.first_retry_ms = 100;
        config.webhooks.max_retry_secs = 1;
        let server = TestServer::start_with(config, dir).await;
        server.add_full_user("kai").await;
        let (client, root) = admin(&server).await;
        let created: serde_json::Value = client
            .post(format!("http://{}/api/v1/subscriptions", server.http_addr))
            .header("Authorization", &root)
            .json(&json!({"name": "siem", "kafka_topic": TOPIC, "event_types": TYPES}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            created["subscription"]["kafka_topic"], TOPIC,
            "{kind}: {created}"
        );

        for n in 0..3 {
            upload(&server, "kai", &format!("a{n}.txt")).await;
        }
        // The broker goes down while events happen, and the server restarts.
        cluster.broker_down(1).unwrap();
        for n in 0..2 {
            upload(&server, "kai", &format!("b{n}.txt")).await;
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (config, dir) = server.stop().await;
        let server = TestServer::start_with(config, dir).await;
        upload(&server, "kai", "c0.txt").await;
        cluster.broker_up(1).unwrap();
        server.wait_for_events("kai", "SessionClosed", 6).await;
        server.app().catch_up().await.unwrap();

        let expected: BTreeSet<String> = server
            .events(tollgate_application::EventFilter::default())
            .await
            .into_iter()
            .filter(|e| TYPES.contains(&e.event_type.as_str()) && e.user.as_deref() == Some("kai"))
            .map(|e| e.event_id)
            .collect();
        assert_eq!(expected.len(), 6 * 3, "{kind}");
        let wanted = expected.clone();
        let brokers_for_consumer = brokers.clone();
        let got = tokio::task::spawn_blocking(move || {
            consume_all(&brokers_for_consumer, |got| {
                wanted
                    .iter()
                    .all(|id| got.iter().any(|c| &c.event_id == id))
            })
        })
        .await
        .unwrap();
        let seen: BTreeSet<String> = got.iter().map(|c| c.event_id.clone()).collect();
        assert_eq!(seen, expected, "{kind}: every event, none lost");
        // Keyed by aggregate, in log order within each key.
        let mut by_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for c in &got {
            assert!(
                c.key == c.body["aggregate"]["id"].as_str().unwrap(),
                "{kind}: key {} for {}",
                c.key,
                c.body
            );
            by_key.entry(&c.key).or_default().push(c.position);
        }
        for (key, positions) in by_key {
            let mut first_seen = Vec::new();
            for p in positions {
                if !first_seen.contains(&p) {
                    first_seen.push(p);
                }
            }
            assert!(
                first_seen.windows(2).all(|w| w[0] < w[1]),
                "{kind}: {key}: {first_seen:?}"
            );
        }
        // The outage is in the delivery log.
        let attempts: serde_json::Value = client
            .get(format!(
                "http://{}/api/v1/subscriptions/siem/deliveries",
                server.http_addr
            ))
            .header("Authorization", admin(&server).await.1)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            attempts
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["error"].is_string()),
            "{kind}: {attempts}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_subscription_needs_configured_brokers() {
    let server = TestServer::start("sqlite").await;
    let (client, root) = admin(&server).await;
    let res = client
        .post(format!("http://{}/api/v1/subscriptions", server.http_addr))
        .header("Authorization", &root)
        .json(&json!({"name": "k", "kafka_topic": TOPIC}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let problem: serde_json::Value = res.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("kafka.brokers")
    );
    server.stop().await;
}
