//! FTP, explicit and implicit FTPS with a real client (suppaftp, rustls):
//! uploads, downloads, resume, append, rename, delete, directories,
//! listings, refusals, per-user TLS requirements, and the events they
//! record.

use std::io::Cursor;
use std::sync::Arc;

use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpStream, Mode, RustlsConnector, RustlsFtpStream, Status};

use crate::support::{
    PASSWORD, TestServer, database_kinds, pem_certificates, self_signed, sha256_hex, test_config,
};

fn login(addr: std::net::SocketAddr, user: &str) -> FtpStream {
    let mut ftp = FtpStream::connect(addr).expect("ftp connection");
    ftp.login(user, PASSWORD).expect("ftp login");
    ftp.transfer_type(FileType::Binary).expect("binary mode");
    ftp
}

/// A client TLS configuration trusting the server's self-signed `pem`.
fn trusting(pem: &str) -> RustlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_certificates(pem) {
        roots.add(der).unwrap();
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    RustlsConnector::from(Arc::new(tls))
}

/// A server whose FTP offers TLS with a fresh self-signed certificate,
/// and that certificate's PEM.
async fn ftps_server(require_tls: bool, implicit: bool) -> (TestServer, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config("sqlite", dir.path()).await;
    let (cert_path, key_path, pem) = self_signed(dir.path());
    config.ftp.tls_cert = Some(cert_path);
    config.ftp.tls_key = Some(key_path);
    config.ftp.require_tls = require_tls;
    if implicit {
        config.ftp.implicit_listen = "127.0.0.1:0".to_string();
    }
    (TestServer::start_with(config, dir).await, pem)
}

/// Waits for `count` completed transfers of `user` and checks they were
/// all recorded as FTPS.
async fn assert_transfers_over_ftps(server: &TestServer, user: &str, count: usize) {
    let completed = server
        .wait_for_events(user, "TransferCompleted", count)
        .await;
    assert!(
        completed
            .iter()
            .all(|e| e.protocol.as_deref() == Some("ftps")),
        "{completed:?}"
    );
}

