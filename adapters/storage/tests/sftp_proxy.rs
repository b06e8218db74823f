//! The SFTP proxy backend against a real OpenSSH server: the storage
//! contract, host key and credential refusals, an unreachable server, one
//! shared connection and reconnection after it breaks, and symlinks.
//!
//! The server is named by `TOLLGATE_TEST_SSHD`, as `scripts/sshd_peer.sh
//! start DIR` prints it:
//! `HOST:PORT|USER|PRIVATE_KEY_PATH|SHA256:FINGERPRINT|LOGIN_DIR`, where
//! LOGIN_DIR is the absolute path of the account's SFTP login directory,
//! in which the tests create (and remove) their own directories. When it
//! is unset the tests are skipped with a note, unless
//! `TOLLGATE_TEST_REQUIRE_SERVICES=1`, which makes it a failure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tollgate_domain::VirtualPath;
use tollgate_ports::outbound::{FileKind, FileStorage, StorageErrorKind, WriteMode};
use tollgate_storage::contract::{self, LARGE_FILE};
use tollgate_storage::{SftpOptions, SftpStorage};

fn vp(text: &str) -> VirtualPath {
    VirtualPath::parse(text).unwrap()
}

/// The server the tests use.
struct Server {
    host: String,
    port: u16,
    user: String,
    key: String,
    fingerprint: String,
    login_dir: String,
}

impl Server {
    fn options(&self) -> SftpOptions {
        SftpOptions {
            host: self.host.clone(),
            port: self.port,
            username: self.user.clone(),
            password: None,
            private_key: Some(self.key.clone()),
            host_key_fingerprint: self.fingerprint.clone(),
        }
    }

    /// A fresh directory name in the login directory, and its absolute path.
    fn fresh_root(&self, what: &str) -> (String, String) {
        let name = format!("{what}-{}", uuid::Uuid::new_v4());
        let absolute = format!("{}/{name}", self.login_dir.trim_end_matches('/'));
        (name, absolute)
    }
}

/// The server named by `TOLLGATE_TEST_SSHD`, or `None` (skipped) when unset.
fn server() -> Option<Server> {
    let Some(spec) = std::env::var("TOLLGATE_TEST_SSHD")
        .ok()
        .filter(|value| !value.is_empty())
    else {
        if std::env::var("TOLLGATE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("TOLLGATE_TEST_SSHD is required (scripts/sshd_peer.sh start DIR)");
        }
        eprintln!("skipped: the SFTP proxy (set TOLLGATE_TEST_SSHD; see scripts/sshd_peer.sh)");
        return None;
    };
    let fields: Vec<&str> = spec.split('|').collect();
    let [address, user, key_path, fingerprint, login_dir] = fields[..] else {
        panic!("TOLLGATE_TEST_SSHD: expected HOST:PORT|USER|KEY|FINGERPRINT|LOGIN_DIR, got {spec}");
    };
    let (host, port) = address
        .rsplit_once(':')
        .expect("TOLLGATE_TEST_SSHD: HOST:PORT");
    let key = std::fs::read_to_string(key_path)
        .unwrap_or_else(|err| panic!("TOLLGATE_TEST_SSHD: cannot read the key {key_path}: {err}"));
    Some(Server {
        host: host.to_string(),
        port: port.parse().expect("TOLLGATE_TEST_SSHD: a port number"),
        user: user.to_string(),
        key,
        fingerprint: fingerprint.to_string(),
        login_dir: login_dir.to_string(),
    })
}

/// Removes `path` and everything under it through the port.
async fn remove_tree(storage: &dyn FileStorage, root: &str, path: &VirtualPath) {
    let mut pending = vec![(path.clone(), false)];
    while let Some((dir, emptied)) = pending.pop() {
        if emptied {
            storage
                .rmdir(root, &dir)
                .await
                .expect("rmdir while cleaning up");
            continue;
        }
        pending.push((dir.clone(), true));
        for entry in storage
            .list(root, &dir)
            .await
            .expect("list while cleaning up")
        {
            let child = dir.resolve(&entry.name).unwrap();
            if entry.meta.kind == FileKind::Dir {
                pending.push((child, false));
            } else {
                storage
                    .remove(root, &child)
                    .await
                    .expect("remove while cleaning up");
            }
        }
    }
}

/// Removes a test's root directory from the login directory.
async fn remove_root(server: &Server, storage: &SftpStorage, name: &str) {
    remove_tree(storage, &server.login_dir, &vp(name)).await;
}

