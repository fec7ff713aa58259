//! A real HTTP receiver on 127.0.0.1 that records requests and answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use tokio::sync::mpsc;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

type Answer = (u16, Vec<(String, String)>, String);

#[derive(Clone)]
struct Shared {
    tx: mpsc::UnboundedSender<Received>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    default: Answer,
    /// When set, each request waits for a permit before it is answered.
    hold: Option<Arc<tokio::sync::Semaphore>>,
}

pub struct Receiver {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    rx: mpsc::UnboundedReceiver<Received>,
    shared: Shared,
}

impl Receiver {
    /// Answers 200 `ok` to everything.
    pub async fn start() -> Receiver {
        Receiver::answering(200, "ok").await
    }

    /// Answers `status` with `body` unless a scripted answer is queued.
    pub async fn answering(status: u16, body: &str) -> Receiver {
        Receiver::build(status, body, None).await
    }

    /// Records each request at once but answers it (200 `ok`) only after
    /// [`Receiver::release`], so a test can hold a delivery in flight.
    pub async fn holding() -> Receiver {
        Receiver::build(200, "ok", Some(Arc::new(tokio::sync::Semaphore::new(0)))).await
    }

    /// Lets `n` held requests be answered.
    pub fn release(&self, n: usize) {
        if let Some(hold) = &self.shared.hold {
            hold.add_permits(n);
        }
    }

    async fn build(status: u16, body: &str, hold: Option<Arc<tokio::sync::Semaphore>>) -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            tx,
            script: Arc::default(),
            default: (status, Vec::new(), body.to_string()),
            hold,
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, rx, shared }
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, answers: &[(u16, &str)]) {
        let mut script = self.shared.script.lock().unwrap();
        script.extend(answers.iter().map(|(s, b)| (*s, Vec::new(), b.to_string())));
    }

    /// Queues one answer with headers.
    pub fn script_with_headers(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.shared
            .script
            .lock()
            .unwrap()
            .push_back((status, headers, body.to_string()));
    }

    /// The next request, failing the test after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Received {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(r)) => r,
            _ => panic!("receiver {} got nothing within {timeout:?}", self.url),
        }
    }

    /// Requests that arrived and were not taken yet.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            out.push(r);
        }
        out
    }
}

async fn handle(State(shared): State<Shared>, request: Request) -> impl IntoResponse {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let answer = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| shared.default.clone());
    let _ = shared.tx.send(Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
        at: std::time::Instant::now(),
    });
    if let Some(hold) = &shared.hold
        && let Ok(permit) = hold.acquire().await
    {
        permit.forget();
    }
    let (status, headers, body) = answer;
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    (StatusCode::from_u16(status).unwrap(), map, body)
}