fn code(res: Result<impl std::fmt::Debug, FtpError>) -> u32 {
    match res {
        // From the reply line itself: codes the client has no name for
        // (534) are not in its status table.
        Err(FtpError::UnexpectedResponse(response)) => String::from_utf8_lossy(&response.body)
            .get(..3)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("a reply without a code: {response:?}")),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn ftp_clients_transfer_files_with_the_same_rules_and_events() {
    for kind in database_kinds() {
        let server = TestServer::start(kind).await;
        server
            .app()
            .create_policy(
                "test",
                "inbox",
                &["/=*".to_string(), "/ro=list,download".to_string()],
            )
            .await
            .unwrap();
        let home = server.add_user("alice", &["inbox"]).await;
        std::fs::create_dir_all(home.join("ro")).unwrap();
        std::fs::write(home.join("ro/keep.txt"), b"read only").unwrap();
        let addr = server.ftp_addr;
        let data: Vec<u8> = (0..1024 * 1024 + 5).map(|i| (i * 13 % 251) as u8).collect();
        let expected = data.clone();
        tokio::task::spawn_blocking(move || {
            let mut ftp = login(addr, "alice");
            assert_eq!(
                ftp.put_file("big.bin", &mut Cursor::new(&data)).unwrap(),
                data.len() as u64
            );
            assert_eq!(ftp.size("big.bin").unwrap(), data.len());
            ftp.mdtm("big.bin").unwrap();
            assert_eq!(ftp.retr_as_buffer("big.bin").unwrap().into_inner(), data);
            // REST + RETR: the rest of the file from an offset.
            ftp.resume_transfer(1000).unwrap();
            assert_eq!(
                ftp.retr_as_buffer("big.bin").unwrap().into_inner(),
                &data[1000..]
            );
            // REST + STOR: complete a partial upload.
            ftp.put_file("resumed.bin", &mut Cursor::new(&data[..4096]))
                .unwrap();
            ftp.resume_transfer(4096).unwrap();
            ftp.put_file("resumed.bin", &mut Cursor::new(&data[4096..]))
                .unwrap();
            assert_eq!(
                ftp.retr_as_buffer("resumed.bin").unwrap().into_inner(),
                data
            );
            // APPE appends.
            ftp.put_file("log.txt", &mut Cursor::new(b"one\n")).unwrap();
            ftp.append_file("log.txt", &mut Cursor::new(b"two\n"))
                .unwrap();
            assert_eq!(
                ftp.retr_as_buffer("log.txt").unwrap().into_inner(),
                b"one\ntwo\n"
            );
            ftp.mkdir("in").unwrap();
            ftp.cwd("in").unwrap();
            assert_eq!(ftp.pwd().unwrap(), "/in");
            ftp.cdup().unwrap();
            ftp.rename("log.txt", "in/log.txt").unwrap();
            let names = ftp.nlst(Some("in")).unwrap();
            assert!(names.iter().any(|n| n.ends_with("log.txt")), "{names:?}");
            let listing = ftp.list(None).unwrap();
            assert!(listing.iter().any(|l| l.contains("big.bin")), "{listing:?}");
            let mlsd = ftp.mlsd(None).unwrap();
            assert!(
                mlsd.iter()
                    .any(|l| l.contains("type=dir") && l.ends_with("in")),
                "{mlsd:?}"
            );
            ftp.rm("in/log.txt").unwrap();
            ftp.rmdir("in").unwrap();

            // Refusals, in FTP's own terms, and the connection goes on.
            assert_eq!(
                code(ftp.put_file("ro/new.txt", &mut Cursor::new(b"x"))),
                550
            );
            assert_eq!(code(ftp.rm("ro/keep.txt")), 550);
            let escape = code(ftp.retr_as_buffer("../bob/secret"));
            assert!(escape == 550 || escape == 553, "{escape}");
            assert_eq!(code(ftp.retr_as_buffer("missing.bin")), 550);
            assert!(ftp.rmdir("ro").is_err());
            ftp.set_mode(Mode::Active);
            assert!(ftp.list(None).is_err(), "active mode (PORT) is refused");
            ftp.set_mode(Mode::Passive);
            assert_eq!(
                ftp.retr_as_buffer("big.bin").unwrap().into_inner().len(),
                data.len()
            );
            ftp.quit().unwrap();

            let mut wrong = FtpStream::connect(addr).unwrap();
            assert_eq!(code(wrong.login("alice", "wrong")), 530);
        })
        .await
        .unwrap();

        assert_eq!(std::fs::read(home.join("big.bin")).unwrap(), expected);
        assert!(!home.join("ro/new.txt").exists());
        let completed = server
            .wait_for_events("alice", "TransferCompleted", 8)
            .await;
        assert!(
            completed
                .iter()
                .all(|e| e.protocol.as_deref() == Some("ftp")),
            "{completed:?}"
        );
        assert!(
            completed
                .iter()
                .any(|e| e.sha256.as_deref() == Some(&sha256_hex(&expected)[..]))
        );
        assert_eq!(server.events_of("alice", "TransferDenied").await.len(), 1);
        assert!(
            !server
                .events_of("alice", "FileOperationDenied")
                .await
                .is_empty()
        );
        assert_eq!(server.wait_for_event("alice", "LoginFailed").await.len(), 1);
        server.wait_for_event("alice", "SessionClosed").await;
        server.stop().await;
    }
}

#[tokio::test]
async fn explicit_ftps_protects_the_login_and_the_data() {
    let (server, pem) = ftps_server(true, false).await;
    let home = server.add_user("alice", &[]).await;
    let addr = server.ftp_addr;
    tokio::task::spawn_blocking(move || {
        // Without TLS the login is refused.
        let mut plain = FtpStream::connect(addr).unwrap();
        assert!(plain.login("alice", PASSWORD).is_err());
        let tls = trusting(&pem);
        let ftps = RustlsFtpStream::connect(addr).unwrap();
        let mut ftps = ftps.into_secure(tls, "localhost").unwrap();
        ftps.login("alice", PASSWORD).unwrap();
        ftps.transfer_type(FileType::Binary).unwrap();
        ftps.put_file("secret.txt", &mut Cursor::new(b"over tls"))
            .unwrap();
        assert_eq!(
            ftps.retr_as_buffer("secret.txt").unwrap().into_inner(),
            b"over tls"
        );
        ftps.quit().unwrap();
    })
    .await
    .unwrap();
    assert_eq!(std::fs::read(home.join("secret.txt")).unwrap(), b"over tls");
    assert_transfers_over_ftps(&server, "alice", 2).await;
    server.stop().await;
}

#[tokio::test]
async fn implicit_ftps_speaks_tls_from_the_first_byte() {
    let (server, pem) = ftps_server(false, true).await;
    let home = server.add_user("alice", &[]).await;
    let addr = server.ftps_addr.expect("implicit FTPS listens");
    tokio::task::spawn_blocking(move || {
        let mut ftps =
            RustlsFtpStream::connect_secure_implicit(addr, trusting(&pem), "localhost").unwrap();
        ftps.login("alice", PASSWORD).unwrap();
        ftps.custom_command("PBSZ 0", &[Status::CommandOk]).unwrap();
        ftps.custom_command("PROT P", &[Status::CommandOk]).unwrap();
        ftps.transfer_type(FileType::Binary).unwrap();
        ftps.put_file("implicit.txt", &mut Cursor::new(b"tls all along"))
            .unwrap();
        assert_eq!(
            ftps.retr_as_buffer("implicit.txt").unwrap().into_inner(),
            b"tls all along"
        );
        assert_eq!(ftps.nlst(None).unwrap(), vec!["implicit.txt".to_string()]);
        ftps.quit().unwrap();
        // A client speaking plain FTP to the implicit port gets no
        // greeting it can read: the server waits for a TLS handshake.
        let mut raw = std::net::TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        use std::io::Read;
        assert!(
            !matches!(raw.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"220")),
            "a plain greeting on the implicit port"
        );
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(home.join("implicit.txt")).unwrap(),
        b"tls all along"
    );
    let logins = server.wait_for_event("alice", "LoginSucceeded").await;
    assert_eq!(logins[0].protocol.as_deref(), Some("ftps"), "{logins:?}");
    assert_transfers_over_ftps(&server, "alice", 2).await;
    server.stop().await;
}

#[tokio::test]
async fn a_user_who_requires_tls_cannot_use_plain_ftp() {
    let (server, pem) = ftps_server(false, false).await;
    let home = server.add_user("alice", &[]).await;
    server.add_user("bob", &[]).await;
    server
        .app()
        .set_user_ftp_require_tls("test", "alice", true)
        .await
        .unwrap();
    let addr = server.ftp_addr;
    tokio::task::spawn_blocking(move || {
        // Bob does not need TLS; Alice is refused in plain text.
        login(addr, "bob").quit().unwrap();
        let mut plain = FtpStream::connect(addr).unwrap();
        assert_eq!(code(plain.login("alice", PASSWORD)), 530);

        // Over TLS she logs in, but a clear data channel is refused on
        // PASV and EPSV alike until she asks for PROT P.
        let mut ftps = RustlsFtpStream::connect(addr)
            .unwrap()
            .into_secure(trusting(&pem), "localhost")
            .unwrap();
        ftps.login("alice", PASSWORD).unwrap();
        ftps.transfer_type(FileType::Binary).unwrap();
        ftps.custom_command("PROT C", &[Status::CommandOk]).unwrap();
        assert_eq!(
            code(ftps.custom_command("PASV", &[Status::PassiveMode])),
            534
        );
        assert_eq!(
            code(ftps.custom_command("EPSV", &[Status::ExtendedPassiveMode])),
            534
        );
        ftps.custom_command("PROT P", &[Status::CommandOk]).unwrap();
        ftps.put_file("private.txt", &mut Cursor::new(b"protected"))
            .unwrap();
        ftps.quit().unwrap();
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(home.join("private.txt")).unwrap(),
        b"protected"
    );
    let failed = server.wait_for_event("alice", "LoginFailed").await;
    assert_eq!(failed[0].protocol.as_deref(), Some("ftp"), "{failed:?}");
    assert_eq!(
        failed[0].detail.as_deref(),
        Some("tls required"),
        "{failed:?}"
    );
    let changed = server.events_of("alice", "UserFtpSecurityChanged").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    server.stop().await;
}

#[tokio::test]
async fn bad_ftp_input_gets_ftp_replies_and_the_connection_goes_on() {
    let server = TestServer::start("sqlite").await;
    let home = server.add_user("alice", &[]).await;
    std::fs::write(home.join("kept.txt"), b"kept").unwrap();
    let addr = server.ftp_addr;
    tokio::task::spawn_blocking(move || {
        use suppaftp::Status;
        let any = [
            Status::CommandNotImplemented,
            Status::BadCommand,
            Status::NotLoggedIn,
            Status::BadArguments,
            Status::NotImplemented,
            Status::FileUnavailable,
            Status::BadFilename,
        ];
        let code = |res: Result<suppaftp::types::Response, FtpError>| match res {
            Ok(response) => response.status.code(),
            Err(FtpError::UnexpectedResponse(response)) => response.status.code(),
            Err(other) => panic!("{other:?}"),
        };
        // Before login, file commands are refused with 530.
        let mut ftp = FtpStream::connect(addr).unwrap();
        assert_eq!(code(ftp.custom_command("RETR kept.txt", &any)), 530);
        assert_eq!(code(ftp.custom_command("LIST", &any)), 530);
        ftp.login("alice", PASSWORD).unwrap();
        // Unknown commands and absurd arguments: 5xx, and the session continues.
        let unknown = code(ftp.custom_command("FROBNICATE now", &any));
        assert!((500..=502).contains(&unknown), "{unknown}");
        let huge = format!("CWD {}", "a/".repeat(4000));
        let reply = code(ftp.custom_command(huge, &any));
        assert!((500..=553).contains(&reply), "{reply}");
        let nul = code(ftp.custom_command("DELE a\u{0}b", &any));
        assert!((500..=553).contains(&nul), "{nul}");
        ftp.transfer_type(FileType::Binary).unwrap();
        assert_eq!(
            ftp.retr_as_buffer("kept.txt").unwrap().into_inner(),
            b"kept"
        );
        ftp.quit().unwrap();
    })
    .await
    .unwrap();
    server.stop().await;
}
