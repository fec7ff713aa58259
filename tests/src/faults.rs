//! A raw-TCP HTTP/1.1 receiver on 127.0.0.1 that misbehaves on purpose.
//!
//! [`crate::Receiver`] sits on axum, which always answers politely. Delivery
//! has to survive receivers that do not: ones that reset the connection, never
//! answer, answer too slowly or send an endless body. Those faults live below
//! what a web framework lets a handler do, so this receiver reads and writes
//! the bytes itself. It speaks just enough HTTP/1.1 for the engine's client
//! (request line, headers, `Content-Length` bodies, keep-alive) and records
//! every request as a [`Received`] before it acts on the [`Fault`] chosen for
//! it, so a test sees requests that got no answer too.
//!
//! Everything it starts belongs to the [`FaultReceiver`]: dropping it stops the
//! accept loop and every connection task, black-holed and slow ones included.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::receiver::Received;

/// A request head larger than this is refused (431) rather than buffered
/// without end.
const MAX_HEAD: usize = 64 << 10;
/// Same ceiling as [`crate::Receiver`] puts on request bodies.
const MAX_BODY: u64 = 64 << 20;
/// Size of each write of a [`Fault::HugeBody`]; the body is never held whole.
const CHUNK: usize = 16 << 10;
/// How long a closing connection keeps reading what the peer still sends, so
/// that our last answer is not destroyed by a reset (see [`linger_close`]).
const LINGER: Duration = Duration::from_secs(1);

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status, headers and body (covers 200, 500, 503 +
    /// Retry-After, 410, 400, 401, a 302/307 redirect with Location, 429 with
    /// a Discord-style body...).
    ///
    /// The receiver writes `content-length` itself (and none for 1xx, 204 and
    /// 304), so `content-length` and `transfer-encoding` given here are
    /// ignored: a lie about framing would break the keep-alive connection for
    /// the requests after this one. A `connection: close` here is honoured by
    /// closing after the answer.
    Status {
        /// Status code, written as is (with its standard reason phrase if any).
        status: u16,
        /// Extra response headers, in order.
        headers: Vec<(String, String)>,
        /// Response body.
        body: String,
    },
    /// Wait this long, then answer 200 (slower than the engine's timeout).
    Slow(Duration),
    /// Read the request, then reset the connection (SO_LINGER 0 then close,
    /// so the peer sees RST).
    Reset,
    /// Answer 200 with a body of this many bytes, streamed in chunks (never
    /// buffered whole); stop quietly when the peer closes.
    HugeBody(u64),
    /// Accept and read the request, never answer; keep the connection open
    /// until the receiver is dropped.
    BlackHole,
}

impl Fault {
    /// 200 `ok`, the same answer [`crate::Receiver`] gives by default.
    pub fn ok() -> Fault {
        Fault::status_with(200, &[], "ok")
    }

    /// This status with no extra headers and an empty body.
    pub fn status(status: u16) -> Fault {
        Fault::status_with(status, &[], "")
    }

    /// This status, headers and body.
    pub fn status_with(status: u16, headers: &[(&str, &str)], body: &str) -> Fault {
        Fault::Status {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_string(),
        }
    }

    /// 307 Temporary Redirect to `location`. 307 rather than 302 because it
    /// is the redirect a naive client would follow with the same POST, which
    /// is exactly what the engine must not do. Use [`Fault::status_with`] for
    /// the other redirect codes.
    pub fn redirect(location: &str) -> Fault {
        Fault::status_with(307, &[("location", location)], "")
    }

    /// `status` (typically 503 or 429) with `Retry-After: secs`.
    pub fn retry_after(status: u16, secs: u64) -> Fault {
        Fault::status_with(status, &[("retry-after", &secs.to_string())], "")
    }

