//! Webhook subscriptions against a real HTTP receiver (poem on an ephemeral
//! port) that checks every Standard Webhooks signature, fails on purpose,
//! goes away, answers 410 Gone, and comes back; deliveries must lose
//! nothing across the outage and a server restart.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use poem::http::StatusCode as PoemStatus;
use poem::listener::TcpAcceptor;
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, handler, post};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_domain::admin::Role;
use tollgate_ports::api::Principal;

use crate::support::{PASSWORD, TestServer, connect, database_kinds, login_password, test_config};

/// What the receiver got, and how it answers next.
#[derive(Default)]
struct Inbox {
    /// Answers to give before accepting: (status, Retry-After).
    failures: Vec<(u16, Option<&'static str>)>,
    /// Answer 410 Gone to everything.
    gone: bool,
    /// Every accepted delivery: (webhook-id, body).
    accepted: Vec<(String, Value)>,
    /// Deliveries whose signature or timestamp did not verify.
    forged: usize,
    /// Every request, accepted or not.
    requests: usize,
}

type Shared = Arc<Mutex<(Inbox, String)>>;

fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let now = chrono::Utc::now().timestamp();
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (now - t).abs() < 300);
    fresh
        && signature
            .split(' ')
            .any(|s| s.as_bytes() == expected.as_bytes())
}

