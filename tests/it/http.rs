//! The REST API over real HTTPS (reqwest, a self-signed certificate):
//! tokens and API keys, roles, admin resources with ETags, audit queries and
//! exports, sessions, metrics, problem documents, and the committed OpenAPI
//! document.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tollgate_audit::merkle;
use tollgate_audit::note::{Checkpoint, NoteVerifier};
use tollgate_domain::admin::Role;
use tollgate_ports::api::Principal;

use crate::support::{
    PASSWORD, TestServer, connect, database_kinds, hashes, login_password, self_signed,
    test_config, unhex,
};

pub(crate) const ROOT: &str = "root";

/// A server speaking HTTPS with a freshly generated self-signed certificate,
/// an administrator `root` (password `PASSWORD`), and a client trusting it.
pub(crate) struct Https {
    pub(crate) server: TestServer,
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    /// The server's certificate, for other clients.
    pub(crate) pem: String,
}

impl Https {
    pub(crate) async fn start(kind: &str) -> Https {
        Https::start_configured(kind, |_| {}).await
    }

    /// Starts with the test configuration changed by `edit`.
    pub(crate) async fn start_configured(
        kind: &str,
        edit: impl FnOnce(&mut tollgate::Config),
    ) -> Https {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = test_config(kind, dir.path()).await;
        edit(&mut config);
        let (cert_path, key_path, pem) = self_signed(dir.path());
        config.http.tls_cert = Some(cert_path);
        config.http.tls_key = Some(key_path);
        config.http.max_body_bytes = 64 * 1024;
        let server = TestServer::start_with(config, dir).await;
        let first = Principal::Admin {
            name: tollgate_application::FIRST_ADMIN.to_string(),
            role: Role::Admin,
        };
        server
            .app()
            .admin_api()
            .create_admin(&first, ROOT, PASSWORD, Role::Admin)
            .await
            .expect("root administrator");
        let root = reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem");
        let client = reqwest::Client::builder()
            .add_root_certificate(root)
            .resolve("localhost", server.http_addr)
            .build()
            .expect("https client");
        let base = format!("https://localhost:{}", server.http_addr.port());
        Https {
            server,
            client,
            base,
            pem,
        }
    }

    pub(crate) async fn token(&self, user: &str, password: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/token", self.base))
            .basic_auth(user, Some(password))
            .send()
            .await
            .expect("token request")
    }

    /// A bearer token for `user`, which must be accepted.
    pub(crate) async fn bearer(&self, user: &str, password: &str) -> String {
        let res = self.token(user, password).await;
        assert_eq!(res.status(), StatusCode::OK, "token for {user}");
        let body: Value = res.json().await.expect("token json");
        assert_eq!(body["token_type"], "Bearer");
        format!("Bearer {}", body["access_token"].as_str().expect("token"))
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        req = if auth.starts_with("tgk_") {
            req.header("X-Api-Key", auth)
        } else if !auth.is_empty() {
            req.header("Authorization", auth)
        } else {
            req
        };
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }
}

fn problem_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or("")
}