    /// A 429 the way Discord sends it: rate-limit headers and a JSON body
    /// whose `retry_after` is fractional seconds. The `retry-after` header is
    /// whole seconds (rounded up), as HTTP requires, so a client that reads
    /// the body gets the finer value.
    pub fn discord_429(retry_after_secs: f64) -> Fault {
        assert!(
            retry_after_secs.is_finite() && retry_after_secs >= 0.0,
            "retry_after_secs must be a finite, non-negative number, got {retry_after_secs}"
        );
        let body = serde_json::json!({
            "message": "You are being rate limited.",
            "retry_after": retry_after_secs,
            "global": false,
        });
        let reset_after = retry_after_secs.to_string();
        let retry_after = format!("{}", retry_after_secs.ceil());
        Fault::status_with(
            429,
            &[
                ("content-type", "application/json"),
                ("x-ratelimit-limit", "5"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset-after", &reset_after),
                ("retry-after", &retry_after),
            ],
            &body.to_string(),
        )
    }
}

/// Decides a request's fault when no scripted one is queued.
type Rule = Box<dyn Fn(usize, &Received) -> Fault + Send + Sync>;

enum Fallback {
    Default(Fault),
    Rule(Rule),
}

struct State {
    /// Requests recorded so far; the next one gets this index.
    seen: usize,
    script: VecDeque<Fault>,
    fallback: Fallback,
}

struct Shared {
    tx: mpsc::UnboundedSender<Received>,
    state: Mutex<State>,
    connections: AtomicUsize,
}

impl Shared {
    /// A panicking rule poisons the lock; the state itself is still
    /// consistent, and the test should see that panic, not a poison error.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `received` and chooses its fault. Index, choice and recording
    /// happen under one lock so that the order of [`FaultReceiver::next`] is
    /// the order of the indices the rule saw, even across connections.
    fn record(&self, received: Received) -> Fault {
        let mut state = self.state();
        let index = state.seen;
        state.seen += 1;
        // Sent before the rule runs so that a panicking rule still leaves the
        // request for the test to see. The receiving half only goes away with
        // the FaultReceiver, which stops this task too.
        let _ = self.tx.send(received.clone());
        match state.script.pop_front() {
            Some(fault) => fault,
            None => match &state.fallback {
                Fallback::Default(fault) => fault.clone(),
                Fallback::Rule(rule) => rule(index, &received),
            },
        }
    }
}

/// A misbehaving HTTP/1.1 receiver on 127.0.0.1 that records every request
/// and answers each with a [`Fault`].
///
/// An answer is chosen, in order of precedence, from the queue filled by
/// [`FaultReceiver::script`], then from the rule given to
/// [`FaultReceiver::start_with_rule`] or the default given to
/// [`FaultReceiver::start`] / [`FaultReceiver::set_default`].
///
/// Dropping it stops the accept loop and every connection task.
pub struct FaultReceiver {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    rx: mpsc::UnboundedReceiver<Received>,
    shared: Arc<Shared>,
    /// The accept loop; it owns every connection task (see [`accept_loop`]).
    accept: JoinHandle<()>,
}

impl FaultReceiver {
    /// Answers every request with `default` unless a scripted answer is queued.
    pub async fn start(default: Fault) -> FaultReceiver {
        FaultReceiver::build(Fallback::Default(default)).await
    }

    /// Lets `rule` choose each answer not scripted. It gets the 0-based index
    /// of the request in order of arrival (counting scripted ones too) and the
    /// request, e.g. `|i, _| if i % 7 == 6 { Fault::status(500) } else { Fault::ok() }`.
    ///
    /// The rule runs while the receiver's state is locked, so it should be
    /// quick; it cannot reach the receiver anyway. If it panics, that request
    /// is recorded but its connection ends without an answer (the panic is
    /// printed with the test's output).
    pub async fn start_with_rule(
        rule: impl Fn(usize, &Received) -> Fault + Send + Sync + 'static,
    ) -> FaultReceiver {
        FaultReceiver::build(Fallback::Rule(Box::new(rule))).await
    }

    async fn build(fallback: Fallback) -> FaultReceiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            tx,
            state: Mutex::new(State {
                seen: 0,
                script: VecDeque::new(),
                fallback,
            }),
            connections: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fault receiver");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        FaultReceiver {
            url,
            rx,
            shared,
            accept,
        }
    }

    /// Queues answers for the next requests, in order; they win over the
    /// default and the rule.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.state().script.extend(faults);
    }

    /// Answers with `fault` from now on when nothing is scripted. This
    /// replaces a rule given to [`FaultReceiver::start_with_rule`] too, so a
    /// test can end a failure pattern.
    pub fn set_default(&self, fault: Fault) {
        self.shared.state().fallback = Fallback::Default(fault);
    }

    /// The next request, failing the test after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Received {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("fault receiver {} has stopped", self.url),
            Err(_) => panic!(
                "fault receiver {} got nothing within {timeout:?} ({} requests so far)",
                self.url,
                self.count()
            ),
        }
    }

    /// The next request, or `None` after `timeout` (for a test that wants
    /// to say more than "nothing came").
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Requests that arrived and were not taken yet.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            out.push(r);
        }
        out
    }

    /// Requests seen so far, including ones still being answered (or never
    /// to be).
    pub fn count(&self) -> usize {
        self.shared.state().seen
    }

    /// Connections accepted so far; with keep-alive, fewer than requests.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultReceiver {
    fn drop(&mut self) {
        // Aborting the accept loop drops its listener and its JoinSet, and a
        // dropped JoinSet aborts every connection task: nothing outlives the
        // test, not even a black hole or a slow answer.
        self.accept.abort();
    }
}

