//! Tests of the parent module that need no SSH server; the behaviour
//! against a real OpenSSH server is in tests/sftp_proxy.rs.
use super::*;

#[test]
fn remote_paths_are_joined_under_the_root() {
    for (root, relative, expected) in [
        ("/srv/data", "a/b", "/srv/data/a/b"),
        ("/srv/data/", "a", "/srv/data/a"),
        ("/srv/data", "", "/srv/data"),
        ("/", "a/b", "/a/b"),
        ("/", "", "/"),
        ("//", "a", "/a"),
        ("homes/alice", "a", "homes/alice/a"),
        ("homes/alice", "", "homes/alice"),
        ("", "a", "./a"),
        ("", "", "."),
    ] {
        assert_eq!(
            remote_path(root, relative),
            expected,
            "{root:?} + {relative:?}"
        );
    }
}

#[test]
fn within_compares_whole_components() {
    assert!(within("/srv/data", "/srv/data"));
    assert!(within("/srv/data/a", "/srv/data"));
    assert!(!within("/srv/data2", "/srv/data"));
    assert!(!within("/srv", "/srv/data"));
    assert!(!within("/etc", "/srv/data"));
    assert!(within("/anything", "/"));
}

#[test]
fn ancestors_are_listed_outermost_first() {
    assert_eq!(ancestors("/a/b/c"), vec!["/a", "/a/b", "/a/b/c"]);
    assert_eq!(ancestors("a/b"), vec!["a", "a/b"]);
    assert_eq!(ancestors("/"), Vec::<String>::new());
    assert_eq!(ancestors("./x"), vec![".", "./x"]);
}

#[test]
fn file_kinds_come_from_the_mode_bits() {
    let attrs = |mode: u32| FileAttributes {
        permissions: Some(mode),
        size: Some(7),
        mtime: Some(1_600_000_000),
        atime: Some(1_500_000_000),
        ..FileAttributes::empty()
    };
    assert_eq!(kind_of(&attrs(0o040_755)), FileKind::Dir);
    assert_eq!(kind_of(&attrs(0o100_644)), FileKind::File);
    assert_eq!(kind_of(&attrs(0o120_777)), FileKind::Symlink);
    assert_eq!(kind_of(&attrs(0o010_644)), FileKind::Other);
    assert_eq!(kind_of(&FileAttributes::empty()), FileKind::Other);
    assert_eq!(
        meta_of(&attrs(0o104_755)),
        FileMeta {
            kind: FileKind::File,
            size: 7,
            mode: 0o4755,
            mtime: 1_600_000_000,
            atime: 1_500_000_000,
        }
    );
}

#[test]
fn times_outside_the_protocol_range_are_clamped() {
    assert_eq!(sftp_time(-5), 0);
    assert_eq!(sftp_time(1_600_000_000), 1_600_000_000);
    assert_eq!(sftp_time(i64::MAX), u32::MAX);
}

#[test]
fn status_codes_map_to_storage_kinds() {
    let status = |code: StatusCode| {
        SftpError::Status(russh_sftp::protocol::Status {
            id: 1,
            status_code: code,
            error_message: String::new(),
            language_tag: String::new(),
        })
    };
    assert_eq!(
        sftp_kind(&status(StatusCode::NoSuchFile)),
        StorageErrorKind::NotFound
    );
    assert_eq!(
        sftp_kind(&status(StatusCode::PermissionDenied)),
        StorageErrorKind::PermissionDenied
    );
    assert_eq!(
        sftp_kind(&status(StatusCode::Failure)),
        StorageErrorKind::Other
    );
    assert_eq!(
        sftp_kind(&status(StatusCode::OpUnsupported)),
        StorageErrorKind::Unsupported
    );
    assert_eq!(
        sftp_kind(&status(StatusCode::ConnectionLost)),
        StorageErrorKind::Unavailable
    );
    assert_eq!(
        sftp_kind(&SftpError::Timeout),
        StorageErrorKind::Unavailable
    );
    assert_eq!(
        sftp_kind(&SftpError::UnexpectedBehavior("session closed".into())),
        StorageErrorKind::Unavailable
    );
}

#[test]
fn debug_output_redacts_the_secrets() {
    let options = SftpOptions {
        host: "sftp.example.com".into(),
        port: 22,
        username: "partner".into(),
        password: Some("hunter2-password".into()),
        private_key: Some("-----BEGIN OPENSSH PRIVATE KEY-----secret".into()),
        host_key_fingerprint: "SHA256:abc".into(),
    };
    let text = format!("{:?}", SftpStorage::new(options));
    assert!(text.contains("sftp.example.com") && text.contains("partner"));
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("BEGIN OPENSSH"), "{text}");
}

#[test]
fn fingerprints_are_compared_without_padding_or_blanks() {
    assert_eq!(normalise_fingerprint(" SHA256:abcd= \n"), "SHA256:abcd");
}

fn options(port: u16) -> SftpOptions {
    SftpOptions {
        host: "127.0.0.1".into(),
        port,
        username: "nobody".into(),
        password: Some("wrong".into()),
        private_key: None,
        host_key_fingerprint: "SHA256:none".into(),
    }
}

#[tokio::test]
async fn a_server_that_hangs_up_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            drop(socket);
        }
    });
    let storage = SftpStorage::new(options(port));
    let err = storage.ensure_root("/tmp").await.unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Unavailable, "{:?}", err.source);
    // The next operation tries again and fails the same way.
    let err = storage
        .stat("/tmp", &VirtualPath::parse("/a").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Unavailable, "{:?}", err.source);
    // Operations waiting together share the outcome of one attempt.
    let path = VirtualPath::parse("/a").unwrap();
    let results = futures::future::join_all((0..4).map(|_| storage.stat("/tmp", &path))).await;
    for result in results {
        let err = result.unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Unavailable, "{:?}", err.source);
    }
    server.abort();
}