#[tokio::test]
async fn administrators_manage_resources_with_versions_and_roles_are_enforced() {
    for kind in database_kinds() {
        let api = Https::start(kind).await;
        let root = api.bearer(ROOT, PASSWORD).await;
        let home = api.server.home("alice").to_string_lossy().into_owned();

        let (status, _, body) = api
            .call(
                Method::POST,
                "/api/v1/policies",
                &root,
                Some(json!({"name": "partners", "rules": [{"path": "/", "permissions": ["list", "download"]}]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, _, body) = api
            .call(
                Method::POST,
                "/api/v1/groups",
                &root,
                Some(json!({"name": "acme", "policies": ["partners"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, headers, body) = api
            .call(
                Method::POST,
                "/api/v1/users",
                &root,
                Some(json!({"username": "alice", "password": PASSWORD, "home": home, "groups": ["acme"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(headers["etag"], "\"1\"");
        assert!(body.get("password").is_none() && body["has_password"] == true);
        let (status, _, body) = api
            .call(
                Method::POST,
                "/api/v1/users",
                &root,
                Some(json!({"username": "alice", "password": "x", "home": home})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(problem_type(&body), "urn:tollgate:problem:conflict");

        // Optimistic concurrency: a stale version is refused, the current one applies.
        let patch = |version: &str| {
            let req = api
                .client
                .patch(format!("{}/api/v1/users/alice", api.base))
                .header("Authorization", &root)
                .header("If-Match", version)
                .json(&json!({"policies": ["partners"]}));
            async move { req.send().await.expect("patch") }
        };
        let res = patch("\"7\"").await;
        assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["current_version"], 1);
        let res = patch("\"1\"").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["etag"], "\"2\"");
        assert_eq!(
            patch("\"1\"").await.status(),
            StatusCode::PRECONDITION_FAILED
        );

        // An auditor reads everything and changes nothing.
        let (status, _, _) = api
            .call(
                Method::POST,
                "/api/v1/admins",
                &root,
                Some(json!({"username": "carol", "password": PASSWORD, "role": "auditor"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let auditor = api.bearer("carol", PASSWORD).await;
        let (status, _, body) = api.call(Method::GET, "/api/v1/users", &auditor, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["items"][0]["username"], "alice");
        let (status, _, _) = api
            .call(Method::GET, "/api/v1/events", &auditor, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        for (method, path, body) in [
            (
                Method::POST,
                "/api/v1/users",
                Some(json!({"username": "eve", "password": "x", "home": home})),
            ),
            (Method::DELETE, "/api/v1/users/alice", None),
            (
                Method::PATCH,
                "/api/v1/admins/carol",
                Some(json!({"role": "admin"})),
            ),
            (
                Method::POST,
                "/api/v1/api-keys",
                Some(json!({"name": "mine"})),
            ),
        ] {
            let (status, _, body) = api.call(method, path, &auditor, body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "auditor {path}: {body}");
            assert_eq!(problem_type(&body), "urn:tollgate:problem:forbidden");
        }

        // A user's token reaches only the user's own resources.
        let alice = api.bearer("alice", PASSWORD).await;
        for path in [
            "/api/v1/users",
            "/api/v1/users/alice",
            "/api/v1/events",
            "/api/v1/transfers",
            "/api/v1/admins",
        ] {
            let (status, _, _) = api.call(Method::GET, path, &alice, None).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "user token on {path}");
        }
        let (status, _, body) = api
            .call(Method::GET, "/api/v1/user/profile", &alice, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["username"], "alice");
        api.server.add_user("bob", &[]).await;
        let bob = api.bearer("bob", PASSWORD).await;
        let (status, _, body) = api
            .call(Method::GET, "/api/v1/user/profile", &bob, None)
            .await;
        assert_eq!(
            (status, body["username"].as_str()),
            (StatusCode::OK, Some("bob"))
        );

        // Disabling a user stops their token at once; a wrong password is refused.
        let (status, _, _) = api
            .call(
                Method::PATCH,
                "/api/v1/users/alice",
                &root,
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, headers, body) = api
            .call(Method::GET, "/api/v1/user/profile", &alice, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(headers.contains_key("www-authenticate"));
        assert_eq!(
            api.token("bob", "wrong").await.status(),
            StatusCode::UNAUTHORIZED
        );

        // API keys: shown once, act with their role, stop when revoked.
        let (status, _, body) = api
            .call(
                Method::POST,
                "/api/v1/api-keys",
                &root,
                Some(json!({"name": "siem", "role": "auditor"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let key = body["key"].as_str().expect("key").to_string();
        let id = body["api_key"]["id"].as_str().expect("id").to_string();
        let (status, _, body) = api.call(Method::GET, "/api/v1/whoami", &key, None).await;
        assert_eq!((status, &body["role"]), (StatusCode::OK, &json!("auditor")));
        let (status, _, _) = api
            .call(Method::DELETE, "/api/v1/users/bob", &key, None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, body) = api.call(Method::GET, "/api/v1/api-keys", &root, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !body.to_string().contains(key.rsplit('_').next().unwrap()),
            "the secret is never listed"
        );
        let (status, _, _) = api
            .call(
                Method::DELETE,
                &format!("/api/v1/api-keys/{id}"),
                &root,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, _) = api.call(Method::GET, "/api/v1/whoami", &key, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // A deleted administrator's token stops working.
        let (status, _, _) = api
            .call(Method::DELETE, "/api/v1/admins/carol", &root, None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, _) = api.call(Method::GET, "/api/v1/users", &auditor, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Every refused credential was recorded.
        let failures = api.server.events_of("bob", "LoginFailed").await;
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            !api.server
                .events_of("alice", "LoginFailed")
                .await
                .is_empty()
        );
        api.server.stop().await;
    }
}

#[tokio::test]
async fn bad_requests_get_precise_problems_and_never_a_server_error() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    let send = |body: String, content_type: &'static str| {
        let req = api
            .client
            .post(format!("{}/api/v1/users", api.base))
            .header("Authorization", &root)
            .header("content-type", content_type)
            .body(body);
        async move {
            let res = req.send().await.expect("request");
            let status = res.status();
            let ct = res.headers()["content-type"].to_str().unwrap().to_string();
            let body: Value = res.json().await.expect("problem json");
            (status, ct, body)
        }
    };
    let cases = [
        ("{\"username\": ", StatusCode::BAD_REQUEST, "bad-request"),
        (
            "{\"username\": \"x\", \"home\": \"/h\", \"shell\": 1}",
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "{\"username\": [5], \"home\": \"/h\"}",
            StatusCode::BAD_REQUEST,
            "Expected input type",
        ),
        (
            "{\"username\": \"bad name\", \"password\": \"long enough\", \"home\": \"/tmp/x\"}",
            StatusCode::BAD_REQUEST,
            "invalid user name",
        ),
        (
            "{\"username\": \"nocred\", \"home\": \"/tmp/x\"}",
            StatusCode::BAD_REQUEST,
            "password or a public key",
        ),
        (
            "{\"username\": \"k\", \"public_keys\": [\"ssh-ed25519 AAAA\"], \"home\": \"/tmp/x\"}",
            StatusCode::BAD_REQUEST,
            "public key",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, content_type, problem) = send(body.to_string(), "application/json").await;
        assert_eq!(got, status, "{body}: {problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["status"], status.as_u16());
        assert!(
            problem.to_string().contains(needle),
            "{body}: {problem} lacks {needle:?}"
        );
    }
    let huge = format!("{{\"username\": \"{}\"}}", "a".repeat(100 * 1024));
    let (status, _, problem) = send(huge, "application/json").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        problem_type(&problem),
        "urn:tollgate:problem:payload-too-large"
    );
    let (status, _, problem) = send("a=b".to_string(), "text/plain").await;
    assert!(status.is_client_error(), "{problem}");
    for (method, path) in [
        (Method::GET, "/api/v1/users/nobody"),
        (Method::GET, "/api/v1/nothing-here"),
        (Method::GET, "/api/v1/events?limit=0"),
        (Method::GET, "/api/v1/events?since=yesterday"),
        (Method::GET, "/api/v1/events?outcome=maybe"),
        (Method::GET, "/api/v1/events/export?format=xml"),
        (Method::PATCH, "/api/v1/users/nobody"),
        (Method::PUT, "/api/v1/users"),
    ] {
        let (status, headers, body) = api.call(method.clone(), path, &root, Some(json!({}))).await;
        assert!(status.is_client_error(), "{method} {path}: {status} {body}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{path}"
        );
        assert!(
            problem_type(&body).starts_with("urn:tollgate:problem:"),
            "{path}: {body}"
        );
    }
    let (status, _, body) = api
        .call(
            Method::PATCH,
            "/api/v1/policies/none",
            &root,
            Some(json!({"rules": [{"path": "/../x", "permissions": ["list"]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = api
        .call(Method::GET, "/api/v1/users", "Bearer not.a.token", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = api.call(Method::GET, "/api/v1/users", "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let failed = api
        .server
        .events(tollgate_application::EventFilter {
            event_type: Some("LoginFailed".to_string()),
            ..Default::default()
        })
        .await;
    assert!(
        failed
            .iter()
            .any(|e| e.detail.as_deref() == Some("invalid token")),
        "{failed:?}"
    );
    api.server.stop().await;
}

#[tokio::test]
async fn the_audit_trail_is_queried_paged_exported_verified_and_each_read_is_recorded() {
    for kind in database_kinds() {
        let api = Https::start(kind).await;
        let root = api.bearer(ROOT, PASSWORD).await;
        api.server.add_user("alice", &[]).await;
        for _ in 0..5 {
            assert_eq!(
                api.token("alice", "wrong").await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        let query = "/api/v1/events?action=LoginFailed&outcome=failure&user=alice&protocol=http&remote_addr=127.0.0.1";
        let (status, _, body) = api
            .call(Method::GET, &format!("{query}&limit=2"), &root, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut seen: Vec<u64> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect();
        let mut cursor = body["next_cursor"].as_u64();
        while let Some(after) = cursor {
            let (_, _, page) = api
                .call(
                    Method::GET,
                    &format!("{query}&limit=2&cursor={after}"),
                    &root,
                    None,
                )
                .await;
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["position"].as_u64().unwrap()),
            );
            cursor = page["next_cursor"].as_u64();
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        let (_, _, page) = api
            .call(Method::GET, &format!("{query}&limit=1"), &root, None)
            .await;
        let first = &page["items"][0];
        for field in [
            "user",
            "event_type",
            "time",
            "outcome",
            "remote_addr",
            "resource",
        ] {
            assert!(!first[field].is_null(), "PCI DSS field {field} in {first}");
        }
        assert_eq!(first["detail"], "wrong password");
        let (_, _, none) = api
            .call(
                Method::GET,
                "/api/v1/events?user=alice&until=2000-01-01T00:00:00Z",
                &root,
                None,
            )
            .await;
        assert_eq!(none["items"], json!([]));
        let (_, _, creds) = api
            .call(
                Method::GET,
                "/api/v1/events?action=AdminCreated",
                &root,
                None,
            )
            .await;
        assert!(
            !creds.to_string().contains("argon2"),
            "hashes are never shown: {creds}"
        );

        let export = |format: &'static str| {
            let req = api
                .client
                .get(format!(
                    "{}/api/v1/events/export?format={format}&action=LoginFailed",
                    api.base
                ))
                .header("Authorization", &root);
            async move {
                let res = req.send().await.expect("export");
                assert_eq!(res.status(), StatusCode::OK);
                let ct = res.headers()["content-type"].to_str().unwrap().to_string();
                (ct, res.text().await.expect("export body"))
            }
        };
        let (ct, csv) = export("csv").await;
        assert!(ct.starts_with("text/csv"), "{ct}");
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("position,event_id,time,actor,user,event_type,outcome"));
        assert_eq!(lines.len(), 6, "{csv}");
        assert!(
            lines[1..]
                .iter()
                .all(|l| l.contains(",LoginFailed,failure,http,"))
        );
        let (ct, ndjson) = export("ndjson").await;
        assert!(ct.starts_with("application/x-ndjson"), "{ct}");
        let records: Vec<Value> = ndjson
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 5);

        let (status, _, report) = api
            .call(Method::GET, "/api/v1/audit/verify", &root, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(report["ok"], true, "{report}");
        assert!(report["finding"].is_null());

        // Each query page, export and verification is itself an event.
        let reads = api
            .server
            .events(tollgate_application::EventFilter {
                event_type: Some("AuditLogRead".to_string()),
                ..Default::default()
            })
            .await;
        assert!(reads.len() >= 7, "{}", reads.len());
        assert!(reads.iter().all(|r| r.actor == ROOT));
        assert!(reads.iter().any(|r| r.payload.to_string().contains("csv")));
        let verified = api
            .server
            .events(tollgate_application::EventFilter {
                event_type: Some("AuditLogVerified".to_string()),
                ..Default::default()
            })
            .await;
        assert_eq!(verified.len(), 1);
        api.server.stop().await;
    }
}

#[tokio::test]
async fn signed_checkpoints_and_proofs_are_served_to_auditors() {
    for kind in database_kinds() {
        let api = Https::start(kind).await;
        let root = api.bearer(ROOT, PASSWORD).await;
        api.server.add_user("alice", &[]).await;
        let (status, _, first) = api
            .call(Method::GET, "/api/v1/audit/checkpoint", &root, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{first}");
        let verifier = NoteVerifier::from_key(first["verifier_key"].as_str().unwrap()).unwrap();
        let signed = Checkpoint::open(first["note"].as_str().unwrap(), &verifier).unwrap();
        assert_eq!(signed.size, first["size"].as_u64().unwrap());
        assert_eq!(hex::encode(signed.root), first["root"].as_str().unwrap());

        // The user's creation is in it, provably.
        let (_, _, created) = api
            .call(
                Method::GET,
                "/api/v1/events?action=UserCreated&user=alice",
                &root,
                None,
            )
            .await;
        let event_id = created["items"][0]["event_id"]
            .as_str()
            .unwrap()
            .to_string();
        let (status, _, proof) = api
            .call(
                Method::GET,
                &format!("/api/v1/audit/proofs/inclusion?event_id={event_id}"),
                &root,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{proof}");
        let path = hashes(&proof["proof"]);
        let position = proof["position"].as_u64().unwrap();
        let head = Checkpoint::open(proof["checkpoint"].as_str().unwrap(), &verifier).unwrap();
        merkle::verify_inclusion(
            position - 1,
            head.size,
            &unhex(proof["leaf_hash"].as_str().unwrap()),
            &path,
            &head.root,
        )
        .unwrap();

        // The log grew; the two signed heads are consistent.
        api.server.add_user("bob", &[]).await;
        let (_, _, second) = api
            .call(Method::GET, "/api/v1/audit/checkpoint", &root, None)
            .await;
        let (a, b) = (
            first["size"].as_u64().unwrap(),
            second["size"].as_u64().unwrap(),
        );
        assert!(b > a);
        let (status, _, consistency) = api
            .call(
                Method::GET,
                &format!("/api/v1/audit/proofs/consistency?first={a}&second={b}"),
                &root,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{consistency}");
        let old =
            Checkpoint::open(consistency["first_checkpoint"].as_str().unwrap(), &verifier).unwrap();
        let new = Checkpoint::open(
            consistency["second_checkpoint"].as_str().unwrap(),
            &verifier,
        )
        .unwrap();
        let path = hashes(&consistency["proof"]);
        merkle::verify_consistency(a, b, &old.root, &new.root, &path).unwrap();

        // Unknown events and sizes are problems, not errors; users may not ask.
        let (status, _, body) = api
            .call(
                Method::GET,
                "/api/v1/audit/proofs/inclusion?event_id=0196a000-0000-7000-8000-000000000000",
                &root,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _, body) = api
            .call(
                Method::GET,
                &format!("/api/v1/audit/proofs/consistency?first={b}&second={a}"),
                &root,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let alice = api.bearer("alice", PASSWORD).await;
        let (status, _, _) = api
            .call(Method::GET, "/api/v1/audit/checkpoint", &alice, None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let (_, _, report) = api
            .call(Method::GET, "/api/v1/audit/verify", &root, None)
            .await;
        assert_eq!(report["ok"], true, "{report}");
        assert!(report["checkpoints"].as_u64().unwrap() >= 2, "{report}");
        api.server.stop().await;
    }
}

#[tokio::test]
async fn live_sessions_are_listed_and_one_can_be_disconnected() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    api.server.add_user("alice", &[]).await;
    let mut conn = connect(api.server.addr).await;
    assert!(login_password(&mut conn, "alice", PASSWORD).await);
    let channel = conn.channel_open_session().await.expect("channel");
    let (status, _, sessions) = api.call(Method::GET, "/api/v1/sessions", &root, None).await;
    assert_eq!(status, StatusCode::OK);
    let mine = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["username"] == "alice")
        .expect("alice's session is listed")
        .clone();
    assert_eq!(mine["protocol"], "sftp");
    let id = mine["id"].as_str().unwrap();
    let (status, _, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            &root,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The server ends the connection: the channel sees its end.
    let mut channel = channel;
    while channel.wait().await.is_some() {}
    api.server.wait_for_event("alice", "SessionClosed").await;
    assert_eq!(
        api.server
            .events_of("alice", "SessionDisconnectRequested")
            .await
            .len(),
        1
    );
    let (status, _, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            &root,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _, _) = api.call(Method::GET, "/healthz", "", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = api.call(Method::GET, "/readyz", "", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        api.token("alice", "wrong").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let metrics = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "tollgate_auth_failures_total{protocol=\"http\"} 1",
        "tollgate_connections_total{protocol=\"sftp\"} 1",
        "tollgate_event_log_lag{subscriber=\"audit-sealer\"}",
        "# TYPE tollgate_events_total counter",
        "# TYPE tollgate_event_commit_wait_seconds histogram",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    check_commit_waits(&metrics);
    let (status, _, _) = api.call(Method::GET, "/api/docs/", "", None).await;
    assert_eq!(status, StatusCode::OK);
    api.server.stop().await;
}

/// The commit wait histogram as Prometheus reads it: cumulative buckets
/// with rising bounds, the last (`+Inf`) equal to the count, a count of
/// at least one commit and at most one per committed event, and a sum of
/// waits above zero.
fn check_commit_waits(metrics: &str) {
    let value = |line: &str| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
    let buckets: Vec<(String, f64)> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("tollgate_event_commit_wait_seconds_bucket{le=\""))
        .map(|rest| (rest.split('"').next().unwrap().to_string(), value(rest)))
        .collect();
    assert!(buckets.len() > 1, "no buckets in\n{metrics}");
    for pair in buckets.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1,
            "buckets not cumulative: {buckets:?}"
        );
        if pair[1].0 != "+Inf" {
            let bound = |le: &str| le.parse::<f64>().unwrap();
            assert!(
                bound(&pair[0].0) < bound(&pair[1].0),
                "bounds not rising: {buckets:?}"
            );
        }
    }
    let (last, infinite) = buckets.last().unwrap();
    assert_eq!(last, "+Inf");
    let series = |name: &str| {
        metrics
            .lines()
            .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
            .map(value)
            .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
    };
    let count = series("tollgate_event_commit_wait_seconds_count");
    assert_eq!(*infinite, count);
    let events: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("tollgate_events_total{"))
        .map(value)
        .sum();
    assert!(
        count >= 1.0 && count <= events,
        "{count} commits for {events} events"
    );
    assert!(series("tollgate_event_commit_wait_seconds_sum") > 0.0);
    assert!(!metrics.contains("# TYPE tollgate_event_commit_wait_seconds_"));
}

/// The committed document must be what the code declares. Refresh it with
/// `cargo test --test it openapi_document` (outside CI it rewrites the file).
#[tokio::test]
async fn openapi_document_matches_the_code() {
    let server = TestServer::start("sqlite").await;
    let generated = tollgate_http::openapi_json(server.app().admin_api(), server.app().gateway());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        if std::env::var_os("CI").is_none() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
        }
        panic!(
            "openapi/openapi.json differs from the code; run `cargo test --test it openapi_document` and commit the file"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn mount_secrets_are_sealed_redacted_and_kept_when_sent_back_redacted() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    let secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
    let (status, headers, body) = api
        .call(
            Method::POST,
            "/api/v1/mounts",
            &root,
            Some(json!({"name": "partner-s3", "description": "inbound",
                "storage": {"kind": "s3", "bucket": "inbound", "region": "eu-west-1",
                            "access_key_id": "AKIAEXAMPLE", "secret_access_key": secret}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(body["storage"]["kind"], "s3");
    assert_eq!(body["storage"]["secret_access_key"], "[redacted]");
    let (_, _, listed) = api.call(Method::GET, "/api/v1/mounts", &root, None).await;
    assert_eq!(
        listed["items"][0]["storage"]["secret_access_key"],
        "[redacted]"
    );

    // Sending the redacted value back keeps the sealed secret.
    let (status, headers, body) = api
        .call(
            Method::PATCH,
            "/api/v1/mounts/partner-s3",
            &root,
            Some(
                json!({"storage": {"kind": "s3", "bucket": "inbound-2", "region": "eu-west-1",
                "access_key_id": "AKIAEXAMPLE", "secret_access_key": "[redacted]"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["etag"], "\"2\"");
    let sealed: Vec<String> = api
        .server
        .events(tollgate_application::EventFilter::default())
        .await
        .into_iter()
        .filter(|e| e.event_type.starts_with("Mount"))
        .filter_map(|e| {
            let body = e.payload.as_object()?.values().next()?.clone();
            Some(body["storage"]["secret_access_key"].as_str()?.to_string())
        })
        .collect();
    assert_eq!(sealed.len(), 2, "{sealed:?}");
    assert_eq!(sealed[0], sealed[1], "the stored secret was kept");
    assert!(sealed[0].starts_with("v1:") && !sealed[0].contains(secret));

    // A redacted value where nothing is stored is refused.
    let (status, _, body) = api
        .call(
            Method::PATCH,
            "/api/v1/mounts/partner-s3",
            &root,
            Some(json!({"storage": {"kind": "azure", "account": "a", "container": "c", "access_key": "[redacted]"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = api
        .call(
            Method::POST,
            "/api/v1/mounts",
            &root,
            Some(json!({"name": "bad", "storage": {"kind": "local", "root": "relative"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = api
        .call(
            Method::POST,
            "/api/v1/mounts",
            &root,
            Some(json!({"name": "bad", "storage": {"kind": "floppy"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The clear secret is nowhere in the data directory.
    let (_, dir) = api.server.stop().await;
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the clear secret",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn users_move_files_over_the_http_file_api_with_the_same_rules_and_events() {
    for kind in database_kinds() {
        let api = Https::start(kind).await;
        let root = api.bearer(ROOT, PASSWORD).await;
        let (status, _, _) = api
            .call(
                Method::POST,
                "/api/v1/policies",
                &root,
                Some(json!({"name": "inbox", "rules": [
                    {"path": "/", "permissions": ["*"]},
                    {"path": "/ro", "permissions": ["list", "download"]}]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let home = api.server.add_user("alice", &["inbox"]).await;
        std::fs::create_dir_all(home.join("ro")).unwrap();
        std::fs::write(home.join("ro/keep.txt"), b"read only").unwrap();
        api.server.add_user("bob", &["inbox"]).await;
        let alice = api.bearer("alice", PASSWORD).await;
        let url = |rest: &str| format!("{}/api/v1/user/files{rest}", api.base);

        // A streamed upload of a few MiB, then downloads (whole and ranged).
        let data: Vec<u8> = (0..3 * 1024 * 1024 + 17)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            data.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
        let res = api
            .client
            .put(url("/content?path=/big.bin"))
            .header("Authorization", &alice)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["size"], data.len() as u64);
        assert_eq!(body["sha256"], crate::support::sha256_hex(&data));
        assert_eq!(std::fs::read(home.join("big.bin")).unwrap(), data);
        let res = api
            .client
            .get(url("/content?path=/big.bin"))
            .header("Authorization", &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["accept-ranges"], "bytes");
        assert_eq!(res.bytes().await.unwrap().as_ref(), &data[..]);
        let res = api
            .client
            .get(url("/content?path=/big.bin"))
            .header("Authorization", &alice)
            .header("Range", "bytes=100-199")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            res.headers()["content-range"],
            format!("bytes 100-199/{}", data.len()).as_str()
        );
        assert_eq!(res.bytes().await.unwrap().as_ref(), &data[100..200]);
        let res = api
            .client
            .get(url("/content?path=/big.bin"))
            .header("Authorization", &alice)
            .header("Range", format!("bytes={}-", data.len() + 5))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);

        // Resume: write the rest of a file from an offset.
        let (head, tail) = data.split_at(1000);
        for (offset, part) in [(None, head), (Some(1000), tail)] {
            let query = match offset {
                Some(o) => format!("/content?path=/resumed.bin&offset={o}"),
                None => "/content?path=/resumed.bin".to_string(),
            };
            let res = api
                .client
                .put(url(&query))
                .header("Authorization", &alice)
                .body(part.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::CREATED);
        }
        assert_eq!(std::fs::read(home.join("resumed.bin")).unwrap(), data);
        let res = api
            .client
            .put(url("/content?path=/resumed.bin&offset=99999999999"))
            .header("Authorization", &alice)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::BAD_REQUEST,
            "no resume past the end"
        );
        assert_eq!(std::fs::read(home.join("resumed.bin")).unwrap(), data);

        // mkdir, rename, list, checksum, delete.
        let post = |rest: String, body: Option<Value>| {
            let mut req = api.client.post(url(&rest)).header("Authorization", &alice);
            if let Some(body) = body {
                req = req.json(&body);
            }
            async move { req.send().await.unwrap().status() }
        };
        assert_eq!(
            post("/dirs?path=/in".to_string(), None).await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            post("/dirs?path=/in".to_string(), None).await,
            StatusCode::CONFLICT
        );
        assert_eq!(
            post(
                "/rename".to_string(),
                Some(json!({"from": "/big.bin", "to": "/in/big.bin"}))
            )
            .await,
            StatusCode::NO_CONTENT
        );
        let (status, _, listing) = api
            .call(Method::GET, "/api/v1/user/files?path=/in", &alice, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listing[0]["name"], "big.bin");
        assert_eq!(listing[0]["kind"], "file");
        let (status, _, sum) = api
            .call(
                Method::GET,
                "/api/v1/user/files/checksum?path=/in/big.bin",
                &alice,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sum["sha256"], crate::support::sha256_hex(&data));
        let (status, _, _) = api
            .call(
                Method::DELETE,
                "/api/v1/user/files?path=/in/big.bin",
                &alice,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, _) = api
            .call(Method::DELETE, "/api/v1/user/files?path=/in", &alice, None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(!home.join("in").exists());

        // Denied by policy, outside the namespace, another user's token, an admin token.
        let res = api
            .client
            .put(url("/content?path=/ro/new.txt"))
            .header("Authorization", &alice)
            .body("no")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(!home.join("ro/new.txt").exists());
        for path in ["/../bob/x", "/a%00b"] {
            let (status, _, body) = api
                .call(
                    Method::GET,
                    &format!("/api/v1/user/files/content?path={path}"),
                    &alice,
                    None,
                )
                .await;
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::FORBIDDEN,
                "{path}: {status} {body}"
            );
        }
        let (status, _, _) = api
            .call(Method::GET, "/api/v1/user/files", &root, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let bob = api.bearer("bob", PASSWORD).await;
        let (status, _, _) = api
            .call(
                Method::GET,
                "/api/v1/user/files/content?path=/resumed.bin",
                &bob,
                None,
            )
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "bob sees only his own namespace"
        );

        // An upload that stops mid-way leaves nothing under the name.
        let broken: Vec<Result<Vec<u8>, std::io::Error>> = vec![
            Ok(vec![1u8; 64 * 1024]),
            Err(std::io::Error::other("the client gave up")),
        ];
        let res = api
            .client
            .put(url("/content?path=/partial.bin"))
            .header("Authorization", &alice)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(broken)))
            .send()
            .await;
        assert!(res.is_err() || !res.unwrap().status().is_success());
        api.server.wait_for_event("alice", "TransferAborted").await;
        assert!(!home.join("partial.bin").exists());

        // The same events as SFTP, with the protocol http.
        let completed = api.server.events_of("alice", "TransferCompleted").await;
        assert!(completed.len() >= 4, "{completed:?}");
        assert!(
            completed
                .iter()
                .all(|e| e.protocol.as_deref() == Some("http"))
        );
        assert!(
            completed
                .iter()
                .any(|e| e.sha256.as_deref() == Some(&crate::support::sha256_hex(&data)[..]))
        );
        let denied = api.server.events_of("alice", "TransferDenied").await;
        assert_eq!(denied.len(), 1, "{denied:?}");
        for op in ["mkdir", "rename", "remove", "rmdir"] {
            assert!(
                api.server
                    .events_of("alice", "FileOperationPerformed")
                    .await
                    .iter()
                    .any(|e| e.operation.as_deref() == Some(op)),
                "{op} recorded"
            );
        }
        api.server.stop().await;
    }
}

#[tokio::test]
async fn webdav_clients_get_the_same_rules_and_events() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    let (status, _, _) = api
        .call(
            Method::POST,
            "/api/v1/policies",
            &root,
            Some(json!({"name": "dav", "rules": [
                {"path": "/", "permissions": ["*"]},
                {"path": "/ro", "permissions": ["list", "download"]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let home = api.server.add_user("alice", &["dav"]).await;
    std::fs::create_dir_all(home.join("ro")).unwrap();
    let dav = |method: &str, path: &str| {
        api.client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/dav{path}", api.base),
            )
            .basic_auth("alice", Some(PASSWORD))
    };
    let status = |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status() };

    assert_eq!(
        status(dav("PUT", "/a.txt").body("hello dav")).await,
        StatusCode::CREATED
    );
    let res = dav("GET", "/a.txt").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "hello dav");
    assert_eq!(status(dav("MKCOL", "/d/")).await, StatusCode::CREATED);
    assert_eq!(
        status(dav("COPY", "/a.txt").header("Destination", format!("{}/dav/d/b.txt", api.base)))
            .await,
        StatusCode::CREATED
    );
    assert_eq!(
        status(dav("MOVE", "/a.txt").header("Destination", format!("{}/dav/d/c.txt", api.base)))
            .await,
        StatusCode::CREATED
    );
    let res = dav("PROPFIND", "/d/")
        .header("Depth", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::MULTI_STATUS);
    let listing = res.text().await.unwrap();
    assert!(
        listing.contains("b.txt") && listing.contains("c.txt"),
        "{listing}"
    );
    assert_eq!(std::fs::read(home.join("d/b.txt")).unwrap(), b"hello dav");
    assert!(!home.join("a.txt").exists());
    assert_eq!(
        status(dav("DELETE", "/d/c.txt")).await,
        StatusCode::NO_CONTENT
    );

    // Refusals in WebDAV's terms; nothing lands under a final name.
    assert_eq!(
        status(dav("PUT", "/ro/x.txt").body("no")).await,
        StatusCode::FORBIDDEN
    );
    assert!(!home.join("ro/x.txt").exists());
    let res = dav("PROPFIND", "/d/")
        .header("Depth", "1")
        .body("<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:prop>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let unauthenticated = api
        .client
        .get(format!("{}/dav/d/b.txt", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert!(
        unauthenticated.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let wrong = api
        .client
        .get(format!("{}/dav/d/b.txt", api.base))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let escape = dav("GET", "/%2e%2e/%2e%2e/etc/passwd")
        .send()
        .await
        .unwrap();
    assert!(escape.status().is_client_error(), "{}", escape.status());

    let completed = api
        .server
        .wait_for_events("alice", "TransferCompleted", 3)
        .await;
    assert!(
        completed
            .iter()
            .all(|e| e.protocol.as_deref() == Some("webdav")),
        "{completed:?}"
    );
    assert_eq!(
        api.server.events_of("alice", "TransferDenied").await.len(),
        1
    );
    let failed = api.server.wait_for_event("alice", "LoginFailed").await;
    assert_eq!(failed[0].protocol.as_deref(), Some("webdav"));
    api.server.stop().await;
}

/// The raw bytes of the SQLite database (and its write-ahead log).
fn sqlite_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in walk(dir) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".db") || name.contains("sqlite") {
            bytes.extend(std::fs::read(&entry).unwrap());
        }
    }
    bytes
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_reads_as_erased_while_every_proof_still_verifies() {
    for kind in database_kinds() {
        let api = Https::start(kind).await;
        let root = api.bearer(ROOT, PASSWORD).await;
        let policy = json!({"name": "all", "rules": [{"path": "/", "permissions": ["*"]}]});
        let (status, _, body) = api
            .call(Method::POST, "/api/v1/policies", &root, Some(policy))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{kind}: {body}");
        let home = api.server.home("judy");
        let (status, _, body) = api
            .call(
                Method::POST,
                "/api/v1/users",
                &root,
                Some(json!({
                    "username": "judy", "password": PASSWORD, "policies": ["all"],
                    "home": home.to_string_lossy(),
                    "full_name": "Judith Q. Partner", "email": "judy@partner.example",
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{kind}: {body}");
        assert_eq!(body["full_name"], "Judith Q. Partner", "{kind}");
        api.server.add_user("kim", &["all"]).await;
        // Both log in over SFTP and upload a file.
        for name in ["judy", "kim"] {
            crate::support::upload_to(api.server.addr, name, "report.csv", b"a,b\n").await;
            api.server.wait_for_event(name, "TransferCompleted").await;
        }
        let events_of = |user: &'static str| {
            let api = &api;
            let root = root.clone();
            async move {
                let (status, _, body) = api
                    .call(
                        Method::GET,
                        &format!("/api/v1/events?user={user}&limit=1000"),
                        &root,
                        None,
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                body["items"].as_array().unwrap().clone()
            }
        };
        let addresses = |events: &[Value]| -> Vec<String> {
            events
                .iter()
                .filter_map(|e| e["remote_addr"].as_str().map(str::to_string))
                .collect()
        };
        let before = events_of("judy").await;
        let seen = addresses(&before);
        assert!(
            seen.len() >= 3 && seen.iter().all(|a| a.starts_with("127.0.0.1:")),
            "{kind}: the query shows addresses in clear: {seen:?}"
        );
        let created = before
            .iter()
            .find(|e| e["event_type"] == "UserCreated")
            .unwrap()
            .clone();
        assert_eq!(
            created["payload"]["UserCreated"]["profile"]["email"], "judy@partner.example",
            "{kind}"
        );
        if kind == "sqlite" {
            // What the database holds is sealed: not one clear value.
            let bytes = sqlite_bytes(api.server.dir.path());
            for clear in ["judy@partner.example", "Judith Q. Partner", "\"127.0.0.1:"] {
                assert!(!contains(&bytes, clear), "{clear} is stored in clear");
            }
        }

        // A user without the writer role cannot erase; an administrator can.
        let (status, _, body) = api
            .call(Method::POST, "/api/v1/users/judy/erasure", "", None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{kind}: {body}");
        let (status, _, body) = api
            .call(Method::POST, "/api/v1/users/judy/erasure", &root, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{kind}: {body}");
        let destroyed = body["destroyed_keys"].as_array().unwrap();
        assert!(
            destroyed.len() >= 2,
            "{kind}: profile and session keys: {body}"
        );
        let (status, _, body) = api
            .call(Method::POST, "/api/v1/users/judy/erasure", &root, None)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{kind}: erased once: {body}");
        let (status, _, _) = api
            .call(Method::GET, "/api/v1/users/judy", &root, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{kind}");

        let after = events_of("judy").await;
        assert!(after.len() > before.len(), "{kind}");
        let seen = addresses(&after);
        assert!(
            seen.iter().all(|a| a == tollgate_application::ERASED),
            "{kind}: {seen:?}"
        );
        let created = after
            .iter()
            .find(|e| e["event_type"] == "UserCreated")
            .unwrap();
        assert_eq!(
            created["payload"]["UserCreated"]["profile"],
            json!({"full_name": "[erased]", "email": "[erased]"}),
            "{kind}"
        );
        let erased = after
            .iter()
            .find(|e| e["event_type"] == "UserErased")
            .unwrap();
        assert_eq!(erased["actor"], ROOT, "{kind}");
        // Another user's personal data is untouched.
        let kims = addresses(&events_of("kim").await);
        assert!(
            !kims.is_empty() && kims.iter().all(|a| a.starts_with("127.0.0.1:")),
            "{kind}: {kims:?}"
        );

        // The trail still verifies, and the erased records are still in it.
        let (status, _, report) = api
            .call(Method::GET, "/api/v1/audit/verify", &root, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{kind}: {report}");
        assert_eq!(report["ok"], true, "{kind}: {report}");
        let (status, _, _) = api
            .call(Method::GET, "/api/v1/audit/checkpoint", &root, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{kind}");
        let (status, _, proof) = api
            .call(
                Method::GET,
                &format!(
                    "/api/v1/audit/proofs/inclusion?event_id={}",
                    created["event_id"].as_str().unwrap()
                ),
                &root,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{kind}: {proof}");
        crate::support::verify_inclusion_json(&proof, proof["verifier_key"].as_str().unwrap());

        // The name may be taken again: a new person, readable again.
        let (status, _, body) = api
            .call(
                Method::POST,
                "/api/v1/users",
                &root,
                Some(json!({
                    "username": "judy", "password": PASSWORD,
                    "home": home.to_string_lossy(), "email": "new@partner.example",
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{kind}: {body}");
        assert_eq!(body["email"], "new@partner.example", "{kind}");
        assert!(body.get("full_name").is_none(), "{kind}: {body}");
    }
}