/// Accepts connections until aborted. The connection tasks live in a
/// [`JoinSet`] owned by this future so that aborting it ends them all.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve(stream, shared.clone()));
                }
                // Out of file descriptors and the like: back off instead of
                // spinning, the condition is usually transient.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so a long test does not pile them up.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One parsed request, with what the answer needs to know about it.
struct Request {
    received: Received,
    /// HEAD: answer with headers only.
    head_only: bool,
    /// The client asked to close after this exchange.
    close: bool,
}

enum Incoming {
    Request(Box<Request>),
    /// The peer closed (or broke) the connection, possibly mid-request.
    Closed,
    /// Something this receiver will not handle: answer this status and close.
    Refused(u16, &'static str),
}

/// Serves the requests of one connection, in order, until one of them ends it.
async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    // Bytes read but not used yet: a client may send its next request before
    // reading our answer.
    let mut buf = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut buf).await {
            Incoming::Request(request) => *request,
            Incoming::Closed => return,
            Incoming::Refused(status, why) => {
                let mut answer = response_head(status, &[], Some(why.len() as u64), true);
                answer.extend_from_slice(why.as_bytes());
                if stream.write_all(&answer).await.is_ok() {
                    linger_close(stream).await;
                }
                return;
            }
        };
        let Request {
            received,
            head_only,
            close,
        } = request;
        let keep_open = match shared.record(received) {
            Fault::Status {
                status,
                headers,
                body,
            } => answer(&mut stream, status, &headers, &body, head_only, close).await,
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                answer(&mut stream, 200, &[], "ok", head_only, close).await
            }
            Fault::Reset => {
                // Zero linger turns the close below into an RST instead of a
                // FIN. If it cannot be set the peer still sees the connection
                // end without an answer, which is the point of the fault.
                let _ = stream.set_zero_linger();
                return;
            }
            Fault::HugeBody(size) => huge_body(&mut stream, size, head_only, close).await,
            Fault::BlackHole => {
                // Hold the connection without reading or answering; the
                // FaultReceiver's drop aborts this task.
                std::future::pending::<()>().await;
                return;
            }
        };
        if !keep_open {
            linger_close(stream).await;
            return;
        }
    }
}

/// Reads one request from `stream`, leaving any bytes after it in `buf`.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Incoming {
    let head_len = loop {
        // RFC 9112 §2.2: a server should ignore empty lines before a request.
        while buf.starts_with(b"\r\n") {
            buf.drain(..2);
        }
        if let Some(end) = find(buf, b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD {
            return Incoming::Refused(431, "request head too large");
        }
        if !read_more(stream, buf).await {
            return Incoming::Closed;
        }
    };
    let head = match parse_head(&buf[..head_len - 4]) {
        Ok(head) => head,
        Err((status, why)) => return Incoming::Refused(status, why),
    };
    let body_end = head_len + head.content_length as usize;
    while buf.len() < body_end {
        if !read_more(stream, buf).await {
            return Incoming::Closed;
        }
    }
    let body = Bytes::copy_from_slice(&buf[head_len..body_end]);
    buf.drain(..body_end);
    Incoming::Request(Box::new(Request {
        received: Received {
            method: head.method.to_string(),
            path: head.uri.path().to_string(),
            query: head.uri.query().map(str::to_string),
            headers: head.headers,
            body,
            at: std::time::Instant::now(),
        },
        head_only: head.method == "HEAD",
        close: head.close,
    }))
}

/// Appends what the peer sends next to `buf`; false once it closed or broke
/// the connection.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

struct Head {
    method: String,
    uri: Uri,
    headers: HeaderMap,
    content_length: u64,
    close: bool,
}

