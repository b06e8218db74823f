//! SFTP through the real server with the russh / russh-sftp clients, on
//! every configured database.

use std::io::SeekFrom;

use russh_sftp::protocol::{OpenFlags, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tollgate_application::EventFilter;

use crate::support::{
    PASSWORD, TestServer, connect, login_key, login_password, metric, new_key, open_sftp, refused,
    sftp, sftp_channel, sha256_hex,
};

async fn for_each_database<F, Fut>(test: F)
where
    F: Fn(TestServer) -> Fut,
    Fut: std::future::Future<Output = TestServer>,
{
    for kind in crate::support::database_kinds() {
        let server = TestServer::start(kind).await;
        let server = test(server).await;
        server.stop().await;
    }
}

/// The server's transfers in `direction`, once the read models have
/// caught up with the log.
async fn transfers(
    server: &TestServer,
    direction: tollgate_domain::transfer::Direction,
) -> Vec<tollgate_application::TransferView> {
    server.app().catch_up().await.unwrap();
    server
        .app()
        .list_transfers()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.context.as_ref().unwrap().direction == direction)
        .collect()
}

async fn write_file(session: &russh_sftp::client::SftpSession, path: &str, data: &[u8]) {
    let mut file = session.create(path).await.expect("create");
    file.write_all(data).await.expect("write");
    file.shutdown().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_uploads_lists_downloads_renames_and_removes() {
    for_each_database(|server| async move {
        let home = server.add_user("alice", &[]).await;
        let (_conn, session) = sftp(server.addr, "alice").await;
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();

        session.create_dir("docs").await.unwrap();
        write_file(&session, "docs/report.bin", &data).await;
        write_file(&session, "ünïcødé 文件.txt", b"unicode").await;
        let names: Vec<String> = session
            .read_dir("/")
            .await
            .unwrap()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            vec!["docs".to_string(), "ünïcødé 文件.txt".to_string()]
        );
        assert_eq!(
            session.metadata("docs/report.bin").await.unwrap().size,
            Some(data.len() as u64)
        );
        assert_eq!(session.read("docs/report.bin").await.unwrap(), data);
        // Both uploads and the download, counted for the metrics endpoint.
        assert_eq!(
            metric(server.app(), "tollgate_transfer_bytes_total").await,
            Some((
                vec![("protocol", "sftp".to_string())],
                (2 * data.len() + b"unicode".len()) as f64
            ))
        );
        assert_eq!(
            std::fs::read(home.join("docs/report.bin")).unwrap(),
            data,
            "stored on local disk"
        );
        assert_eq!(
            session
                .canonicalize("docs/../docs/./report.bin")
                .await
                .unwrap(),
            "/docs/report.bin"
        );

        let mut times = session.metadata("docs/report.bin").await.unwrap();
        times.atime = Some(1_600_000_000);
        times.mtime = Some(1_600_000_000);
        times.size = None;
        times.permissions = None;
        session
            .set_metadata("docs/report.bin", times)
            .await
            .unwrap();
        assert_eq!(
            session.metadata("docs/report.bin").await.unwrap().mtime,
            Some(1_600_000_000)
        );

        session
            .rename("docs/report.bin", "docs/renamed.bin")
            .await
            .unwrap();
        assert_eq!(
            refused(session.metadata("docs/report.bin").await),
            StatusCode::NoSuchFile
        );
        assert_eq!(
            refused(session.remove_dir("docs").await),
            StatusCode::Failure,
            "not empty"
        );
        session.remove_file("docs/renamed.bin").await.unwrap();
        session.remove_dir("docs").await.unwrap();
        assert_eq!(
            refused(session.remove_file("missing").await),
            StatusCode::NoSuchFile
        );

        let completed = server.events_of("alice", "TransferCompleted").await;
        let upload = completed
            .iter()
            .find(|e| e.path.as_deref() == Some("/docs/report.bin"))
            .unwrap();
        assert_eq!(upload.sha256.as_deref(), Some(sha256_hex(&data).as_str()));
        assert_eq!(upload.bytes, Some(data.len() as u64));
        assert_eq!(upload.protocol.as_deref(), Some("sftp"));
        let ops: Vec<String> = server
            .events_of("alice", "FileOperationPerformed")
            .await
            .into_iter()
            .filter_map(|e| e.operation)
            .collect();
        for op in [
            "mkdir",
            "list",
            "set_attributes",
            "rename",
            "remove",
            "rmdir",
        ] {
            assert!(ops.iter().any(|o| o == op), "{op} recorded in {ops:?}");
        }
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_resume_at_an_offset_and_append() {
    for_each_database(|server| async move {
        let home = server.add_user("bob", &[]).await;
        let (_conn, session) = sftp(server.addr, "bob").await;
        write_file(&session, "log.txt", b"hello ").await;

        // Resume: open without truncation and write at the current size.
        let mut file = session
            .open_with_flags("log.txt", OpenFlags::WRITE)
            .await
            .unwrap();
        file.seek(SeekFrom::Start(6)).await.unwrap();
        file.write_all(b"world").await.unwrap();
        file.shutdown().await.unwrap();
        assert_eq!(session.read("log.txt").await.unwrap(), b"hello world");

        let mut file = session
            .open_with_flags("log.txt", OpenFlags::WRITE | OpenFlags::APPEND)
            .await
            .unwrap();
        file.write_all(b"!").await.unwrap();
        file.shutdown().await.unwrap();
        assert_eq!(session.read("log.txt").await.unwrap(), b"hello world!");

        // Opening a missing file without CREATE fails cleanly.
        assert_eq!(
            refused(
                session
                    .open_with_flags("absent.txt", OpenFlags::WRITE)
                    .await
            ),
            StatusCode::NoSuchFile
        );
        // So does an exclusive create of a file that exists; it leaves the
        // file, and nothing else, in the home.
        assert_eq!(
            refused(
                session
                    .open_with_flags(
                        "log.txt",
                        OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE
                    )
                    .await
            ),
            StatusCode::Failure
        );
        let names: Vec<String> = std::fs::read_dir(&home)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["log.txt"], "no staging file is left behind");
        assert_eq!(session.read("log.txt").await.unwrap(), b"hello world!");

        let mut uploads = transfers(&server, tollgate_domain::transfer::Direction::Upload).await;
        uploads.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        let summary: Vec<_> = uploads
            .iter()
            .map(|t| (t.offset, t.bytes, t.size, t.sha256.clone().unwrap()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, 6, Some(6), sha256_hex(b"hello ")),
                (6, 5, Some(11), sha256_hex(b"hello world")),
                (11, 1, Some(12), sha256_hex(b"hello world!")),
            ],
            "each upload records where it started, what it moved and the digest of the whole file"
        );
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_logins_work_and_record_the_fingerprint() {
    for_each_database(|server| async move {
        let key = new_key();
        let other = new_key();
        let line = key.public_key().to_openssh().unwrap();
        server.add_user("carol", &[]).await;
        server
            .app()
            .set_public_keys("test", "carol", &[line])
            .await
            .unwrap();

        let mut conn = connect(server.addr).await;
        assert!(
            !login_key(&mut conn, "carol", &other).await,
            "an unknown key is refused"
        );
        assert!(login_key(&mut conn, "carol", &key).await);
        let session = open_sftp(&conn).await;
        write_file(&session, "k.txt", b"key").await;

        let logins = server.events_of("carol", "LoginSucceeded").await;
        let fingerprint = key
            .public_key()
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string();
        assert_eq!(
            logins[0].payload["LoginSucceeded"]["key_fingerprint"],
            fingerprint.as_str()
        );
        let failures = server.events_of("carol", "LoginFailed").await;
        assert_eq!(failures[0].detail.as_deref(), Some("key not authorized"));
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_refused_and_recorded() {
    for_each_database(|server| async move {
        server.add_user("dave", &[]).await;
        let mut conn = connect(server.addr).await;
        let refused = conn.authenticate_password("dave", "wrong").await.unwrap();
        let russh::client::AuthResult::Failure {
            remaining_methods, ..
        } = refused
        else {
            panic!("accepted")
        };
        assert!(
            remaining_methods.contains(&russh::MethodKind::Password),
            "a wrong password may be retried on the same connection"
        );
        assert!(!login_password(&mut conn, "nobody", PASSWORD).await);
        server
            .app()
            .set_user_enabled("test", "dave", false)
            .await
            .unwrap();
        assert!(!login_password(&mut conn, "dave", PASSWORD).await);

        let reasons: Vec<_> = server
            .events(EventFilter {
                event_type: Some("LoginFailed".into()),
                ..EventFilter::default()
            })
            .await
            .into_iter()
            .map(|e| {
                (
                    e.user.unwrap(),
                    e.detail.unwrap(),
                    e.outcome,
                    e.remote_addr.is_some(),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("dave".into(), "wrong password".into(), "failure", true),
                ("nobody".into(), "unknown user".into(), "failure", true),
                ("dave".into(), "account disabled".into(), "failure", true),
            ]
        );
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_namespace_can_be_reached() {
    for_each_database(|server| async move {
        let home = server.add_user("erin", &[]).await;
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(outside.path(), home.join("escape")).unwrap();
        let (_conn, session) = sftp(server.addr, "erin").await;

        for path in ["..", "../secret", "/../../etc/passwd", "a/../../b"] {
            assert_eq!(
                refused(session.read(path).await),
                StatusCode::PermissionDenied,
                "{path}"
            );
            assert_eq!(
                refused(session.canonicalize(path).await),
                StatusCode::PermissionDenied
            );
        }
        assert_eq!(
            refused(session.read("bad\0name").await),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            refused(session.read("/etc/passwd").await),
            StatusCode::NoSuchFile
        );
        assert_eq!(
            refused(session.read("escape/secret").await),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            refused(session.create("escape/planted").await),
            StatusCode::PermissionDenied
        );
        assert!(!outside.path().join("planted").exists());
        let long = "x".repeat(300);
        assert_eq!(
            refused(session.create_dir(long.as_str()).await),
            StatusCode::Failure
        );
        assert_eq!(
            refused(session.symlink("link", "/").await),
            StatusCode::PermissionDenied,
            "symlink creation is refused"
        );

        let denied = server.events_of("erin", "FileOperationDenied").await;
        assert!(
            denied
                .iter()
                .filter(|e| e.detail.as_deref() == Some("namespace"))
                .count()
                >= 8,
            "{denied:?}"
        );
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_denials_answer_permission_denied_and_are_recorded() {
    for_each_database(|server| async move {
        let rules = [
            "/=list,download,upload,create_dirs",
            "/inbox=list,upload",
            "/archive=list,download",
        ];
        server
            .app()
            .create_policy("test", "partner", &rules.map(String::from))
            .await
            .unwrap();
        let home = server.add_user("frank", &["partner"]).await;
        std::fs::create_dir_all(home.join("archive")).unwrap();
        std::fs::create_dir_all(home.join("inbox")).unwrap();
        std::fs::write(home.join("archive/old.csv"), b"old").unwrap();
        std::fs::write(home.join("keep.txt"), b"keep").unwrap();
        let (_conn, session) = sftp(server.addr, "frank").await;

        write_file(&session, "inbox/new.csv", b"new").await;
        assert_eq!(session.read("archive/old.csv").await.unwrap(), b"old");
        let denials = [
            refused(session.create("archive/x.csv").await),
            refused(session.read("inbox/new.csv").await),
            refused(session.remove_file("keep.txt").await),
            refused(session.rename("keep.txt", "inbox/keep.txt").await),
            refused(session.create("keep.txt").await),
            refused(session.create_dir("inbox/sub").await),
            refused(session.remove_dir("archive").await),
        ];
        assert!(
            denials.iter().all(|s| *s == StatusCode::PermissionDenied),
            "{denials:?}"
        );
        assert_eq!(
            std::fs::read(home.join("keep.txt")).unwrap(),
            b"keep",
            "an overwrite was not allowed"
        );

        let transfers = server.events_of("frank", "TransferDenied").await;
        let rules: Vec<_> = transfers
            .iter()
            .map(|e| (e.path.clone().unwrap(), e.detail.clone().unwrap()))
            .collect();
        assert_eq!(
            rules,
            vec![
                ("/archive/x.csv".into(), "partner:/archive".into()),
                ("/inbox/new.csv".into(), "partner:/inbox".into()),
                ("/keep.txt".into(), "partner:/".into()),
            ]
        );
        let ops = server.events_of("frank", "FileOperationDenied").await;
        let ops: Vec<_> = ops.iter().map(|e| e.operation.clone().unwrap()).collect();
        assert_eq!(ops, vec!["remove", "rename", "mkdir", "rmdir"]);
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_upload_leaves_no_file_and_is_recorded_as_aborted() {
    for_each_database(|server| async move {
        let home = server.add_user("gina", &[]).await;
        std::fs::write(home.join("existing.txt"), b"old content").unwrap();
        let (conn, session) = sftp(server.addr, "gina").await;
        for name in ["new.bin", "existing.txt"] {
            let mut file = session.create(name).await.unwrap();
            file.write_all(&[7u8; 100_000]).await.unwrap();
            file.flush().await.unwrap();
            // The partial upload is not visible under its name.
            let (_conn2, other) = sftp(server.addr, "gina").await;
            let listing: Vec<String> = other
                .read_dir("/")
                .await
                .unwrap()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(listing, vec!["existing.txt".to_string()]);
            std::mem::forget(file);
        }
        // The client vanishes without closing its handles.
        conn.disconnect(russh::Disconnect::ByApplication, "", "")
            .await
            .unwrap();
        drop(session);
        let aborted = server.wait_for_events("gina", "TransferAborted", 2).await;
        assert!(
            aborted
                .iter()
                .all(|e| e.outcome == "aborted" && e.bytes == Some(100_000)),
            "{aborted:?}"
        );
        let names: Vec<_> = std::fs::read_dir(&home)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("existing.txt")],
            "no staging file is left"
        );
        assert_eq!(
            std::fs::read(home.join("existing.txt")).unwrap(),
            b"old content"
        );
        server.wait_for_event("gina", "SessionClosed").await;
        server
    })
    .await;
}

/// Writes one raw SFTP packet (length, type, request id, body).
fn packet(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((body.len() + 5) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads one raw SFTP reply: (type, request id, rest).
async fn reply(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u8, u32, Vec<u8>) {
    let len = stream.read_u32().await.unwrap() as usize;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await.unwrap();
    let id = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    (buf[0], id, buf[5..].to_vec())
}

fn status_code(body: &[u8]) -> u32 {
    u32::from_be_bytes([body[0], body[1], body[2], body[3]])
}

const FXP_STATUS: u8 = 101;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_clean_errors_and_the_server_keeps_serving() {
    for_each_database(|server| async move {
        server.add_user("hank", &[]).await;
        let mut conn = connect(server.addr).await;
        assert!(login_password(&mut conn, "hank", PASSWORD).await);
        let mut stream = sftp_channel(&conn).await.into_stream();
        // SSH_FXP_INIT, version 3.
        stream
            .write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3])
            .await
            .unwrap();
        let (kind, _, _) = reply(&mut stream).await;
        assert_eq!(kind, 2, "SSH_FXP_VERSION");

        // An unknown packet type.
        stream.write_all(&packet(200, 7, b"junk")).await.unwrap();
        let (kind, id, body) = reply(&mut stream).await;
        assert_eq!(
            (kind, id, status_code(&body)),
            (FXP_STATUS, 7, 5),
            "BAD_MESSAGE for request 7"
        );
        // A STAT whose path length runs past the packet.
        stream
            .write_all(&packet(17, 8, &[0, 0, 1, 0, b'a']))
            .await
            .unwrap();
        let (kind, id, body) = reply(&mut stream).await;
        assert_eq!((kind, id, status_code(&body)), (FXP_STATUS, 8, 5));
        // READ and CLOSE on a handle that was never opened.
        let mut read = vec![0, 0, 0, 2, b'h', b'9'];
        read.extend_from_slice(&0u64.to_be_bytes());
        read.extend_from_slice(&1024u32.to_be_bytes());
        stream.write_all(&packet(5, 9, &read)).await.unwrap();
        let (kind, id, body) = reply(&mut stream).await;
        assert_eq!(
            (kind, id, status_code(&body)),
            (FXP_STATUS, 9, 4),
            "FAILURE: invalid handle"
        );
        // A path with an over-long name.
        let name = "n".repeat(1000);
        let mut mkdir = (name.len() as u32).to_be_bytes().to_vec();
        mkdir.extend_from_slice(name.as_bytes());
        mkdir.extend_from_slice(&0u32.to_be_bytes());
        stream.write_all(&packet(14, 10, &mkdir)).await.unwrap();
        let (kind, id, body) = reply(&mut stream).await;
        assert_eq!((kind, id, status_code(&body)), (FXP_STATUS, 10, 4));
        // A length prefix far beyond any valid packet closes this channel only.
        stream
            .write_all(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3])
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "nothing answers an oversized packet");

        // The same connection and other connections keep working.
        let session = open_sftp(&conn).await;
        write_file(&session, "still-ok.txt", b"ok").await;
        let (_conn2, other) = sftp(server.addr, "hank").await;
        assert_eq!(other.read("still-ok.txt").await.unwrap(), b"ok");
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_records_the_end_of_open_transfers_and_sessions() {
    for kind in crate::support::database_kinds() {
        let server = TestServer::start(kind).await;
        let home = server.add_user("ivy", &[]).await;
        let (_conn, session) = sftp(server.addr, "ivy").await;
        let mut file = session.create("unfinished.bin").await.unwrap();
        file.write_all(&[1u8; 50_000]).await.unwrap();
        file.flush().await.unwrap();
        // Another request proves the writes above were processed.
        session.metadata("/").await.unwrap();

        let (config, _dir) = server.stop().await;
        assert!(!home.join("unfinished.bin").exists());
        let (app, db) = tollgate::open(&config).await.unwrap();
        let filter = |t: &str| tollgate_application::EventFilter {
            user: Some("ivy".into()),
            event_type: Some(t.into()),
            limit: 10,
            ..Default::default()
        };
        let aborted = app.list_events(&filter("TransferAborted")).await.unwrap();
        assert_eq!(
            aborted.len(),
            1,
            "{kind}: the open upload was recorded as aborted"
        );
        assert_eq!(aborted[0].bytes, Some(50_000));
        let closed = app.list_events(&filter("SessionClosed")).await.unwrap();
        assert_eq!(
            closed.len(),
            1,
            "{kind}: the session end was recorded before the database closed"
        );
        assert_eq!(
            app.verify_audit().await.unwrap().unsealed,
            0,
            "{kind}: everything was sealed"
        );
        db.close().await;
        drop(file);
    }
}

fn string(text: &[u8]) -> Vec<u8> {
    let mut out = (text.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(text);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_by_id_and_applied_in_order() {
    for_each_database(|server| async move {
        let home = server.add_user("kim", &[]).await;
        let mut conn = connect(server.addr).await;
        assert!(login_password(&mut conn, "kim", PASSWORD).await);
        let mut stream = sftp_channel(&conn).await.into_stream();
        stream
            .write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3])
            .await
            .unwrap();
        assert_eq!(reply(&mut stream).await.0, 2);

        // OPEN (write, create, truncate) and wait for the handle.
        let mut open = string(b"piped.bin");
        open.extend_from_slice(&(0x02u32 | 0x08 | 0x10).to_be_bytes());
        open.extend_from_slice(&0u32.to_be_bytes());
        stream.write_all(&packet(3, 1, &open)).await.unwrap();
        let (kind, _, body) = reply(&mut stream).await;
        assert_eq!(kind, 102, "SSH_FXP_HANDLE");
        let handle = body[4..].to_vec();

        // 64 writes in flight, the last one overlapping the first, then a
        // STAT, which must see nothing before CLOSE, and CLOSE, then STAT.
        let chunk = 4096usize;
        let mut expected = vec![0u8; 64 * chunk];
        let mut sent = Vec::new();
        for i in 0..64u32 {
            let fill = (i % 251) as u8;
            let offset = if i == 63 {
                0
            } else {
                u64::from(i) * chunk as u64
            };
            expected[offset as usize..offset as usize + chunk].fill(fill);
            let mut write = string(&handle);
            write.extend_from_slice(&offset.to_be_bytes());
            write.extend_from_slice(&string(&vec![fill; chunk]));
            sent.extend_from_slice(&packet(6, 100 + i, &write));
        }
        sent.extend_from_slice(&packet(4, 500, &string(&handle)));
        sent.extend_from_slice(&packet(17, 501, &string(b"piped.bin")));
        stream.write_all(&sent).await.unwrap();

        let mut answered = Vec::new();
        for _ in 0..66 {
            let (kind, id, body) = reply(&mut stream).await;
            if id == 501 {
                assert_eq!(kind, 105, "SSH_FXP_ATTRS: the file exists once closed");
            } else {
                assert_eq!((kind, status_code(&body)), (FXP_STATUS, 0), "request {id}");
            }
            answered.push(id);
        }
        assert_eq!(
            *answered.last().unwrap(),
            501,
            "a path request waits for earlier file requests"
        );
        answered.sort();
        assert_eq!(answered, (100..164).chain([500, 501]).collect::<Vec<_>>());
        expected.truncate(63 * chunk);
        let stored = std::fs::read(home.join("piped.bin")).unwrap();
        assert!(
            stored == expected,
            "writes applied in order ({} bytes stored)",
            stored.len()
        );
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sftp_channel_ends_with_exit_status_zero() {
    let server = TestServer::start("sqlite").await;
    server.add_user("lee", &[]).await;
    let mut conn = connect(server.addr).await;
    assert!(login_password(&mut conn, "lee", PASSWORD).await);
    let mut channel = sftp_channel(&conn).await;
    channel.eof().await.unwrap();
    let mut status = None;
    while let Some(msg) = channel.wait().await {
        if let russh::ChannelMsg::ExitStatus { exit_status } = msg {
            status = Some(exit_status);
        }
    }
    assert_eq!(
        status,
        Some(0),
        "scp and other clients judge the transfer by it"
    );
    server.stop().await;
}

/// Makes the event log refuse (or, `false`, accept again) every event of
/// `event_type`, as a failing database would.
async fn refuse_events(server: &TestServer, event_type: &str, refuse: bool) {
    let url = &server.config.database.url;
    let name = format!("refuse_{event_type}");
    let statements: Vec<String> = match (url.starts_with("sqlite:"), refuse) {
        (true, true) => vec![format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON events \
             WHEN NEW.event_type = '{event_type}' \
             BEGIN SELECT RAISE(ABORT, 'the database refuses this event'); END"
        )],
        (true, false) => vec![format!("DROP TRIGGER {name}")],
        (false, true) => vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN \
                 IF NEW.event_type = '{event_type}' THEN \
                 RAISE EXCEPTION 'the database refuses this event'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql"
            ),
            format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON events \
                 FOR EACH ROW EXECUTE FUNCTION {name}()"
            ),
        ],
        (false, false) => vec![
            format!("DROP TRIGGER {name} ON events"),
            format!("DROP FUNCTION {name}()"),
        ],
    };
    // The same statements through either database's own pool type.
    macro_rules! execute {
        ($pool:expr) => {{
            let pool = $pool.await.expect("database reachable");
            for statement in &statements {
                sqlx::query(statement)
                    .execute(&pool)
                    .await
                    .expect("trigger");
            }
            pool.close().await;
        }};
    }
    if url.starts_with("sqlite:") {
        execute!(sqlx::SqlitePool::connect(url));
    } else {
        execute!(sqlx::PgPool::connect(url));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_start_cannot_be_recorded_fails_and_leaves_no_file() {
    for_each_database(|server| async move {
        let home = server.add_user("hugo", &[]).await;
        std::fs::write(home.join("kept.txt"), b"old content").unwrap();
        let (_conn, session) = sftp(server.addr, "hugo").await;
        refuse_events(&server, "TransferStarted", true).await;
        for name in ["new.bin", "kept.txt"] {
            // The server may refuse at the open or at the close, never
            // accept the upload.
            let uploaded = async {
                let mut file = session.create(name).await.ok()?;
                file.write_all(&[9u8; 70_000]).await.ok()?;
                file.shutdown().await.ok()
            }
            .await;
            assert!(
                uploaded.is_none(),
                "{name}: an unrecorded upload is refused"
            );
        }
        let mut names: Vec<_> = std::fs::read_dir(&home)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["kept.txt"], "no file and no staging file");
        assert_eq!(
            std::fs::read(home.join("kept.txt")).unwrap(),
            b"old content"
        );

        refuse_events(&server, "TransferStarted", false).await;
        write_file(&session, "new.bin", b"recorded").await;
        assert_eq!(std::fs::read(home.join("new.bin")).unwrap(), b"recorded");
        let completed = server.wait_for_event("hugo", "TransferCompleted").await;
        assert_eq!(completed.len(), 1, "{completed:?}");
        server
    })
    .await;
}

/// An upload whose completion the event log refuses is not reported as
/// done: its CLOSE fails (the file, committed first, stays in place), and
/// the record never shows it completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_completion_cannot_be_recorded_is_not_reported_done() {
    for_each_database(|server| async move {
        server.add_user("ivan", &[]).await;
        let (_conn, session) = sftp(server.addr, "ivan").await;
        refuse_events(&server, "TransferCompleted", true).await;
        let mut file = session.create("report.csv").await.unwrap();
        file.write_all(b"a,b\n").await.unwrap();
        assert!(
            file.shutdown().await.is_err(),
            "the close reports the unrecorded completion"
        );

        refuse_events(&server, "TransferCompleted", false).await;
        write_file(&session, "next.csv", b"c,d\n").await;
        server.wait_for_event("ivan", "TransferCompleted").await;
        let mut states: Vec<_> = transfers(&server, tollgate_domain::transfer::Direction::Upload)
            .await
            .into_iter()
            .map(|t| (t.context.unwrap().path, t.state))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            states,
            vec![
                (
                    "/next.csv".to_string(),
                    Some(tollgate_domain::transfer::TransferState::Completed)
                ),
                (
                    "/report.csv".to_string(),
                    Some(tollgate_domain::transfer::TransferState::Running)
                ),
            ]
        );
        server
    })
    .await;
}

/// A write the storage could not take fails the whole upload: the bytes
/// gathered before it may be among those lost, so the CLOSE is refused,
/// nothing appears, and the transfer is recorded as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_write_failed_is_never_committed() {
    for_each_database(|server| async move {
        let home = server.add_user("erin", &[]).await;
        let (_conn, session) = sftp(server.addr, "erin").await;
        session.create_dir("docs").await.unwrap();
        let mut file = session.create("docs/partial.bin").await.unwrap();
        file.write_all(b"head").await.unwrap();

        // The directory goes away under the upload, so the bytes gathered
        // so far cannot reach a staging file.
        std::fs::remove_dir(home.join("docs")).unwrap();
        // (The client pipelines its WRITEs and may report the failed one
        // here or when it waits for their replies.)
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..8 {
            if file.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // A wait reports a failed WRITE (once they are all answered, a
        // flush also sends fsync@openssh.com, which the refused upload fails).
        assert!(
            file.flush().await.is_err(),
            "a WRITE reports that the bytes could not be stored"
        );

        // The directory is back before the CLOSE: still nothing may be
        // committed, as "head" was lost. Each shutdown reports one failed
        // WRITE until all are answered; the next sends the CLOSE, which is
        // refused; after it the handle is closed.
        std::fs::create_dir(home.join("docs")).unwrap();
        let mut refused = 0;
        while file.shutdown().await.is_err() {
            refused += 1;
            assert!(refused <= 32, "more failures than requests sent");
        }
        assert!(refused > 0, "the CLOSE is refused");
        assert!(!home.join("docs/partial.bin").exists());
        assert!(
            std::fs::read_dir(home.join("docs"))
                .unwrap()
                .next()
                .is_none()
        );

        let transfer = transfers(&server, tollgate_domain::transfer::Direction::Upload)
            .await
            .into_iter()
            .find(|t| t.context.as_ref().unwrap().path == "/docs/partial.bin")
            .expect("the upload is on record");
        assert_eq!(
            transfer.state,
            Some(tollgate_domain::transfer::TransferState::Failed)
        );
        server
    })
    .await;
}

/// A download's SHA-256, computed beside the replies a batch at a time,
/// covers every byte in order, the last partial batch included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_records_the_digest_of_the_whole_file() {
    for_each_database(|server| async move {
        server.add_user("fay", &[]).await;
        let (_conn, session) = sftp(server.addr, "fay").await;
        // Several hashing batches and a part of one more.
        let data: Vec<u8> = (0..700_001u32).map(|i| (i % 251) as u8).collect();
        write_file(&session, "big.bin", &data).await;
        assert_eq!(session.read("big.bin").await.unwrap(), data);

        let downloads = transfers(&server, tollgate_domain::transfer::Direction::Download).await;
        assert_eq!(downloads.len(), 1, "{downloads:?}");
        assert_eq!(downloads[0].bytes, data.len() as u64);
        assert_eq!(downloads[0].sha256.as_deref(), Some(&sha256_hex(&data)[..]));
        server
    })
    .await;
}

/// `fsync@openssh.com` (OpenSSH's `put -f`) is offered; on an upload it
/// puts what was written so far on disk while the file stays invisible
/// until its close; on a download it has nothing to do; a handle that is
/// not an open file is refused; a small upload with no sync asked lands
/// whole at its close. The same whether or not uploads are synced at their
/// commit (`storage.sync_uploads`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_puts_an_upload_on_disk_before_its_close_shows_it() {
    for kind in crate::support::database_kinds() {
        for sync_uploads in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut config = crate::support::test_config(kind, dir.path()).await;
            config.storage.sync_uploads = sync_uploads;
            let server = TestServer::start_with(config, dir).await;
            fsync_an_upload(&server).await;
            server.stop().await;
        }
    }
}

/// A new user's home and a raw SFTP session of theirs (with the connection
/// carrying it), past its INIT, whose VERSION offered `extension`.
async fn raw_session_offering(
    server: &TestServer,
    user: &str,
    extension: &str,
) -> (
    std::path::PathBuf,
    crate::support::Connection,
    russh_sftp::client::RawSftpSession,
) {
    let home = server.add_user(user, &[]).await;
    let mut conn = connect(server.addr).await;
    assert!(login_password(&mut conn, user, PASSWORD).await);
    let raw = russh_sftp::client::RawSftpSession::new(sftp_channel(&conn).await.into_stream());
    let version = raw.init().await.unwrap();
    assert_eq!(
        version.extensions.get(extension).map(String::as_str),
        Some("1"),
        "{extension} offered"
    );
    (home, conn, raw)
}

async fn fsync_an_upload(server: &TestServer) {
    let (home, _conn, raw) =
        raw_session_offering(server, "faye", russh_sftp::extensions::FSYNC).await;

    let data: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
    let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
    let attrs = russh_sftp::protocol::FileAttributes::default();
    let handle = raw.open("synced.bin", flags, attrs).await.unwrap().handle;
    // Small writes, which the server may hold back to gather them.
    for (i, part) in data[..4000].chunks(1000).enumerate() {
        raw.write(&handle, (i * 1000) as u64, part.to_vec())
            .await
            .unwrap();
    }
    raw.fsync(&handle).await.unwrap();
    assert!(
        !home.join("synced.bin").exists(),
        "visible before its close"
    );
    let staged: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert_eq!(staged.len(), 1, "one staged upload");
    assert!(staged[0] == data[..4000], "the synced bytes are on disk");
    raw.write(&handle, 4000, data[4000..].to_vec())
        .await
        .unwrap();
    raw.close(&handle).await.unwrap();
    assert!(std::fs::read(home.join("synced.bin")).unwrap() == data);
    let completed = server.events_of("faye", "TransferCompleted").await;
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(
        completed[0].sha256.as_deref(),
        Some(sha256_hex(&data).as_str())
    );

    let attrs = russh_sftp::protocol::FileAttributes::default();
    let read = raw
        .open("synced.bin", OpenFlags::READ, attrs)
        .await
        .unwrap()
        .handle;
    raw.fsync(&read).await.unwrap();
    raw.close(&read).await.unwrap();
    let dir = raw.opendir(".").await.unwrap().handle;
    assert_eq!(refused(raw.fsync(&dir).await), StatusCode::Failure);
    raw.close(&dir).await.unwrap();
    assert_eq!(
        refused(raw.fsync("no-such-handle").await),
        StatusCode::Failure
    );

    // A small upload without a sync asked: created, written and renamed by
    // its close.
    let small = &data[..3000];
    let attrs = russh_sftp::protocol::FileAttributes::default();
    let handle = raw.open("small.bin", flags, attrs).await.unwrap().handle;
    for (i, part) in small.chunks(1000).enumerate() {
        raw.write(&handle, (i * 1000) as u64, part.to_vec())
            .await
            .unwrap();
    }
    let entries = || std::fs::read_dir(&home).unwrap().count();
    assert_eq!(entries(), 1, "nothing staged before the close");
    raw.close(&handle).await.unwrap();
    assert!(std::fs::read(home.join("small.bin")).unwrap() == small);
    assert_eq!(entries(), 2, "no staging file left");
    let small_ones: Vec<_> = server
        .events_of("faye", "TransferCompleted")
        .await
        .into_iter()
        .filter(|event| event.path.as_deref() == Some("/small.bin"))
        .collect();
    assert_eq!(small_ones.len(), 1, "{small_ones:?}");
    assert_eq!(
        small_ones[0].sha256.as_deref(),
        Some(sha256_hex(small).as_str())
    );
}

/// `limits@openssh.com` is offered and states the sizes OpenSSH's server
/// states, and requests of those sizes are served whole: OpenSSH's sftp and
/// scp size their reads and writes by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_extension_states_sizes_that_single_requests_can_use() {
    for_each_database(|server| async move {
        let (home, _conn, raw) =
            raw_session_offering(&server, "lena", russh_sftp::extensions::LIMITS).await;
        let limits = raw.limits().await.unwrap();
        assert_eq!(
            (
                limits.max_packet_len,
                limits.max_read_len,
                limits.max_write_len
            ),
            (256 * 1024, 255 * 1024, 255 * 1024)
        );
        assert!(limits.max_open_handles >= 64, "{limits:?}");

        // Two WRITEs of the largest size, then READs of the largest size.
        let size = limits.max_write_len as usize;
        let data: Vec<u8> = (0..2 * size).map(|i| (i % 253) as u8).collect();
        let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
        let attrs = russh_sftp::protocol::FileAttributes::default();
        let handle = raw.open("big.bin", flags, attrs).await.unwrap().handle;
        for (i, part) in data.chunks(size).enumerate() {
            let offset = (i * size) as u64;
            raw.write(&handle, offset, part.to_vec()).await.unwrap();
        }
        raw.close(&handle).await.unwrap();
        assert!(std::fs::read(home.join("big.bin")).unwrap() == data);

        let attrs = russh_sftp::protocol::FileAttributes::default();
        let handle = raw
            .open("big.bin", OpenFlags::READ, attrs)
            .await
            .unwrap()
            .handle;
        let len = limits.max_read_len as u32;
        let first = raw.read(&handle, 0, len).await.unwrap().data;
        let second = raw.read(&handle, u64::from(len), len).await.unwrap().data;
        assert_eq!((first.len(), second.len()), (size, size));
        assert!([first, second].concat() == data);
        raw.close(&handle).await.unwrap();
        server
    })
    .await;
}