#[handler]
async fn hook(req: &Request, body: poem::Body, Data(shared): Data<&Shared>) -> Response {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let body = body.into_vec().await.unwrap_or_default();
    let mut guard = shared.lock().unwrap();
    let (inbox, secret) = &mut *guard;
    inbox.requests += 1;
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    if secret.is_empty() || !verify(secret, &id, &timestamp, &body, &header("webhook-signature")) {
        inbox.forged += 1;
        return Response::builder()
            .status(PoemStatus::UNAUTHORIZED)
            .finish();
    }
    if inbox.gone {
        return Response::builder().status(PoemStatus::GONE).finish();
    }
    if !inbox.failures.is_empty() {
        let (status, retry_after) = inbox.failures.remove(0);
        let mut response = Response::builder().status(PoemStatus::from_u16(status).unwrap());
        if let Some(wait) = retry_after {
            response = response.header("Retry-After", wait);
        }
        return response.finish();
    }
    inbox
        .accepted
        .push((id, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    Response::builder().status(PoemStatus::NO_CONTENT).finish()
}

/// A receiver on `addr` (an ephemeral port when it ends in `:0`).
struct Receiver {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(addr: &str, shared: Shared) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Route::new().at("/hook", post(hook)).data(shared);
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, async { stopped.await.unwrap_or(()) }, None)
                .await;
        });
        Receiver { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// An administrator's bearer token and a plain HTTP client for the API.
pub(crate) async fn admin(server: &TestServer) -> (reqwest::Client, String) {
    let first = Principal::Admin {
        name: tollgate_application::FIRST_ADMIN.to_string(),
        role: Role::Admin,
    };
    let api = server.app().admin_api();
    if api
        .create_admin(&first, "root", PASSWORD, Role::Admin)
        .await
        .is_err()
    {
        // Already there after a restart.
    }
    let client = reqwest::Client::new();
    let token: Value = client
        .post(format!("http://{}/api/v1/token", server.http_addr))
        .basic_auth("root", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    (client, bearer)
}

async fn call(
    server: &TestServer,
    client: &reqwest::Client,
    bearer: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = client
        .request(method, format!("http://{}{path}", server.http_addr))
        .header("Authorization", bearer);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub(crate) async fn upload(server: &TestServer, user: &str, name: &str) {
    crate::support::upload_to(server.addr, user, name, name.as_bytes()).await;
}

/// Waits (bounded) until the receiver accepted `n` distinct events.
async fn wait_for(shared: &Shared, n: usize) -> Vec<(String, Value)> {
    for _ in 0..600 {
        {
            let guard = shared.lock().unwrap();
            let distinct: BTreeSet<&String> = guard.0.accepted.iter().map(|(id, _)| id).collect();
            if distinct.len() >= n {
                return guard.0.accepted.clone();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let guard = shared.lock().unwrap();
    panic!(
        "{} distinct deliveries, not {n} ({} requests)",
        guard.0.accepted.len(),
        guard.0.requests
    );
}

async fn started(dir: tempfile::TempDir, config: tollgate::config::Config) -> TestServer {
    TestServer::start_with(config, dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_survive_an_outage_and_a_restart() {
    for kind in database_kinds() {
        let shared: Shared = Arc::default();
        let receiver = Receiver::start("127.0.0.1:0", shared.clone()).await;
        let url = format!("http://{}/hook", receiver.addr);
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(kind, dir.path()).await;
        config.webhooks.allow_private_targets = true;
        config.webhooks.first_retry_ms = 50;
        config.webhooks.max_retry_secs = 2;
        let server = started(dir, config).await;
        server.add_full_user("wendy").await;
        let (client, root) = admin(&server).await;
        let (status, created) = call(
            &server,
            &client,
            &root,
            reqwest::Method::POST,
            "/api/v1/subscriptions",
            Some(json!({"name": "siem", "url": url, "event_types": ["TransferCompleted"]})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{kind}: {created}");
        let secret = created["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("whsec_"), "{kind}");
        shared.lock().unwrap().1 = secret.clone();
        // The first event meets a 503 asking for a 1 s pause, then a 500.
        shared.lock().unwrap().0.failures = vec![(503, Some("1")), (500, None)];

        for n in 0..3 {
            upload(&server, "wendy", &format!("a{n}.txt")).await;
        }
        let got = wait_for(&shared, 3).await;
        for (id, body) in &got {
            assert_eq!(body["schema"], "tollgate.event/v1", "{kind}");
            assert_eq!(
                body["id"],
                id.as_str(),
                "{kind}: webhook-id is the event id"
            );
            assert_eq!(body["type"], "TransferCompleted", "{kind}");
            assert_eq!(body["user"], "wendy", "{kind}");
            assert_eq!(body["target"]["direction"], "upload", "{kind}");
            assert!(
                body["origin"]["remote_addr"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("127.0.0.1:")),
                "{kind}: {body}"
            );
            assert_eq!(
                body["audit_hash"].as_str().map(str::len),
                Some(64),
                "{kind}"
            );
        }
        let positions: Vec<u64> = got
            .iter()
            .map(|(_, b)| b["position"].as_u64().unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "{kind}: in log order"
        );
        let (status, attempts) = call(
            &server,
            &client,
            &root,
            reqwest::Method::GET,
            "/api/v1/subscriptions/siem/deliveries",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{kind}");
        let first: Vec<(u64, Value)> = attempts
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["event_id"] == got[0].0.as_str())
            .map(|a| (a["attempt"].as_u64().unwrap(), a["status"].clone()))
            .collect();
        assert_eq!(
            first,
            vec![(3, json!(204)), (2, json!(500)), (1, json!(503))],
            "{kind}: every attempt is logged, newest first"
        );

        // The receiver goes away; events keep happening; the server restarts.
        let addr = receiver.addr;
        receiver.stop().await;
        for n in 0..2 {
            upload(&server, "wendy", &format!("b{n}.txt")).await;
        }
        let (config, dir) = server.stop().await;
        let server = started(dir, config).await;
        upload(&server, "wendy", "c0.txt").await;
        let receiver = Receiver::start(&addr.to_string(), shared.clone()).await;
        let got = wait_for(&shared, 6).await;
        let ids: BTreeSet<&String> = got.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), 6, "{kind}: nothing lost");
        assert_eq!(shared.lock().unwrap().0.forged, 0, "{kind}: all signed");

        // Redelivery of one event, on request.
        let (client, root) = admin(&server).await;
        let (status, report) = call(
            &server,
            &client,
            &root,
            reqwest::Method::POST,
            "/api/v1/subscriptions/siem/redeliveries",
            Some(json!({"event_id": got[0].0})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{kind}: {report}");
        assert_eq!(report, json!({"attempted": 1, "delivered": 1}), "{kind}");
        let copies = shared
            .lock()
            .unwrap()
            .0
            .accepted
            .iter()
            .filter(|(id, _)| *id == got[0].0)
            .count();
        assert_eq!(copies, 2, "{kind}");

        // 410 Gone disables the subscription; enabling it resumes there.
        shared.lock().unwrap().0.gone = true;
        upload(&server, "wendy", "d0.txt").await;
        let mut disabled = Value::Null;
        for _ in 0..400 {
            let (_, sub) = call(
                &server,
                &client,
                &root,
                reqwest::Method::GET,
                "/api/v1/subscriptions/siem",
                None,
            )
            .await;
            if sub["enabled"] == false {
                disabled = sub;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(
            disabled["disabled_reason"]
                .as_str()
                .is_some_and(|r| r.contains("410")),
            "{kind}: {disabled}"
        );
        shared.lock().unwrap().0.gone = false;
        let (status, sub) = call(
            &server,
            &client,
            &root,
            reqwest::Method::PATCH,
            "/api/v1/subscriptions/siem",
            Some(json!({"enabled": true})),
        )
        .await;
        assert_eq!(
            (status, &sub["enabled"]),
            (StatusCode::OK, &json!(true)),
            "{kind}"
        );
        wait_for(&shared, 7).await;
        receiver.stop().await;
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_failure_reaches_an_alert_webhook_in_ocsf() {
    let shared: Shared = Arc::default();
    let receiver = Receiver::start("127.0.0.1:0", shared.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config("sqlite", dir.path()).await;
    config.webhooks.allow_private_targets = true;
    let server = started(dir, config).await;
    let (client, root) = admin(&server).await;
    let (status, created) = call(
        &server,
        &client,
        &root,
        reqwest::Method::POST,
        "/api/v1/subscriptions",
        Some(json!({
            "name": "alerts", "url": format!("http://{}/hook", receiver.addr),
            "event_types": ["AuditVerificationFailed"], "format": "ocsf",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    shared.lock().unwrap().1 = created["secret"].as_str().unwrap().to_string();

    // Someone with database access rewrites a record.
    server.add_user("mallory", &[]).await;
    server.app().catch_up().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&server.config.database.url)
        .await
        .unwrap();
    for statement in [
        "DROP TRIGGER events_no_update",
        "UPDATE events SET aggregate_id = 'forged' WHERE position = 2",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let (status, report) = call(
        &server,
        &client,
        &root,
        reqwest::Method::GET,
        "/api/v1/audit/verify",
        None,
    )
    .await;
    assert_eq!(
        (status, &report["ok"]),
        (StatusCode::OK, &json!(false)),
        "{report}"
    );
    let got = wait_for(&shared, 1).await;
    let alert = &got[0].1;
    assert_eq!(
        alert["unmapped"]["tollgate_type"], "AuditVerificationFailed",
        "{alert}"
    );
    assert_eq!(
        (alert["status"].as_str(), alert["status_id"].as_u64()),
        (Some("Failure"), Some(2))
    );
    assert_eq!(alert["actor"]["user"]["name"], "root");
    assert!(alert["status_detail"].is_null() || alert["status_detail"].is_string());
    assert!(alert["metadata"]["uid"].is_string() && alert["time"].as_i64().unwrap() > 0);
    receiver.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_webhook_targets_are_refused_unless_allowed() {
    let server = TestServer::start("sqlite").await;
    let (client, root) = admin(&server).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
    ] {
        let (status, problem) = call(
            &server,
            &client,
            &root,
            reqwest::Method::POST,
            "/api/v1/subscriptions",
            Some(json!({"name": "x", "url": url})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("non-public"),
            "{url}: {problem}"
        );
    }
    let (status, problem) = call(
        &server,
        &client,
        &root,
        reqwest::Method::POST,
        "/api/v1/subscriptions",
        Some(json!({"name": "x", "url": "gopher://example.org/"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    server.stop().await;
}

fn schema(name: &str) -> Value {
    let path = format!("{}/docs/schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_documented_schemas_name_every_event_type() {
    let mut known: Vec<&str> = tollgate_domain::event_types()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    known.sort_unstable();
    for (name, pointer) in [
        ("event.v1.json", "/properties/type/enum"),
        (
            "event.ocsf.json",
            "/properties/unmapped/properties/tollgate_type/enum",
        ),
    ] {
        let listed: Vec<String> = schema(name)
            .pointer(pointer)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, known, "{name}");
    }
}

/// Waits (bounded) until the receiver accepted the event at `position`.
async fn wait_for_position(shared: &Shared, position: u64, pointer: &str) -> Vec<Value> {
    for _ in 0..600 {
        {
            let guard = shared.lock().unwrap();
            if guard
                .0
                .accepted
                .iter()
                .any(|(_, b)| b.pointer(pointer).and_then(Value::as_u64) >= Some(position))
            {
                return guard.0.accepted.iter().map(|(_, b)| b.clone()).collect();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("position {position} was not delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_renders_to_the_documented_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config("sqlite", dir.path()).await;
    config.webhooks.allow_private_targets = true;
    let server = started(dir, config).await;
    let (client, root) = admin(&server).await;
    let mut receivers = Vec::new();
    for format in ["tollgate", "ocsf"] {
        let shared: Shared = Arc::default();
        let receiver = Receiver::start("127.0.0.1:0", shared.clone()).await;
        let (status, created) = call(
            &server,
            &client,
            &root,
            reqwest::Method::POST,
            "/api/v1/subscriptions",
            Some(json!({
                "name": format, "format": format,
                "url": format!("http://{}/hook", receiver.addr),
            })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        shared.lock().unwrap().1 = created["secret"].as_str().unwrap().to_string();
        receivers.push((format, shared, receiver));
    }

    // A bit of everything: administration, logins good and bad, file
    // operations allowed and denied, transfers both ways.
    server
        .app()
        .create_policy(
            "test",
            "inbox",
            &["/inbox=*".to_string(), "/=list".to_string()],
        )
        .await
        .unwrap();
    server.add_user("olga", &["inbox"]).await;
    let mut conn = connect(server.addr).await;
    assert!(!login_password(&mut conn, "olga", "wrong").await);
    let mut conn = connect(server.addr).await;
    assert!(login_password(&mut conn, "olga", PASSWORD).await);
    let sftp = crate::support::open_sftp(&conn).await;
    sftp.create_dir("inbox").await.unwrap();
    let mut file = sftp.create("inbox/r.csv").await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut file, b"1,2\n")
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::shutdown(&mut file).await.unwrap();
    let mut back = sftp.open("inbox/r.csv").await.unwrap();
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut back, &mut text)
        .await
        .unwrap();
    sftp.rename("inbox/r.csv", "inbox/s.csv").await.unwrap();
    assert!(
        sftp.create("outside.txt").await.is_err(),
        "denied by policy"
    );
    assert!(sftp.create_dir("nope").await.is_err(), "denied by policy");
    sftp.read_dir("inbox").await.unwrap();
    sftp.remove_file("inbox/s.csv").await.unwrap();
    drop(sftp);
    conn.disconnect(russh::Disconnect::ByApplication, "", "")
        .await
        .unwrap();
    server.wait_for_event("olga", "SessionClosed").await;
    server.app().catch_up().await.unwrap();
    let head = server
        .events(tollgate_application::EventFilter::default())
        .await
        .last()
        .unwrap()
        .position;

    for (format, shared, receiver) in receivers {
        let (file, pointer) = match format {
            "tollgate" => ("event.v1.json", "/position"),
            _ => ("event.ocsf.json", "/metadata/sequence"),
        };
        let validator = jsonschema::validator_for(&schema(file)).unwrap();
        let bodies = wait_for_position(&shared, head, pointer).await;
        let mut types = BTreeSet::new();
        for body in &bodies {
            let errors: Vec<String> = validator
                .iter_errors(body)
                .map(|e| format!("{e} at {}", e.instance_path))
                .collect();
            assert!(errors.is_empty(), "{format}: {errors:?} in {body}");
            let kind = body
                .pointer("/type")
                .or_else(|| body.pointer("/unmapped/tollgate_type"))
                .unwrap();
            types.insert(kind.as_str().unwrap().to_string());
        }
        for expected in [
            "PolicyCreated",
            "UserCreated",
            "LoginFailed",
            "LoginSucceeded",
            "FileOperationPerformed",
            "FileOperationDenied",
            "TransferCompleted",
            "TransferDenied",
            "SessionClosed",
        ] {
            assert!(
                types.contains(expected),
                "{format}: no {expected} in {types:?}"
            );
        }
        if format == "ocsf" {
            let upload = bodies
                .iter()
                .find(|b| b["unmapped"]["tollgate_type"] == "TransferCompleted")
                .unwrap();
            assert_eq!(
                (
                    upload["class_uid"].as_u64(),
                    upload["activity_name"].as_str()
                ),
                (Some(1001), Some("Create"))
            );
            assert_eq!(upload["file"]["hashes"][0]["algorithm_id"], 3);
            let login = bodies
                .iter()
                .find(|b| b["unmapped"]["tollgate_type"] == "LoginFailed")
                .unwrap();
            assert_eq!(
                (login["class_uid"].as_u64(), login["status"].as_str()),
                (Some(3002), Some("Failure"))
            );
        }
        assert_eq!(shared.lock().unwrap().0.forged, 0);
        receiver.stop().await;
    }
    server.stop().await;
}