/// Parses a request head (without its final empty line), or says which
/// status and reason to refuse it with.
fn parse_head(head: &[u8]) -> Result<Head, (u16, &'static str)> {
    let bad = |why| (400, why);
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().unwrap_or_default();
    let request_line =
        std::str::from_utf8(request_line).map_err(|_| bad("request line is not UTF-8"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => {
            return Err((505, "only HTTP/1.0 and HTTP/1.1 are spoken here"));
        }
    };
    if method.is_empty() {
        return Err(bad("malformed request line"));
    }
    let uri: Uri = target
        .parse()
        .map_err(|_| bad("malformed request target"))?;

    let mut headers = HeaderMap::new();
    for line in lines {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            return Err(bad("obsolete line folding"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| bad("header line without a colon"))?;
        let name =
            HeaderName::from_bytes(&line[..colon]).map_err(|_| bad("malformed header name"))?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
            .map_err(|_| bad("malformed header value"))?;
        headers.append(name, value);
    }

    // Without chunked decoding the body's end is unknown: refuse rather than
    // wait for bytes that will never be counted.
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err(bad(
            "transfer-encoding is not supported, send content-length",
        ));
    }
    let mut content_length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let n: u64 = value
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("malformed content-length"))?;
        if content_length.is_some_and(|m| m != n) {
            return Err(bad("conflicting content-length"));
        }
        content_length = Some(n);
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Err((413, "request body too large"));
    }

    let close = if http10 {
        !has_token(&headers, CONNECTION, "keep-alive")
    } else {
        has_token(&headers, CONNECTION, "close")
    };
    Ok(Head {
        method: method.to_string(),
        uri,
        headers,
        content_length,
        close,
    })
}

/// Whether a comma-separated header such as `Connection` lists `token`.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status line and headers of an answer. `content_length` is `None` for
/// statuses that have no body.
fn response_head(
    status: u16,
    headers: &[(String, String)],
    content_length: Option<u64>,
    close: bool,
) -> Vec<u8> {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        // Framing is ours to write, see `Fault::Status`.
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if let Some(n) = content_length {
        let _ = write!(head, "content-length: {n}\r\n");
    }
    if close
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("connection"))
    {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Writes a whole answer; returns whether the connection stays open.
async fn answer(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &str,
    head_only: bool,
    client_close: bool,
) -> bool {
    let close = client_close
        || headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
    // RFC 9110 §6.4.1: 1xx, 204 and 304 answers never have a body.
    let has_body = !matches!(status, 100..=199 | 204 | 304);
    let length = has_body.then_some(body.len() as u64);
    let mut out = response_head(status, headers, length, close);
    if has_body && !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out).await.is_ok() && !close
}

/// Streams a 200 with `size` bytes of body; returns whether the connection
/// stays open. Stops quietly when the peer goes away, which is what a client
/// that reads only a prefix does.
async fn huge_body(stream: &mut TcpStream, size: u64, head_only: bool, close: bool) -> bool {
    let head = response_head(
        200,
        &[(
            "content-type".to_string(),
            "application/octet-stream".to_string(),
        )],
        Some(size),
        close,
    );
    if stream.write_all(&head).await.is_err() {
        return false;
    }
    if !head_only {
        let chunk = [b'x'; CHUNK];
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            if stream.write_all(&chunk[..n]).await.is_err() {
                return false;
            }
            left -= n as u64;
        }
    }
    !close
}

