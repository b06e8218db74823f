//! Events leaving the gateway: records for Kafka (`kafka`), and signed
//! webhooks over HTTP(S), following
//! Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,BASE64(HMAC-SHA256(secret, "id.timestamp.body"))`).
//!
//! Outbound requests are a classic server-side request forgery vector: a
//! target that resolves to a loopback, private, link-local or otherwise
//! non-public address is refused unless the configuration allows private
//! targets, and the connection is pinned to the address that was checked
//! (no second DNS answer, no redirects).

mod kafka;

pub use kafka::{KafkaProducer, KafkaSettings};

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tollgate_ports::outbound::{WebhookError, WebhookRequest, WebhookResponse, WebhookSender};

const SECRET_PREFIX: &str = "whsec_";

/// Sends webhooks with reqwest.
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    timeout: Duration,
    allow_private: bool,
    /// One client (one connection pool) per host and checked address.
    clients: Arc<Mutex<HashMap<(String, SocketAddr), reqwest::Client>>>,
}

/// More distinct endpoints than this and the client cache starts over.
const MAX_CLIENTS: usize = 256;

impl HttpWebhookSender {
    /// A sender whose requests time out after `timeout`; `allow_private`
    /// lets deliveries reach loopback and private addresses.
    pub fn new(timeout: Duration, allow_private: bool) -> Self {
        HttpWebhookSender {
            timeout,
            allow_private,
            clients: Arc::default(),
        }
    }

    /// The URL, its host, and the one address the request will go to.
    async fn target(&self, url: &str) -> Result<(reqwest::Url, SocketAddr), WebhookError> {
        let refused = |why: String| WebhookError::Refused(why);
        let parsed =
            reqwest::Url::parse(url).map_err(|e| refused(format!("{url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(refused("only http and https endpoints".to_string()));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| refused("the URL has no host".to_string()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| refused("the URL has no port".to_string()))?;
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| WebhookError::Transport(format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        let first = *addrs
            .first()
            .ok_or_else(|| WebhookError::Transport(format!("{host} has no address")))?;
        if !self.allow_private
            && let Some(blocked) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(refused(format!(
                "{host} resolves to {}, a non-public address (allow it with \
                 webhooks.allow_private_targets)",
                blocked.ip()
            )));
        }
        Ok((parsed, first))
    }
}

impl HttpWebhookSender {
    /// The client for requests to `host` at `addr` (kept, so connections
    /// are reused across deliveries).
    fn client(&self, host: &str, addr: SocketAddr) -> Result<reqwest::Client, WebhookError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&(host.to_string(), addr)) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .resolve(host, addr)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Transport(e.to_string()))?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert((host.to_string(), addr), client.clone());
        Ok(client)
    }
}

/// `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the
/// secret's key (the base64 after `whsec_`).
pub fn signature(
    secret: &str,
    message_id: &str,
    timestamp: i64,
    body: &str,
) -> Result<String, WebhookError> {
    let key = STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .map_err(|_| WebhookError::Refused("the signing secret is malformed".to_string()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| WebhookError::Refused("the signing secret is malformed".to_string()))?;
    mac.update(format!("{message_id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Whether an address is on the public internet (not loopback, private,
/// link-local, shared, documentation, multicast or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || first == 0x0064 && ip.segments()[1] == 0xff9b)
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    fn new_secret(&self) -> String {
        let mut key = [0u8; 24];
        rand::fill(&mut key);
        format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
    }

    async fn check(&self, url: &str) -> Result<(), WebhookError> {
        self.target(url).await.map(drop)
    }

    async fn send(&self, request: &WebhookRequest) -> Result<WebhookResponse, WebhookError> {
        let (url, addr) = self.target(&request.url).await?;
        let signature = signature(
            &request.secret,
            &request.message_id,
            request.timestamp,
            &request.body,
        )?;
        let host = url.host_str().unwrap_or_default().to_string();
        let client = self.client(&host, addr)?;
        let started = Instant::now();
        let response = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &request.message_id)
            .header("webhook-timestamp", request.timestamp.to_string())
            .header("webhook-signature", signature)
            .body(request.body.clone())
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                WebhookError::Transport(format!("{kind}: {e}"))
            })?;
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "webhook answered"
        );
        Ok(WebhookResponse {
            status: response.status().as_u16(),
            retry_after: retry_after(response.headers()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let signed = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn private_targets_are_refused_unless_allowed() {
        let strict = HttpWebhookSender::new(Duration::from_secs(1), false);
        for url in [
            "http://127.0.0.1:9/hook",
            "http://localhost:9/hook",
            "http://[::1]:9/",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert!(
                matches!(strict.check(url).await, Err(WebhookError::Refused(_))),
                "{url}"
            );
        }
        assert!(matches!(
            strict.check("ftp://example.org/").await,
            Err(WebhookError::Refused(_))
        ));
        let open = HttpWebhookSender::new(Duration::from_secs(1), true);
        assert_eq!(open.check("http://127.0.0.1:9/hook").await, Ok(()));
        let secret = open.new_secret();
        assert!(secret.starts_with("whsec_") && secret != open.new_secret());
    }
}
