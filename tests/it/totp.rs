//! TOTP second factors, enrolled through the admin API and presented by
//! real clients: keyboard-interactive after a password or a key over SSH
//! (russh client), appended to the password over FTP, in a header on token
//! issue; each code accepted once, recovery codes spent once, enforcement
//! by access rules, and the secret never in the log in clear.

use reqwest::{Method, StatusCode};
use russh::client::KeyboardInteractiveAuthResponse;
use serde_json::{Value, json};
use totp_rs::{Builder, Secret};

use crate::http::{Https, ROOT};
use crate::support::{
    Connection, PASSWORD, connect, login_key, login_password, new_key, open_sftp,
};

/// The code of `secret` (base32) at `unix_time`.
fn code_at(secret: &str, unix_time: i64) -> String {
    let totp = Builder::new()
        .with_secret(Secret::try_from_base32(secret).unwrap())
        .with_account_name("user")
        .build()
        .unwrap();
    totp.generate(u64::try_from(unix_time).unwrap()).to_string()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Enrols and confirms a second factor for `user`: its secret and its
/// recovery codes. The confirming code's step is spent, so the next
/// login takes the following step's code (`code_at(secret, now() + 30)`).
async fn enrolled(api: &Https, root: &str, user: &str) -> (String, Vec<String>) {
    let (status, _, body) = api
        .call(
            Method::POST,
            &format!("/api/v1/users/{user}/totp"),
            root,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().unwrap().to_string();
    assert!(
        body["uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("otpauth://totp/Tollgate:{user}?"))
    );
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        body["qr_png"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    let path = format!("/api/v1/users/{user}/totp/confirm");
    let confirm = |code: String| api.call(Method::POST, &path, root, Some(json!({ "code": code })));
    let (status, _, body) = confirm("000000".into()).await;
    assert!(status.is_client_error(), "a wrong code: {status} {body}");
    let (status, _, body) = confirm(code_at(&secret, now())).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, _, body) = api
        .call(Method::GET, &format!("/api/v1/users/{user}"), root, None)
        .await;
    assert_eq!(body["totp"], "enabled");
    (secret, codes)
}

/// Keyboard-interactive with one answer: `Ok(true)` when it logs in,
/// `Ok(false)` when the server asks again or refuses.
async fn answer(conn: &mut Connection, user: &str, code: &str) -> bool {
    let prompt = conn
        .authenticate_keyboard_interactive_start(user, None)
        .await
        .unwrap();
    let KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } = prompt else {
        panic!("expected a prompt, got {prompt:?}");
    };
    assert_eq!(prompts.len(), 1);
    assert!(!prompts[0].echo, "the code is not echoed");
    let reply = conn
        .authenticate_keyboard_interactive_respond(vec![code.to_string()])
        .await
        .unwrap();
    matches!(reply, KeyboardInteractiveAuthResponse::Success)
}

async fn reasons(api: &Https, user: &str) -> String {
    let failed = api.server.wait_for_event(user, "LoginFailed").await;
    failed
        .iter()
        .map(|e| e.payload.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_asks_for_the_code_by_keyboard_interactive_after_a_password_or_key() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    api.server.add_full_user("tess").await;
    let key = new_key();
    api.server
        .app()
        .set_public_keys("test", "tess", &[key.public_key().to_openssh().unwrap()])
        .await
        .unwrap();
    let (secret, recovery) = enrolled(&api, &root, "tess").await;

    // The password alone is a partial success: only keyboard-interactive
    // may follow.
    let mut conn = connect(api.server.addr).await;
    let first = conn.authenticate_password("tess", PASSWORD).await.unwrap();
    let russh::client::AuthResult::Failure {
        remaining_methods,
        partial_success,
    } = first
    else {
        panic!("the password alone logged in");
    };
    assert!(partial_success);
    assert!(remaining_methods.contains(&russh::MethodKind::KeyboardInteractive));
    assert!(!answer(&mut conn, "tess", "000000").await, "a wrong code");
    let spent = code_at(&secret, now() - 30);
    assert!(
        !answer(&mut conn, "tess", &spent).await,
        "the confirming step or older"
    );
    let taken = code_at(&secret, now() + 30);
    assert!(answer(&mut conn, "tess", &taken).await);
    let sftp = open_sftp(&conn).await;
    sftp.create_dir("/in").await.unwrap();

    // The same code again, in another session: refused (used once). The
    // very code, not one computed anew: past a step boundary that would be
    // the next step's, which is fresh.
    let mut again = connect(api.server.addr).await;
    assert!(!login_password(&mut again, "tess", PASSWORD).await);
    assert!(!answer(&mut again, "tess", &taken).await);

    // A key, then a recovery code; a spent recovery code is refused.
    let mut conn = connect(api.server.addr).await;
    assert!(!login_key(&mut conn, "tess", &key).await, "the key alone");
    assert!(answer(&mut conn, "tess", &recovery[0].to_uppercase()).await);
    let mut conn = connect(api.server.addr).await;
    assert!(!login_key(&mut conn, "tess", &key).await);
    assert!(!answer(&mut conn, "tess", &recovery[0]).await, "spent");

    // Keyboard-interactive without a first factor logs nobody in.
    let mut conn = connect(api.server.addr).await;
    let reply = conn
        .authenticate_keyboard_interactive_start("tess", None)
        .await
        .unwrap();
    assert!(
        matches!(reply, KeyboardInteractiveAuthResponse::Failure { .. }),
        "{reply:?}"
    );

    let failures = reasons(&api, "tess").await;
    assert!(failures.contains("wrong second factor code"), "{failures}");
    let used = api
        .server
        .wait_for_event("tess", "UserRecoveryCodeUsed")
        .await;
    assert_eq!(used.len(), 1);

    // The secret and the recovery codes are never in the log in clear.
    let log = serde_json::to_string(
        &api.server
            .events(tollgate_application::EventFilter::default())
            .await
            .iter()
            .map(|e| e.payload.clone())
            .collect::<Vec<Value>>(),
    )
    .unwrap();
    assert!(!log.contains(&secret));
    assert!(!log.contains(&recovery[1]));
    api.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_and_the_token_endpoint_take_the_code_with_the_password() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    api.server.add_full_user("fran").await;
    api.server.add_full_user("hugo").await;
    let (fran, _) = enrolled(&api, &root, "fran").await;
    let (hugo, recovery) = enrolled(&api, &root, "hugo").await;

    // FTP: the code appended to the password.
    let ftp_addr = api.server.ftp_addr;
    let code = code_at(&fran, now() + 30);
    let logins = tokio::task::spawn_blocking(move || {
        let try_login = |password: String| {
            let mut ftp = suppaftp::FtpStream::connect(ftp_addr).unwrap();
            let ok = ftp.login("fran", &password).is_ok();
            let _ = ftp.quit();
            ok
        };
        [
            try_login(PASSWORD.to_string()),
            try_login(format!("{PASSWORD}000000")),
            try_login(format!("{PASSWORD}{code}")),
            try_login(format!("{PASSWORD}{code}")),
        ]
    })
    .await
    .unwrap();
    assert_eq!(
        logins,
        [false, false, true, false],
        "alone, wrong, right, replayed"
    );
    let failures = reasons(&api, "fran").await;
    assert!(
        failures.contains("second factor code missing"),
        "{failures}"
    );

    // The token endpoint: the code in X-Tollgate-OTP, or appended.
    let token = |password: String, otp: Option<String>| {
        let mut req = api
            .client
            .post(format!("{}/api/v1/token", api.base))
            .basic_auth("hugo", Some(password));
        if let Some(otp) = otp {
            req = req.header("X-Tollgate-OTP", otp);
        }
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(token(PASSWORD.into(), None).await, StatusCode::UNAUTHORIZED);
    let code = code_at(&hugo, now() + 30);
    assert_eq!(
        token(PASSWORD.into(), Some(code.clone())).await,
        StatusCode::OK
    );
    assert_eq!(
        token(format!("{PASSWORD}{code}"), None).await,
        StatusCode::UNAUTHORIZED,
        "used once"
    );
    assert_eq!(
        token(PASSWORD.into(), Some(recovery[3].clone())).await,
        StatusCode::OK
    );
    assert_eq!(
        token(PASSWORD.into(), Some(recovery[3].clone())).await,
        StatusCode::UNAUTHORIZED
    );

    // Disabled: the password alone again.
    let (status, _, _) = api
        .call(Method::DELETE, "/api/v1/users/hugo/totp", &root, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(token(PASSWORD.into(), None).await, StatusCode::OK);
    api.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_rules_can_require_a_second_factor() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    api.server.add_full_user("rita").await;
    let (status, _, body) = api
        .call(
            Method::POST,
            "/api/v1/groups",
            &root,
            Some(json!({"name": "strict"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (path, body) in [
        (
            "/api/v1/groups/strict",
            json!({"access": {"require_totp": true}}),
        ),
        ("/api/v1/users/rita", json!({"groups": ["strict"]})),
    ] {
        let (status, _, body) = api.call(Method::PATCH, path, &root, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut conn = connect(api.server.addr).await;
    assert!(!login_password(&mut conn, "rita", PASSWORD).await);
    let failures = reasons(&api, "rita").await;
    assert!(
        failures.contains("second factor required but not enrolled"),
        "{failures}"
    );
    let res = api
        .client
        .post(format!("{}/api/v1/token", api.base))
        .basic_auth("rita", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Enrolled, the same rules let the code through.
    let (secret, _) = enrolled(&api, &root, "rita").await;
    let mut conn = connect(api.server.addr).await;
    assert!(!login_password(&mut conn, "rita", PASSWORD).await);
    assert!(answer(&mut conn, "rita", &code_at(&secret, now() + 30)).await);
    api.server.stop().await;
}
