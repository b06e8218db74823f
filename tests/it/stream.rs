//! The live event stream over a real WebSocket client (tokio-tungstenite):
//! events of a concurrent SFTP upload arrive as they are sealed, a stream
//! resumes from a position, refusals come before the upgrade, and a client
//! that stops reading is disconnected with the position to resume from.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::{TestServer, test_config};
use crate::webhooks::{admin, upload};

async fn next_event(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(20), ws.next())
            .await
            .expect("an event within the time limit")
            .expect("the stream is open")
            .expect("a message");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_sees_the_events_of_a_concurrent_upload() {
    let server = TestServer::start("sqlite").await;
    server.add_full_user("uma").await;
    let (_, bearer) = admin(&server).await;
    let token = bearer.trim_start_matches("Bearer ");
    let base = format!("ws://{}/api/v1/events/ws", server.http_addr);

    // Refused before the upgrade: no credentials, a bad format.
    let refused = tokio_tungstenite::connect_async(base.clone()).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401),
        "{refused:?}"
    );
    let refused =
        tokio_tungstenite::connect_async(format!("{base}?token={token}&format=xml")).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 400),
        "{refused:?}"
    );

    let (mut live, _) = tokio_tungstenite::connect_async(format!(
        "{base}?token={token}&types=TransferStarted,TransferCompleted&users=uma"
    ))
    .await
    .unwrap();
    // The stream is open while the upload happens.
    upload(&server, "uma", "live.txt").await;
    let started = next_event(&mut live).await;
    let completed = next_event(&mut live).await;
    assert_eq!(
        (started["type"].as_str(), completed["type"].as_str()),
        (Some("TransferStarted"), Some("TransferCompleted"))
    );
    assert_eq!(completed["target"]["path"], "/live.txt");
    assert_eq!(completed["user"], "uma");
    assert_eq!(completed["audit_hash"].as_str().map(str::len), Some(64));
    assert!(completed["position"].as_u64() > started["position"].as_u64());

    // A second stream resumes from a position, in OCSF.
    let from = started["position"].as_u64().unwrap() - 1;
    let (mut resumed, _) = tokio_tungstenite::connect_async(format!(
        "{base}?token={token}&from={from}&types=TransferStarted&format=ocsf"
    ))
    .await
    .unwrap();
    let again = next_event(&mut resumed).await;
    assert_eq!(again["metadata"]["uid"], started["id"]);
    assert_eq!(again["class_uid"], 1001);
    live.close(None).await.unwrap();
    resumed.close(None).await.unwrap();

    // Opening a stream is a read of the audit trail.
    let reads = server.wait_for_type("AuditLogRead").await;
    assert!(
        reads
            .iter()
            .filter(|r| r.payload.to_string().contains("websocket"))
            .count()
            >= 2
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_with_a_resume_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config("sqlite", dir.path()).await;
    config.http.stream_send_timeout_ms = 300;
    let server = TestServer::start_with(config, dir).await;
    // Large records, so that the socket buffers fill up quickly.
    let rules: Vec<String> = (0..150)
        .map(|i| format!("/{}/{i:04}=list,download", "d".repeat(120)))
        .collect();
    for n in 0..200 {
        server
            .app()
            .create_policy("test", &format!("big{n}"), &rules)
            .await
            .unwrap();
    }
    server.app().catch_up().await.unwrap();
    let (_, bearer) = admin(&server).await;
    let token = bearer.trim_start_matches("Bearer ");
    // A small receive buffer on the client's side of the connection.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.http_addr).await.unwrap();
    let url = format!(
        "ws://{}/api/v1/events/ws?token={token}&from=0",
        server.http_addr
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    // Not reading for a while: the server's sends stall, then it gives up.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let mut close = None;
    let mut received = 0usize;
    while let Ok(Some(message)) =
        tokio::time::timeout(std::time::Duration::from_secs(20), ws.next()).await
    {
        match message {
            Ok(Message::Text(_)) => received += 1,
            Ok(Message::Close(frame)) => {
                close = frame;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let frame = close.expect("a close frame with a reason");
    assert_eq!(frame.code, CloseCode::Policy);
    assert!(
        frame.reason.starts_with("too slow: resume from position "),
        "{}",
        frame.reason
    );
    let resume: u64 = frame.reason.rsplit(' ').next().unwrap().parse().unwrap();
    // Every event from 1 was selected: the resume position is the last one
    // taken; the one in flight when the time ran out may also arrive.
    assert!(
        resume > 0 && (received as u64 == resume || received as u64 == resume + 1),
        "{resume} after {received} messages"
    );
    let _ = ws.send(Message::Close(None)).await;
    server.stop().await;
}