#[tokio::test]
async fn the_contract_holds_against_openssh() {
    let Some(server) = server() else { return };
    let storage = SftpStorage::new(server.options());
    let (name, root) = server.fresh_root("contract");
    let started = Instant::now();
    contract::run(&storage, &root).await;
    eprintln!(
        "the contract took {:.1?} against OpenSSH",
        started.elapsed()
    );
    remove_root(&server, &storage, &name).await;
}

#[tokio::test]
async fn a_large_file_goes_up_and_down_at_link_speed() {
    let Some(server) = server() else { return };
    let storage = SftpStorage::new(server.options());
    let (name, root) = server.fresh_root("large");
    storage.ensure_root(&root).await.unwrap();
    let data = contract::pattern(9, LARGE_FILE);
    let mib = LARGE_FILE as f64 / (1024.0 * 1024.0);

    let started = Instant::now();
    contract::put(&storage, &root, "/large.bin", &data).await;
    let up = started.elapsed();
    let started = Instant::now();
    let back = contract::get(&storage, &root, "/large.bin", 32_768).await;
    let down = started.elapsed();
    assert!(back == data, "the large file reads back unchanged");
    eprintln!(
        "{mib:.1} MiB up in {up:.2?} ({:.0} MiB/s), down in {down:.2?} ({:.0} MiB/s)",
        mib / up.as_secs_f64(),
        mib / down.as_secs_f64()
    );
    remove_root(&server, &storage, &name).await;
}

#[tokio::test]
async fn a_relative_root_lies_in_the_login_directory() {
    let Some(server) = server() else { return };
    let storage = SftpStorage::new(server.options());
    let (name, _) = server.fresh_root("relative");
    let root = format!("{name}/inner");
    storage.ensure_root(&root).await.unwrap();
    contract::put(&storage, &root, "/file.txt", b"relative").await;
    let meta = storage
        .stat(&server.login_dir, &vp(&format!("/{name}/inner/file.txt")))
        .await
        .unwrap();
    assert_eq!((meta.kind, meta.size), (FileKind::File, 8));
    // Creating an existing root again is fine.
    storage.ensure_root(&root).await.unwrap();
    remove_root(&server, &storage, &name).await;
}

#[tokio::test]
async fn a_server_with_another_host_key_is_refused() {
    let Some(server) = server() else { return };
    let mut options = server.options();
    options.host_key_fingerprint = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
    let storage = SftpStorage::new(options);
    let err = storage.ensure_root(&server.login_dir).await.unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::PermissionDenied);
    let message = err.source.expect("a cause").to_string();
    assert!(
        message.contains(&server.fingerprint),
        "the message names the key presented: {message}"
    );
}

#[tokio::test]
async fn a_wrong_key_or_password_is_refused() {
    let Some(server) = server() else { return };
    let other_key =
        russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
            .unwrap()
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap()
            .to_string();
    let mut with_key = server.options();
    with_key.private_key = Some(other_key);
    let mut with_password = server.options();
    with_password.private_key = None;
    with_password.password = Some("not-the-password".to_string());
    let mut with_garbage = server.options();
    with_garbage.private_key = Some("not a key".to_string());
    for (what, options) in [
        ("another key", with_key),
        ("a wrong password", with_password),
        ("an unreadable key", with_garbage),
    ] {
        let storage = SftpStorage::new(options);
        let err = storage.ensure_root(&server.login_dir).await.unwrap_err();
        assert_eq!(
            err.kind,
            StorageErrorKind::PermissionDenied,
            "{what}: {:?}",
            err.source
        );
    }
}

#[tokio::test]
async fn a_closed_port_is_unavailable_at_once() {
    let Some(server) = server() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut options = server.options();
    options.host = "127.0.0.1".to_string();
    options.port = port;
    let storage = SftpStorage::new(options);
    // Far longer than a refused connection takes; only a hang reaches it.
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        storage.stat(&server.login_dir, &vp("/x")),
    )
    .await
    .expect("a closed port answers at once")
    .unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Unavailable, "{:?}", err.source);
}

/// A TCP relay to the server that counts connections and can cut them.
struct Relay {
    port: u16,
    accepted: Arc<Mutex<Vec<JoinHandle<()>>>>,
    listener: JoinHandle<()>,
}

