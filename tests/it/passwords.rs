//! Passwords through the admin API and a real SFTP client: hashes imported
//! from other systems log in and are replaced by Argon2id at the first
//! login; new passwords meet the configured policy.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::http::{Https, ROOT};
use crate::support::{PASSWORD, connect, database_kinds, login_password};

/// How many times `user`'s password hash was replaced.
async fn rehashes(api: &Https, user: &str) -> usize {
    api.server
        .events_of(user, "UserPasswordChanged")
        .await
        .len()
}

async fn logs_in(api: &Https, user: &str, password: &str) -> bool {
    let mut conn = connect(api.server.addr).await;
    login_password(&mut conn, user, password).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_hashes_log_in_once_and_are_replaced_by_argon2id() {
    for kind in database_kinds() {
        let api = Https::start(kind).await;
        let root = api.bearer(ROOT, PASSWORD).await;
        let homes = tempfile::tempdir().unwrap();
        let bcrypt = bcrypt::hash("bcrypt pass", 4).unwrap();
        let imports = [
            ("from-bcrypt", "bcrypt pass", bcrypt.as_str()),
            // The SHA-crypt specification's vector.
            (
                "from-sha512",
                "Hello world!",
                "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            ),
            // SFTPGo's documented PBKDF2 example.
            (
                "from-pbkdf2",
                "password",
                "$pbkdf2-sha256$150000$E86a9YMX3zC7$R5J62hsSq+pYw00hLLPKBbcGXmq7fj5+/M0IFoYtZbo=",
            ),
        ];
        for (user, password, hash) in imports {
            let home = homes.path().join(user);
            let (status, _, body) = api
                .call(
                    Method::POST,
                    "/api/v1/users",
                    &root,
                    Some(json!({"username": user, "password_hash": hash, "home": home})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{user}: {body}");
            assert_eq!(body["has_password"], true);
            assert!(!body.to_string().contains(hash), "the hash is never shown");

            assert!(!logs_in(&api, user, "not it").await, "{user}: wrong");
            assert_eq!(rehashes(&api, user).await, 0, "no rehash on a failure");
            assert!(logs_in(&api, user, password).await, "{user}: imported");
            assert_eq!(rehashes(&api, user).await, 1, "{user}: replaced at login");
            // The new hash verifies and is not replaced again: it is Argon2id.
            assert!(logs_in(&api, user, password).await, "{user}: again");
            assert_eq!(rehashes(&api, user).await, 1, "{user}: kept");
            assert!(
                !logs_in(&api, user, "not it").await,
                "{user}: still refused"
            );
        }
        let changes = api
            .server
            .events_of("from-pbkdf2", "UserPasswordChanged")
            .await;
        assert_eq!(changes[0].actor, "from-pbkdf2", "by the user, at login");
        assert!(
            !changes[0].payload.to_string().contains("pbkdf2"),
            "no hash is shown: {}",
            changes[0].payload
        );

        // Unknown schemes and ambiguous requests are refused.
        for body in [
            json!({"username": "bad", "password_hash": "plain text", "home": "/tmp/x"}),
            json!({"username": "bad", "password_hash": "$1$md5$abcdefghijklmnopqrstuv", "home": "/tmp/x"}),
            json!({"username": "bad", "password": PASSWORD, "password_hash": bcrypt, "home": "/tmp/x"}),
        ] {
            let (status, _, answer) = api
                .call(Method::POST, "/api/v1/users", &root, Some(body.clone()))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        }
        api.server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_passwords_meet_the_policy() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    let homes = tempfile::tempdir().unwrap();
    let (status, _, body) = api
        .call(
            Method::POST,
            "/api/v1/users",
            &root,
            Some(
                json!({"username": "dave", "password": "short", "home": homes.path().join("dave")}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("at least 8 characters"),
        "{body}"
    );
    api.server.add_user("dave", &[]).await;
    let (status, _, body) = api
        .call(
            Method::PATCH,
            "/api/v1/users/dave",
            &root,
            Some(json!({"password": "abc"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        logs_in(&api, "dave", PASSWORD).await,
        "the old password stays"
    );
    api.server.stop().await;
}
