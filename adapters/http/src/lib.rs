//! The HTTP(S) front end: the REST admin API and the users' file API
//! described by an OpenAPI 3 document (poem-openapi), Swagger UI, health,
//! readiness and metrics.
//!
//! Architecture invariant: this crate holds no business rule. It
//! authenticates by asking the `AdminApi` port, converts JSON to the port's
//! types and back, and maps every error to an RFC 9457 problem; who may do
//! what is decided behind the port.

mod dav;
mod dto;
mod files;
mod metrics;
mod problem;
mod request_session;
mod routes;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::make_sync;
use poem::http::uri::Scheme;
use poem::listener::{Acceptor, AcceptorExt, RustlsCertificate, RustlsConfig, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, EndpointExt, IntoResponse, Route};
use poem_openapi::OpenApiService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tollgate_ports::api::AdminApi;
use tollgate_ports::inbound::Sessions;

/// The one route whose body streams to storage instead of being buffered.
const UPLOAD_PATH: &str = "/api/v1/user/files/content";

/// The version of the API document.
pub const API_VERSION: &str = "1.0.0";

/// PEM certificate chain and private key for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsPem {
    /// The certificate chain.
    pub cert: Vec<u8>,
    /// The private key.
    pub key: Vec<u8>,
}

/// How the HTTP server runs.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Serve HTTPS with this certificate; plain HTTP when `None`.
    pub tls: Option<TlsPem>,
    /// The largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// A live-stream message the client does not take within this time
    /// disconnects it.
    pub stream_send_timeout: Duration,
}

type Apis = (routes::Api, files::FilesApi, routes::Ops);

fn service(port: Arc<dyn AdminApi>, sessions: Arc<dyn Sessions>) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            routes::Api { port: port.clone() },
            files::FilesApi { sessions },
            routes::Ops { port },
        ),
        "Tollgate",
        API_VERSION,
    )
    .description(
        "Administration, audit and file API of the Tollgate file-transfer gateway. \
         Errors are RFC 9457 problem documents whose `type` is one of \
         `urn:tollgate:problem:{bad-request, unauthorized, forbidden, not-found, \
         method-not-allowed, conflict, precondition-failed, payload-too-large, \
         unsupported-media-type, range-not-satisfiable, not-implemented, \
         insufficient-storage, unavailable, internal}`. Updates accept the \
         resource's `ETag` in `If-Match` and answer 412 when it is stale.",
    )
}

/// The OpenAPI document, as committed in `openapi/openapi.json`.
pub fn openapi_json(port: Arc<dyn AdminApi>, sessions: Arc<dyn Sessions>) -> String {
    let mut text = service(port, sessions).spec();
    text.push('\n');
    text
}

/// The whole HTTP application.
fn app(
    port: Arc<dyn AdminApi>,
    sessions: Arc<dyn Sessions>,
    max_body: usize,
    stream: stream::StreamConfig,
) -> impl Endpoint + 'static {
    let api = service(port.clone(), sessions.clone());
    let guard = sessions.clone();
    let spec = api.spec();
    let docs = api.swagger_ui();
    Route::new()
        .at(
            stream::PATH,
            poem::get(stream::events_ws).data(port.clone()).data(stream),
        )
        .nest("/", api)
        .nest_no_strip(dav::PREFIX, dav::DavEndpoint::new(sessions))
        .nest("/api/docs", docs)
        .at(
            "/api/openapi.json",
            make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json")
                    .body(spec.clone())
            }),
        )
        .around(move |ep, mut req| async move {
            // WebDAV bodies stream to storage (PUT) or are parsed by the
            // WebDAV handler, which bounds what it reads itself.
            if req.uri().path() == dav::PREFIX
                || req.uri().path().starts_with(&format!("{}/", dav::PREFIX))
            {
                return ep.call(req).await.map(IntoResponse::into_response);
            }
            // File uploads stream and have no size limit here; their bytes
            // are the file whatever media type the client named.
            if req.uri().path() == UPLOAD_PATH {
                req.headers_mut().insert(
                    poem::http::header::CONTENT_TYPE,
                    poem::http::HeaderValue::from_static("application/octet-stream"),
                );
                return ep.call(req).await.map(IntoResponse::into_response);
            }
            // Refuse oversize bodies before anything reads them.
            let declared = req
                .headers()
                .get(poem::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            if declared.is_some_and(|n| n > max_body) {
                return Err(poem::Error::from_string(
                    format!("the request body is larger than {max_body} bytes"),
                    poem::http::StatusCode::PAYLOAD_TOO_LARGE,
                ));
            }
            if declared.is_none() {
                let body = req
                    .take_body()
                    .into_bytes_limit(max_body)
                    .await
                    .map_err(|_| {
                        poem::Error::from_string(
                            format!("the request body is larger than {max_body} bytes"),
                            poem::http::StatusCode::PAYLOAD_TOO_LARGE,
                        )
                    })?;
                req.set_body(body);
            }
            ep.call(req).await.map(IntoResponse::into_response)
        })
        // A banned address is refused before anything else looks at it.
        .around(move |ep, req| {
            let banned = req
                .remote_addr()
                .as_socket_addr()
                .is_some_and(|addr| guard.banned(&addr.to_string()));
            async move {
                if banned {
                    return Err(poem::Error::from_string(
                        "this address is banned after repeated failed logins",
                        poem::http::StatusCode::FORBIDDEN,
                    ));
                }
                ep.call(req).await.map(IntoResponse::into_response)
            }
        })
        .catch_all_error(|err| async move { problem::response_for(err) })
}

/// A TCP acceptor whose first `accept` yields once before it accepts.
/// poem's TLS acceptor waits on its configuration and on the next
/// connection at once and picks either when both are ready; a connection
/// already waiting when the server starts would otherwise be taken before
/// the configuration and dropped ("no valid tls config"). Yielding first
/// lets the configuration win that race every time.
struct ConfigFirst<A> {
    inner: A,
    started: bool,
}

impl<A: Acceptor> Acceptor for ConfigFirst<A> {
    type Io = A::Io;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> std::io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        if !self.started {
            self.started = true;
            tokio::task::yield_now().await;
        }
        self.inner.accept().await
    }
}

/// The HTTP(S) server of the admin API.
pub struct HttpServer {
    port: Arc<dyn AdminApi>,
    sessions: Arc<dyn Sessions>,
    config: HttpConfig,
}

impl HttpServer {
    /// A server answering administration through `port` and users' file
    /// requests through `sessions`.
    pub fn new(port: Arc<dyn AdminApi>, sessions: Arc<dyn Sessions>, config: HttpConfig) -> Self {
        HttpServer {
            port,
            sessions,
            config,
        }
    }

    /// Serves on `listener` until `shutdown` turns true, then lets running
    /// requests finish for a few seconds.
    pub async fn run(
        self,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        let acceptor = match &self.config.tls {
            Some(tls) => {
                let config = RustlsConfig::new().fallback(
                    RustlsCertificate::new()
                        .cert(tls.cert.clone())
                        .key(tls.key.clone()),
                );
                ConfigFirst {
                    inner: acceptor,
                    started: false,
                }
                .rustls(futures::stream::iter([config]))
                .boxed()
            }
            None => acceptor.boxed(),
        };
        let endpoint = app(
            self.port,
            self.sessions,
            self.config.max_body_bytes,
            stream::StreamConfig {
                send_timeout: self.config.stream_send_timeout,
            },
        );
        poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(
                endpoint,
                async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                },
                Some(Duration::from_secs(5)),
            )
            .await
    }
}
