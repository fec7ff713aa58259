//! Sends one signed request over HTTP and reads the start of the answer.
//! Redirects are never followed; connect and total time are bounded; the
//! response body is read only up to a cap.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::net_guard::{GuardedResolver, NetworkPolicy};

/// How much of a response body is read (and shown to the plugin).
pub const RESPONSE_READ_CAP: usize = 16 << 10;

/// Timeouts of outgoing requests.
#[derive(Debug, Clone)]
pub struct SenderOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for SenderOptions {
    fn default() -> SenderOptions {
        SenderOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// One request, ready to go.
pub struct Outgoing {
    pub url: url::Url,
    pub body: Bytes,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub msg_id: String,
    pub timestamp: i64,
    pub signature: String,
}

/// What came back.
#[derive(Debug, Clone)]
pub enum SendResult {
    Answered {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// No answer: the message says why (timeout, refused, TLS…).
    NoAnswer(String),
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    network: Arc<NetworkPolicy>,
}

impl Sender {
    /// A sender whose every connection passes the SSRF guard of `network`.
    pub fn new(options: &SenderOptions, network: Arc<NetworkPolicy>) -> anyhow::Result<Sender> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: network.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .user_agent(concat!("Hookline/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Sender { client, network })
    }

    /// The CloudEvents Web Hook abuse-protection handshake: an `OPTIONS`
    /// request with `WebHook-Request-Origin`, which the receiver must answer
    /// with a 2xx and `WebHook-Allowed-Origin` naming `origin` (or `*`).
    /// Returns the rate it allows (`WebHook-Allowed-Rate`, requests per
    /// minute; `None` for no limit), or why it did not agree.
    pub async fn handshake(&self, url: &url::Url, origin: &str) -> Result<Option<u32>, String> {
        self.network
            .check_url(url)
            .map_err(|why| format!("refused by the network policy: {why}"))?;
        let response = self
            .client
            .request(reqwest::Method::OPTIONS, url.clone())
            .header("webhook-request-origin", origin)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "the validation request got no answer: {}",
                    describe(&e.without_url())
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!(
                "the receiver answered the validation request (OPTIONS) with {status}"
            ));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        match header("webhook-allowed-origin") {
            Some(allowed) if allowed == "*" || allowed.eq_ignore_ascii_case(origin) => {}
            Some(other) => {
                return Err(format!(
                    "the receiver allows origin {other:?}, not {origin:?} (WebHook-Allowed-Origin)"
                ));
            }
            None => {
                return Err(
                    "the receiver's answer has no WebHook-Allowed-Origin: it did not agree to receive events"
                        .into(),
                );
            }
        }
        match header("webhook-allowed-rate") {
            None | Some("*") => Ok(None),
            Some(rate) => rate.parse::<u32>().map(Some).map_err(|_| {
                format!("WebHook-Allowed-Rate {rate:?} is not a number of requests per minute or *")
            }),
        }
    }

    pub async fn send(&self, out: Outgoing) -> SendResult {
        // IP literals never reach the resolver: check them here. Names are
        // checked on what they resolve to, at connect time.
        if let Err(why) = self.network.check_url(&out.url) {
            return SendResult::NoAnswer(format!("refused by the network policy: {why}"));
        }
        let mut headers = HeaderMap::with_capacity(out.headers.len() + 4);
        // Plugin headers were checked by the plugin host; skip any that still fail to parse.
        for (name, value) in &out.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(n, v);
            }
        }
        let mut insert = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        };
        insert("webhook-id", &out.msg_id);
        insert("webhook-timestamp", &out.timestamp.to_string());
        insert("webhook-signature", &out.signature);
        if let Ok(v) = HeaderValue::from_str(&out.content_type) {
            headers.insert(CONTENT_TYPE, v);
        }

        let response = match self
            .client
            .post(out.url)
            .headers(headers)
            .body(out.body)
            .send()
            .await
        {
            Ok(r) => r,
            // Never the URL in what is recorded: chat webhook URLs are credentials.
            Err(e) => return SendResult::NoAnswer(describe(&e.without_url())),
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .take(64)
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        let mut response = response;
        while body.len() < RESPONSE_READ_CAP {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = RESPONSE_READ_CAP - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                // The status is what counts; a body cut short is still an answer.
                Err(_) => break,
            }
        }
        SendResult::Answered {
            status,
            headers,
            body,
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut message = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