/// Closes gracefully: FIN first, then read and discard until the peer closes
/// too (or [`LINGER`] passes). Closing a socket with unread input makes the
/// kernel send RST, which can destroy the answer we just wrote before the
/// client reads it; that must only happen for [`Fault::Reset`].
async fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 8192];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    /// Redirects are never followed, like the engine's client, and every
    /// request is bounded.
    fn client(timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn status_answers_with_its_headers_and_body_and_records_the_request() {
        let mut receiver = FaultReceiver::start(Fault::status_with(
            503,
            &[("retry-after", "7"), ("x-why", "maintenance")],
            "down for a bit",
        ))
        .await;
        let response = client(WAIT)
            .post(format!("{}/hook/1?attempt=2", receiver.url))
            .header("webhook-id", "msg_1")
            .body("{\"hello\":\"world\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "7");
        assert_eq!(response.headers()["x-why"], "maintenance");
        assert_eq!(response.text().await.unwrap(), "down for a bit");

        let got = receiver.next(WAIT).await;
        assert_eq!(got.path, "/hook/1");
        assert_eq!(got.query.as_deref(), Some("attempt=2"));
        assert_eq!(got.header("webhook-id"), "msg_1");
        assert_eq!(got.json()["hello"], "world");
        assert_eq!(receiver.count(), 1);
    }

    #[tokio::test]
    async fn helpers_build_the_answers_they_name() {
        let receiver = FaultReceiver::start(Fault::ok()).await;
        receiver.script([Fault::retry_after(503, 30), Fault::status(410)]);
        let client = client(WAIT);

        let response = client.post(&receiver.url).send().await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "30");

        let response = client.post(&receiver.url).send().await.unwrap();
        assert_eq!(response.status(), 410);
        assert_eq!(response.text().await.unwrap(), "");

        let response = client.post(&receiver.url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
    }

    #[tokio::test]
    async fn discord_429_has_rate_limit_headers_and_a_json_body() {
        let receiver = FaultReceiver::start(Fault::discord_429(1.5)).await;
        let response = client(WAIT).post(&receiver.url).send().await.unwrap();
        assert_eq!(response.status(), 429);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-ratelimit-limit"], "5");
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        assert_eq!(headers["x-ratelimit-reset-after"], "1.5");
        assert_eq!(headers["retry-after"], "2");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["retry_after"].as_f64(), Some(1.5));
        assert_eq!(body["global"], false);
        assert_eq!(body["message"], "You are being rate limited.");
    }

    #[tokio::test]
    async fn redirect_is_answered_not_followed() {
        let mut receiver =
            FaultReceiver::start(Fault::redirect("http://127.0.0.1:9/elsewhere")).await;
        let response = client(WAIT)
            .post(&receiver.url)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 307);
        assert_eq!(
            response.headers()["location"],
            "http://127.0.0.1:9/elsewhere"
        );
        receiver.next(WAIT).await;
        assert_eq!(receiver.count(), 1);
    }

    #[tokio::test]
    async fn slow_outlasts_a_short_client_timeout() {
        let mut receiver = FaultReceiver::start(Fault::Slow(Duration::from_secs(30))).await;
        let err = client(Duration::from_millis(200))
            .post(&receiver.url)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        // Recorded before the wait, not after it.
        receiver.next(WAIT).await;
    }

    #[tokio::test]
    async fn slow_answers_200_once_its_delay_is_over() {
        let receiver = FaultReceiver::start(Fault::Slow(Duration::from_millis(50))).await;
        let response = client(WAIT).post(&receiver.url).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }

    #[tokio::test]
    async fn reset_is_a_client_error_and_still_recorded() {
        let mut receiver = FaultReceiver::start(Fault::Reset).await;
        let err = client(WAIT)
            .post(&receiver.url)
            .body("doomed")
            .send()
            .await
            .unwrap_err();
        assert!(!err.is_timeout(), "a reset must fail fast: {err:?}");
        assert!(err.status().is_none(), "{err:?}");
        assert_eq!(receiver.next(WAIT).await.body, "doomed");
    }

    #[tokio::test]
    async fn reset_sends_rst_not_fin() {
        let receiver = FaultReceiver::start(Fault::Reset).await;
        let mut stream = TcpStream::connect(receiver.url.trim_start_matches("http://"))
            .await
            .unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .unwrap();
        let err = read.expect_err("expected a reset, not an answer or EOF");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn huge_body_can_be_read_in_part_and_dropped() {
        let size = 1u64 << 30;
        let receiver = FaultReceiver::start(Fault::HugeBody(size)).await;
        let client = client(WAIT);
        tokio::time::timeout(WAIT, async {
            let mut response = client.post(&receiver.url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.content_length(), Some(size));
            let mut read = 0;
            while read < 16 << 10 {
                read += response
                    .chunk()
                    .await
                    .unwrap()
                    .expect("body ended early")
                    .len();
            }
            drop(response);
            // The receiver is still fine after the abandoned stream.
            receiver.script([Fault::ok()]);
            let response = client.post(&receiver.url).send().await.unwrap();
            assert_eq!(response.text().await.unwrap(), "ok");
        })
        .await
        .expect("huge body blocked the client");
    }

    #[tokio::test]
    async fn huge_body_ends_at_its_size() {
        let size = 3 * CHUNK as u64 + 7;
        let receiver = FaultReceiver::start(Fault::HugeBody(size)).await;
        let body = client(WAIT)
            .post(&receiver.url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len() as u64, size);
        assert!(body.iter().all(|&b| b == b'x'));
    }

    #[tokio::test]
    async fn black_hole_times_out_on_the_client_and_is_recorded() {
        let mut receiver = FaultReceiver::start(Fault::BlackHole).await;
        let err = client(Duration::from_millis(200))
            .post(&receiver.url)
            .body("into the void")
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(receiver.next(WAIT).await.body, "into the void");
    }

    #[tokio::test]
    async fn dropping_the_receiver_closes_held_connections_and_the_listener() {
        let mut receiver = FaultReceiver::start(Fault::BlackHole).await;
        let addr = receiver.url.trim_start_matches("http://").to_string();
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        receiver.next(WAIT).await;
        drop(receiver);
        // The black hole's task is gone once its socket closes...
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
        // ...and the listener went before it (the accept loop owns both).
        assert!(TcpStream::connect(&addr).await.is_err());
    }

    #[tokio::test]
    async fn keep_alive_reuses_one_connection() {
        let receiver = FaultReceiver::start(Fault::ok()).await;
        let client = client(WAIT);
        for _ in 0..2 {
            let response = client.post(&receiver.url).body("x").send().await.unwrap();
            assert_eq!(response.text().await.unwrap(), "ok");
        }
        assert_eq!(receiver.count(), 2);
        assert_eq!(receiver.connections(), 1);
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_on_one_connection() {
        let mut receiver = FaultReceiver::start(Fault::ok()).await;
        receiver.script([Fault::status_with(201, &[], "first")]);
        let mut stream = TcpStream::connect(receiver.url.trim_start_matches("http://"))
            .await
            .unwrap();
        stream
            .write_all(
                b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\none\
                  POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\ntwo",
            )
            .await
            .unwrap();
        let mut answers = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut answers))
            .await
            .unwrap()
            .unwrap();
        let answers = String::from_utf8(answers).unwrap();
        let first = answers.find("HTTP/1.1 201 Created").unwrap();
        let second = answers.find("HTTP/1.1 200 OK").unwrap();
        assert!(first < second, "{answers}");
        assert!(answers.ends_with("\r\n\r\nok"), "{answers}");
        assert_eq!(receiver.connections(), 1);
        let got = receiver.drain();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].path.as_str(), &got[0].body[..]),
            ("/a", &b"one"[..])
        );
        assert_eq!(
            (got[1].path.as_str(), &got[1].body[..]),
            ("/b", &b"two"[..])
        );
    }

    #[tokio::test]
    async fn chunked_request_gets_400_and_the_connection_closes() {
        let receiver = FaultReceiver::start(Fault::ok()).await;
        let mut stream = TcpStream::connect(receiver.url.trim_start_matches("http://"))
            .await
            .unwrap();
        stream
            .write_all(
                b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
            )
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
            .await
            .expect("the connection was not closed")
            .unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
            "{answer:?}"
        );
        assert_eq!(receiver.count(), 0);
    }

    #[tokio::test]
    async fn script_beats_the_default_in_order() {
        let receiver = FaultReceiver::start(Fault::status(500)).await;
        receiver.script([Fault::ok(), Fault::status(404)]);
        let client = client(WAIT);
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(
                client
                    .post(&receiver.url)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        assert_eq!(statuses, [200, 404, 500]);
        receiver.set_default(Fault::status(202));
        let response = client.post(&receiver.url).send().await.unwrap();
        assert_eq!(response.status(), 202);
    }

    #[tokio::test]
    async fn rule_gets_indices_in_order_of_arrival() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let receiver = FaultReceiver::start_with_rule({
            let seen = seen.clone();
            move |i, request| {
                seen.lock().unwrap().push((i, request.path.clone()));
                if i % 3 == 2 {
                    Fault::status(500)
                } else {
                    Fault::ok()
                }
            }
        })
        .await;
        let client = client(WAIT);
        let mut statuses = Vec::new();
        for i in 0..5 {
            let url = format!("{}/{i}", receiver.url);
            statuses.push(client.post(url).send().await.unwrap().status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 500, 200, 200]);
        let expected: Vec<_> = (0..5).map(|i| (i, format!("/{i}"))).collect();
        assert_eq!(*seen.lock().unwrap(), expected);

        // A scripted answer takes its index without asking the rule.
        receiver.script([Fault::status(418)]);
        let response = client.post(&receiver.url).send().await.unwrap();
        assert_eq!(response.status(), 418);
        let response = client.post(&receiver.url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(seen.lock().unwrap().last().unwrap().0, 6);

        // set_default ends the rule.
        receiver.set_default(Fault::status(503));
        let response = client.post(&receiver.url).send().await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(seen.lock().unwrap().len(), 6);
        assert_eq!(receiver.count(), 8);
    }
}
