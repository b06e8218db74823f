//! The defender against real clients from two loopback addresses: failed
//! logins from 127.0.0.2 get it banned on SFTP, FTP and HTTP alike, while
//! 127.0.0.1 keeps working; the ban is listed and lifted through the API,
//! and an allow-listed address is never banned.

use std::net::{IpAddr, SocketAddr};

use reqwest::{Method, StatusCode};
use tokio::io::AsyncReadExt;

use crate::http::{Https, ROOT};
use crate::support::{PASSWORD, connect, connect_from, login_password};

const ATTACKER: &str = "127.0.0.2";
const TRUSTED: &str = "127.0.0.3";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// One SSH password attempt from `source`; `None` when the server ended
/// the connection instead of answering.
async fn attempt(api: &Https, source: &str, user: &str, password: &str) -> Option<bool> {
    let mut conn = connect_from(ip(source), api.server.addr).await;
    let result = conn.authenticate_password(user, password).await;
    // The client reports a connection ended mid-authentication as a
    // failure; whether it is closed tells the two apart.
    tokio::task::yield_now().await;
    match result {
        Ok(_) if conn.is_closed() => None,
        Ok(result) => Some(result.success()),
        Err(_) => None,
    }
}

/// The first line an FTP server sends to a client from `source`.
async fn ftp_greeting(source: &str, addr: SocketAddr) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip(source), 0)).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).await.unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

fn client_from(api: &Https, source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(api.pem.as_bytes()).unwrap())
        .resolve("localhost", api.server.http_addr)
        .local_address(ip(source))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_ban_an_address_on_every_protocol() {
    let api = Https::start_configured("sqlite", |config| {
        config.defender.enabled = true;
        config.defender.threshold = 6;
        config.defender.allow = vec![format!("{TRUSTED}/32").parse().unwrap()];
    })
    .await;
    let root = api.bearer(ROOT, PASSWORD).await;
    api.server.add_full_user("fay").await;

    // Unknown users score 2, wrong passwords 1: 2 + 2 + 1 + 1 reaches 6.
    assert_eq!(attempt(&api, ATTACKER, "nobody", "x").await, Some(false));
    assert_eq!(attempt(&api, ATTACKER, "nobody", "x").await, Some(false));
    assert_eq!(attempt(&api, ATTACKER, "fay", "wrong").await, Some(false));
    assert_eq!(attempt(&api, ATTACKER, "fay", "wrong").await, Some(false));
    let banned = api.server.wait_for_type("AddressBanned").await;
    assert_eq!(banned.len(), 1);

    // Refused before any authentication, even with the right password.
    assert_eq!(attempt(&api, ATTACKER, "fay", PASSWORD).await, None, "SSH");
    let greeting = ftp_greeting(ATTACKER, api.server.ftp_addr).await;
    assert!(greeting.starts_with("421"), "FTP: {greeting}");
    let res = client_from(&api, ATTACKER)
        .post(format!("{}/api/v1/token", api.base))
        .basic_auth("fay", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "HTTP");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("banned"),
        "{body}"
    );

    // Everyone else keeps working.
    let mut conn = connect(api.server.addr).await;
    assert!(
        login_password(&mut conn, "fay", PASSWORD).await,
        "127.0.0.1"
    );
    assert!(
        ftp_greeting("127.0.0.1", api.server.ftp_addr)
            .await
            .starts_with("220")
    );

    // Listed, then lifted by an administrator.
    let (status, _, bans) = api.call(Method::GET, "/api/v1/bans", &root, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bans[0]["address"], ATTACKER, "{bans}");
    assert_eq!(bans[0]["bans"], 1);
    let (status, _, body) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/bans/{ATTACKER}"),
            &root,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    api.server.wait_for_type("AddressUnbanned").await;
    assert_eq!(attempt(&api, ATTACKER, "fay", PASSWORD).await, Some(true));
    let (_, _, bans) = api.call(Method::GET, "/api/v1/bans", &root, None).await;
    assert_eq!(bans, serde_json::json!([]));

    // An allow-listed address is never banned.
    for _ in 0..5 {
        assert_eq!(attempt(&api, TRUSTED, "nobody", "x").await, Some(false));
    }
    assert_eq!(attempt(&api, TRUSTED, "fay", PASSWORD).await, Some(true));
    api.server.stop().await;
}
