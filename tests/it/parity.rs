//! One table of scenarios, run over SFTP, FTP, FTPS, WebDAV and the HTTP
//! file API against one server with real clients: each protocol must give
//! the same outcome and record the same events (only `protocol` differs).

use std::io::{Cursor, Write};
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use suppaftp::types::FileType;
use suppaftp::{RustlsConnector, RustlsFtpStream};
use tokio::io::AsyncWriteExt;
use tollgate_application::EventFilter;

use crate::support::{PASSWORD, TestServer, pem_certificates, self_signed, sftp, test_config};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Sftp,
    Ftp,
    Ftps,
    Webdav,
    Http,
}

const ALL: [Proto; 5] = [
    Proto::Sftp,
    Proto::Ftp,
    Proto::Ftps,
    Proto::Webdav,
    Proto::Http,
];

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Sftp => "sftp",
            Proto::Ftp => "ftp",
            Proto::Ftps => "ftps",
            Proto::Webdav => "webdav",
            Proto::Http => "http",
        }
    }

    fn user(self) -> String {
        format!("p-{}", self.name())
    }
}

/// What a step did, in protocol-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Content(Vec<u8>),
    Names(Vec<String>),
    Refused,
}

/// The steps of the scenario table.
#[derive(Debug, Clone, Copy)]
enum Step {
    Mkdir(&'static str),
    Upload(&'static str, usize),
    List(&'static str),
    Download(&'static str),
    Resume(&'static str, usize),
    Rename(&'static str, &'static str),
    Delete(&'static str),
    DeniedUpload(&'static str),
    Traversal(&'static str),
    DroppedUpload(&'static str),
}

const SCENARIO: [Step; 11] = [
    Step::Mkdir("/dir"),
    Step::Upload("/dir/f.bin", 300_000),
    Step::List("/dir"),
    Step::Download("/dir/f.bin"),
    Step::Resume("/dir/r.bin", 100_000),
    Step::Download("/dir/r.bin"),
    Step::Rename("/dir/f.bin", "/dir/g.bin"),
    Step::Delete("/dir/g.bin"),
    Step::DeniedUpload("/ro/x.bin"),
    Step::Traversal("/../secret.txt"),
    Step::DroppedUpload("/dir/partial.bin"),
];

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}

struct Env {
    server: TestServer,
    http: reqwest::Client,
    base: String,
    ftps_roots: Arc<rustls::ClientConfig>,
}

impl Env {
    async fn token(&self, user: &str) -> String {
        let res = self
            .http
            .post(format!("{}/api/v1/token", self.base))
            .basic_auth(user, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        format!("Bearer {}", body["access_token"].as_str().unwrap())
    }

    async fn run(&self, proto: Proto, step: Step) -> Outcome {
        if !detects_dropped_uploads(proto) && matches!(step, Step::DroppedUpload(_)) {
            return Outcome::Done;
        }
        match proto {
            Proto::Sftp => self.sftp(proto, step).await,
            Proto::Ftp | Proto::Ftps => self.ftp(proto, step).await,
            Proto::Webdav => self.webdav(proto, step).await,
            Proto::Http => self.http_api(proto, step).await,
        }
    }

    async fn sftp(&self, proto: Proto, step: Step) -> Outcome {
        let (conn, session) = sftp(self.server.addr, &proto.user()).await;
        let refused = |res: Result<_, _>| match res {
            Ok(_) => Outcome::Done,
            Err(_) => Outcome::Refused,
        };
        let outcome = match step {
            Step::Mkdir(p) => refused(session.create_dir(p).await),
            Step::Upload(p, _) | Step::DeniedUpload(p) => match session.create(p).await {
                Ok(mut file) => {
                    file.write_all(&data(n_of(step).max(1))).await.unwrap();
                    file.shutdown().await.unwrap();
                    Outcome::Done
                }
                Err(_) => Outcome::Refused,
            },
            Step::List(p) => match session.read_dir(p).await {
                Ok(entries) => Outcome::Names(entries.map(|e| e.file_name()).collect()),
                Err(_) => Outcome::Refused,
            },
            Step::Download(p) | Step::Traversal(p) => match session.read(p).await {
                Ok(bytes) => Outcome::Content(bytes),
                Err(_) => Outcome::Refused,
            },
            Step::Resume(p, n) => {
                let all = data(n);
                let mut file = session.create(p).await.unwrap();
                file.write_all(&all[..n / 2]).await.unwrap();
                file.shutdown().await.unwrap();
                let mut file = session
                    .open_with_flags(p, russh_sftp::protocol::OpenFlags::WRITE)
                    .await
                    .unwrap();
                tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start((n / 2) as u64))
                    .await
                    .unwrap();
                file.write_all(&all[n / 2..]).await.unwrap();
                file.shutdown().await.unwrap();
                Outcome::Done
            }
            Step::Rename(a, b) => refused(session.rename(a, b).await),
            Step::Delete(p) => refused(session.remove_file(p).await),
            Step::DroppedUpload(p) => {
                let mut file = session.create(p).await.unwrap();
                file.write_all(&data(50_000)).await.unwrap();
                file.flush().await.unwrap();
                std::mem::forget(file);
                conn.disconnect(russh::Disconnect::ByApplication, "", "")
                    .await
                    .unwrap();
                return Outcome::Done;
            }
        };
        drop(session);
        let _ = conn
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
        outcome
    }

    async fn ftp(&self, proto: Proto, step: Step) -> Outcome {
        let addr = self.server.ftp_addr;
        let tls = (proto == Proto::Ftps).then(|| self.ftps_roots.clone());
        let user = proto.user();
        tokio::task::spawn_blocking(move || {
            let ftp = RustlsFtpStream::connect(addr).unwrap();
            let mut ftp = match tls {
                Some(config) => ftp
                    .into_secure(RustlsConnector::from(config), "localhost")
                    .unwrap_or_else(|e| panic!("{step:?}: {e}")),
                None => ftp,
            };
            ftp.login(user.as_str(), PASSWORD).unwrap();
            ftp.transfer_type(FileType::Binary).unwrap();
            fn refused<T>(res: Result<T, suppaftp::FtpError>) -> Outcome {
                match res {
                    Ok(_) => Outcome::Done,
                    Err(_) => Outcome::Refused,
                }
            }
            let outcome = match step {
                Step::Mkdir(p) => refused(ftp.mkdir(p)),
                Step::Upload(p, _) | Step::DeniedUpload(p) => {
                    refused(ftp.put_file(p, &mut Cursor::new(data(n_of(step).max(1)))))
                }
                Step::List(p) => match ftp.nlst(Some(p)) {
                    Ok(names) => Outcome::Names(
                        names
                            .into_iter()
                            .map(|n| n.rsplit('/').next().unwrap_or_default().to_string())
                            .collect(),
                    ),
                    Err(_) => Outcome::Refused,
                },
                Step::Download(p) | Step::Traversal(p) => match ftp.retr_as_buffer(p) {
                    Ok(buf) => Outcome::Content(buf.into_inner()),
                    Err(_) => Outcome::Refused,
                },
                Step::Resume(p, n) => {
                    let all = data(n);
                    ftp.put_file(p, &mut Cursor::new(&all[..n / 2])).unwrap();
                    ftp.resume_transfer(n / 2).unwrap();
                    ftp.put_file(p, &mut Cursor::new(&all[n / 2..])).unwrap();
                    Outcome::Done
                }
                Step::Rename(a, b) => refused(ftp.rename(a, b)),
                Step::Delete(p) => refused(ftp.rm(p)),
                Step::DroppedUpload(p) => {
                    let mut stream = ftp.put_with_stream(p).unwrap();
                    stream.write_all(&data(50_000)).unwrap();
                    stream.flush().unwrap();
                    // The client vanishes: its control connection goes while
                    // the data connection is mid-file. (A data connection
                    // that closes cleanly is, in FTP, the end of the file.)
                    drop(ftp);
                    std::mem::forget(stream);
                    return Outcome::Done;
                }
            };
            let _ = ftp.quit();
            outcome
        })
        .await
        .unwrap()
    }

    async fn webdav(&self, proto: Proto, step: Step) -> Outcome {
        let url = |p: &str| format!("{}/dav{p}", self.base);
        let req = |method: &str, p: &str| {
            self.http
                .request(Method::from_bytes(method.as_bytes()).unwrap(), url(p))
                .basic_auth(proto.user(), Some(PASSWORD))
        };
        self.http_outcome(proto, step, |kind, p| match kind {
            Op::Mkdir => req("MKCOL", p),
            Op::Put(body) => req("PUT", p).body(body),
            Op::PutAt(body, start, total) => req("PUT", p)
                .header(
                    "Content-Range",
                    format!("bytes {start}-{}/{total}", total - 1),
                )
                .body(body),
            Op::List => req("PROPFIND", p).header("Depth", "1"),
            Op::Get => req("GET", p),
            Op::Rename(to) => req("MOVE", p).header("Destination", url(to)),
            Op::Delete => req("DELETE", p),
            Op::Stream(body) => req("PUT", p).body(body),
        })
        .await
    }

    async fn http_api(&self, proto: Proto, step: Step) -> Outcome {
        let token = self.token(&proto.user()).await;
        let api = |method: Method, rest: String| {
            self.http
                .request(method, format!("{}/api/v1/user/files{rest}", self.base))
                .header("Authorization", token.clone())
        };
        self.http_outcome(proto, step, |kind, p| match kind {
            Op::Mkdir => api(Method::POST, format!("/dirs?path={p}")),
            Op::Put(body) | Op::Stream(body) => {
                api(Method::PUT, format!("/content?path={p}")).body(body)
            }
            Op::PutAt(body, start, _) => {
                api(Method::PUT, format!("/content?path={p}&offset={start}")).body(body)
            }
            Op::List => api(Method::GET, format!("?path={p}")),
            Op::Get => api(Method::GET, format!("/content?path={p}")),
            Op::Rename(to) => api(Method::POST, "/rename".to_string())
                .json(&serde_json::json!({"from": p, "to": to})),
            Op::Delete => api(Method::DELETE, format!("?path={p}")),
        })
        .await
    }

    /// The scenario over an HTTP-based protocol, given how to build each request.
    async fn http_outcome(
        &self,
        proto: Proto,
        step: Step,
        request: impl Fn(Op, &str) -> reqwest::RequestBuilder,
    ) -> Outcome {
        let done = |res: reqwest::Response| {
            if res.status().is_success() {
                Outcome::Done
            } else {
                Outcome::Refused
            }
        };
        match step {
            Step::Mkdir(p) => done(request(Op::Mkdir, p).send().await.unwrap()),
            Step::Upload(p, _) | Step::DeniedUpload(p) => done(
                request(Op::Put(reqwest::Body::from(data(n_of(step).max(1)))), p)
                    .send()
                    .await
                    .unwrap(),
            ),
            Step::List(p) => {
                let res = request(Op::List, p).send().await.unwrap();
                if !res.status().is_success() {
                    return Outcome::Refused;
                }
                let text = res.text().await.unwrap();
                let names = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Array(items)) => items
                        .iter()
                        .map(|i| i["name"].as_str().unwrap().to_string())
                        .collect(),
                    _ => text
                        .split("<D:href>")
                        .skip(2)
                        .filter_map(|h| h.split("</D:href>").next())
                        .map(|h| {
                            h.trim_end_matches('/')
                                .rsplit('/')
                                .next()
                                .unwrap()
                                .to_string()
                        })
                        .collect(),
                };
                Outcome::Names(names)
            }
            Step::Download(p) | Step::Traversal(p) => {
                let res = request(Op::Get, p).send().await.unwrap();
                if res.status() == StatusCode::OK {
                    Outcome::Content(res.bytes().await.unwrap().to_vec())
                } else {
                    Outcome::Refused
                }
            }
            Step::Resume(p, n) => {
                let all = data(n);
                let first = request(Op::Put(reqwest::Body::from(all[..n / 2].to_vec())), p)
                    .send()
                    .await
                    .unwrap();
                assert!(first.status().is_success());
                let rest = all[n / 2..].to_vec();
                done(
                    request(
                        Op::PutAt(reqwest::Body::from(rest), (n / 2) as u64, n as u64),
                        p,
                    )
                    .send()
                    .await
                    .unwrap(),
                )
            }
            Step::Rename(a, b) => done(request(Op::Rename(b), a).send().await.unwrap()),
            Step::Delete(p) => done(request(Op::Delete, p).send().await.unwrap()),
            Step::DroppedUpload(p) => {
                // The client fails its body once the server has started
                // the transfer, so the failure happens mid-upload.
                let (started, fail) = tokio::sync::oneshot::channel::<()>();
                let first = futures::stream::iter([Ok::<_, std::io::Error>(data(50_000))]);
                let then_fail = futures::stream::once(async move {
                    let _ = fail.await;
                    Err(std::io::Error::other("the client gave up"))
                });
                let body = reqwest::Body::wrap_stream(futures::StreamExt::chain(first, then_fail));
                let send = request(Op::Stream(body), p).send();
                let user = proto.user();
                let watch = async {
                    loop {
                        let found = self.server.events_of(&user, "TransferStarted").await;
                        if found.iter().any(|e| e.path.as_deref() == Some(p)) {
                            let _ = started.send(());
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                    }
                };
                let (_, ()) = tokio::join!(send, watch);
                Outcome::Done
            }
        }
    }
}

/// An HTTP-level operation.
enum Op<'a> {
    Mkdir,
    Put(reqwest::Body),
    PutAt(reqwest::Body, u64, u64),
    List,
    Get,
    Rename(&'a str),
    Delete,
    Stream(reqwest::Body),
}

/// Every protocol detects an upload whose client vanished mid-file.
fn detects_dropped_uploads(_proto: Proto) -> bool {
    true
}

fn n_of(step: Step) -> usize {
    match step {
        Step::Upload(_, n) | Step::Resume(_, n) => n,
        _ => 0,
    }
}

/// The file events of one user, protocol-neutral and sorted.
async fn file_events(server: &TestServer, user: &str, proto: Proto) -> Vec<String> {
    let events = server
        .events(EventFilter {
            user: Some(user.to_string()),
            ..EventFilter::default()
        })
        .await;
    let mut lines: Vec<String> = events
        .iter()
        .filter(|e| {
            e.event_type.starts_with("Transfer")
                || (e.event_type.starts_with("FileOperation")
                    && !matches!(e.operation.as_deref(), Some("list" | "stat")))
        })
        .map(|e| {
            assert_eq!(e.protocol.as_deref(), Some(proto.name()), "{e:?}");
            // How much of a dropped upload arrived depends on the network.
            let bytes = if e.event_type == "TransferAborted" {
                None
            } else {
                e.bytes
            };
            format!(
                "{} {} {} {} bytes={:?} sha256={}",
                e.event_type,
                e.operation.as_deref().unwrap_or("-"),
                e.path.as_deref().unwrap_or("-"),
                e.target.as_deref().unwrap_or("-"),
                bytes,
                e.sha256.is_some()
            )
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn every_protocol_behaves_and_audits_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config("sqlite", dir.path()).await;
    let (cert_path, key_path, pem) = self_signed(dir.path());
    config.ftp.tls_cert = Some(cert_path);
    config.ftp.tls_key = Some(key_path);
    let server = TestServer::start_with(config, dir).await;
    server
        .app()
        .create_policy(
            "test",
            "parity",
            &["/=*".to_string(), "/ro=list,download".to_string()],
        )
        .await
        .unwrap();
    let mut homes = Vec::new();
    for proto in ALL {
        let home = server.add_user(&proto.user(), &["parity"]).await;
        std::fs::create_dir_all(home.join("ro")).unwrap();
        homes.push(home);
    }
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_certificates(&pem) {
        roots.add(der).unwrap();
    }
    let env = Env {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.http_addr),
        ftps_roots: Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ),
        server,
    };

    let mut reference: Option<Vec<Outcome>> = None;
    for proto in ALL {
        let mut outcomes = Vec::new();
        for step in SCENARIO {
            let mut outcome = env.run(proto, step).await;
            if let Outcome::Names(names) = &mut outcome {
                names.sort();
            }
            outcomes.push(outcome);
        }
        // The expected results, the same for every protocol.
        assert_eq!(outcomes[0], Outcome::Done, "{proto:?} mkdir");
        assert_eq!(
            outcomes[2],
            Outcome::Names(vec!["f.bin".to_string()]),
            "{proto:?} list"
        );
        assert_eq!(
            outcomes[3],
            Outcome::Content(data(300_000)),
            "{proto:?} download"
        );
        assert_eq!(
            outcomes[5],
            Outcome::Content(data(100_000)),
            "{proto:?} resumed"
        );
        assert_eq!(outcomes[8], Outcome::Refused, "{proto:?} denied upload");
        assert_eq!(outcomes[9], Outcome::Refused, "{proto:?} traversal");
        match &reference {
            None => reference = Some(outcomes),
            Some(expected) => assert_eq!(&outcomes, expected, "{proto:?} outcomes"),
        }
    }
    for home in &homes {
        assert!(!home.join("dir/partial.bin").exists(), "{}", home.display());
        assert!(!home.join("ro/x.bin").exists());
    }

    // Same events, same fields: only the protocol differs.
    for proto in ALL.into_iter().filter(|p| detects_dropped_uploads(*p)) {
        env.server
            .wait_for_event(&proto.user(), "TransferAborted")
            .await;
    }
    let expected = file_events(&env.server, &Proto::Sftp.user(), Proto::Sftp).await;
    for proto in ALL {
        let got = file_events(&env.server, &proto.user(), proto).await;
        let expected: Vec<&String> = expected
            .iter()
            .filter(|line| detects_dropped_uploads(proto) || !line.contains("/dir/partial.bin"))
            .collect();
        let got: Vec<&String> = got.iter().collect();
        assert_eq!(got, expected, "{proto:?} events differ from SFTP's");
    }
    env.server.stop().await;
}