impl Relay {
    async fn start(host: &str, port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let target = format!("{host}:{port}");
        let connections = accepted.clone();
        let listener = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    let mut outbound = TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                connections.lock().unwrap().push(relay);
            }
        });
        Relay {
            port: relay_port,
            accepted,
            listener,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// Cuts every relayed connection, as a network failure would.
    fn cut(&self) {
        for relay in self.accepted.lock().unwrap().iter() {
            relay.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.listener.abort();
    }
}

#[tokio::test]
async fn operations_share_one_connection_and_reconnect_after_it_breaks() {
    let Some(server) = server() else { return };
    let relay = Relay::start(&server.host, server.port).await;
    let mut options = server.options();
    options.host = "127.0.0.1".to_string();
    options.port = relay.port;
    let storage = SftpStorage::new(options);
    let (name, root) = server.fresh_root("reconnect");
    storage.ensure_root(&root).await.unwrap();
    let data = contract::pattern(3, 200_000);
    contract::put(&storage, &root, "/file.bin", &data).await;
    let file = vp("/file.bin");
    let stats = futures::future::join_all((0..16).map(|_| storage.stat(&root, &file))).await;
    assert!(stats.iter().all(|it| it.is_ok()), "{stats:?}");
    assert_eq!(relay.connections(), 1, "one connection carries everything");

    // A read in flight when the connection breaks fails as unavailable.
    let mut reader = storage.open_read(&root, &vp("/file.bin")).await.unwrap();
    relay.cut();
    let err = reader.read_at(0, 65_536).await.unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Unavailable, "{:?}", err.source);
    drop(reader);

    // The next operation connects again.
    assert_eq!(
        contract::get(&storage, &root, "/file.bin", 65_536).await,
        data
    );
    assert_eq!(relay.connections(), 2, "one new connection");
    drop(relay);

    let storage = SftpStorage::new(server.options());
    remove_root(&server, &storage, &name).await;
}

#[tokio::test]
async fn symlinks_are_described_and_never_followed() {
    let Some(server) = server() else { return };
    // The links are made on the server's disk, so the server must be on
    // this machine (as scripts/sshd_peer.sh starts it).
    if !std::path::Path::new(&server.login_dir).is_dir() {
        eprintln!("skipped: symlinks (the server's login directory is not on this machine)");
        return;
    }
    let storage = SftpStorage::new(server.options());
    let (name, root) = server.fresh_root("links");
    let (outside_name, outside) = server.fresh_root("outside");
    storage.ensure_root(&root).await.unwrap();
    storage.ensure_root(&outside).await.unwrap();
    contract::put(&storage, &outside, "/secret", b"secret").await;
    storage.mkdir(&root, &vp("/inner")).await.unwrap();
    contract::put(&storage, &root, "/inner/file", b"inside").await;
    std::os::unix::fs::symlink(&outside, format!("{root}/out")).unwrap();
    std::os::unix::fs::symlink(format!("{outside}/secret"), format!("{root}/secret-link")).unwrap();
    std::os::unix::fs::symlink(format!("{root}/inner"), format!("{root}/inner-link")).unwrap();

    let meta = storage.stat(&root, &vp("/secret-link")).await.unwrap();
    assert_eq!(meta.kind, FileKind::Symlink, "a symlink is described");
    let listed: Vec<_> = storage
        .list(&root, &vp("/"))
        .await
        .unwrap()
        .into_iter()
        .map(|entry| (entry.name, entry.meta.kind))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("inner".to_string(), FileKind::Dir),
            ("inner-link".to_string(), FileKind::Symlink),
            ("out".to_string(), FileKind::Symlink),
            ("secret-link".to_string(), FileKind::Symlink),
        ]
    );
    let denied = StorageErrorKind::PermissionDenied;
    assert_eq!(
        storage
            .open_read(&root, &vp("/secret-link"))
            .await
            .err()
            .unwrap()
            .kind,
        denied
    );
    assert_eq!(
        storage
            .open_write(&root, &vp("/secret-link"), WriteMode::InPlace)
            .await
            .err()
            .unwrap()
            .kind,
        denied
    );
    assert_eq!(
        storage
            .set_times(&root, &vp("/secret-link"), 1, 1)
            .await
            .unwrap_err()
            .kind,
        denied
    );
    assert_eq!(
        storage
            .open_read(&root, &vp("/out/secret"))
            .await
            .err()
            .unwrap()
            .kind,
        denied
    );
    assert_eq!(
        storage
            .open_write(&root, &vp("/out/new"), WriteMode::Replace)
            .await
            .err()
            .unwrap()
            .kind,
        denied
    );
    assert_eq!(
        storage.list(&root, &vp("/out")).await.unwrap_err().kind,
        denied
    );
    // A link that stays inside the root may be passed through.
    assert_eq!(
        contract::get(&storage, &root, "/inner-link/file", 4096).await,
        b"inside"
    );
    // Staging names are unreachable.
    assert_eq!(
        storage
            .stat(&root, &vp("/.tollgate-part-x"))
            .await
            .unwrap_err()
            .kind,
        denied
    );

    remove_root(&server, &storage, &name).await;
    remove_root(&server, &storage, &outside_name).await;
}
