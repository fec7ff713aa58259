//! Lingering reads: what a handler leaves of a request body is read and
//! thrown away before the connection closes, so the client reads the answer.
//!
//! A handler may answer before the body is all in: 413 for a body past its
//! limit, 401 before a body is looked at. HTTP/1 cannot reuse a connection
//! whose request body was not read to its end, so the server closes it, and
//! closing a socket with unread bytes in it sends a reset. A client still
//! writing its body then sees "connection reset" instead of the 413 that
//! names the limit. Reading on (up to [`DRAIN_MAX_BYTES`] and
//! [`DRAIN_MAX_TIME`], nginx's `lingering_close` in spirit) lets the answer
//! reach the client and keeps the connection usable. At most [`MAX_DRAINS`]
//! run at once. A body read to its end costs nothing here.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody as _};
use futures::StreamExt as _;
use http_body::{Frame, SizeHint};

/// The most of an unwanted body read after the answer.
pub const DRAIN_MAX_BYTES: usize = 16 << 20;
/// How long an unwanted body is read after the answer.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);
/// Bodies drained at once; past this, an unwanted body is dropped and its
/// connection closed (many slow senders cannot hold the server's tasks).
pub const MAX_DRAINS: usize = 64;

/// Drains in progress.
static DRAINS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A request body that is read to its end (within bounds) when it is dropped
/// half-read.
pub struct Lingering {
    inner: Option<Body>,
    /// The body ended or failed: nothing is left to read.
    ended: bool,
}

impl Lingering {
    /// Wraps a request's body.
    pub fn wrap(body: Body) -> Body {
        if body.is_end_stream() {
            return body;
        }
        Body::new(Lingering {
            inner: Some(body),
            ended: false,
        })
    }
}

impl http_body::Body for Lingering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if self.ended || body.is_end_stream() {
            return;
        }
        // Dropped outside a runtime (a test, a shutdown): nothing to linger for.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        use std::sync::atomic::Ordering;
        if DRAINS.fetch_add(1, Ordering::Relaxed) >= MAX_DRAINS {
            DRAINS.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        runtime.spawn(async move {
            drain(body).await;
            DRAINS.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Reads and discards `body` until it ends, fails, or a bound is reached.
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut left = DRAIN_MAX_BYTES;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::{DefaultBodyLimit, Request};
    use axum::http::StatusCode;
    use axum::routing::post;

    /// A real server on loopback: `/limited` takes 1 KiB, `/refused` answers
    /// 401 without looking at the body. With `linger` off, bodies are not
    /// wrapped.
    async fn serve(linger: bool) -> String {
        let app = Router::new()
            .route(
                "/limited",
                post(|body: Bytes| async move { body.len().to_string() })
                    .layer(DefaultBodyLimit::max(1024)),
            )
            .route("/refused", post(|| async { StatusCode::UNAUTHORIZED }))
            .layer(axum::middleware::map_request(
                move |req: Request| async move {
                    if linger {
                        req.map(Lingering::wrap)
                    } else {
                        req
                    }
                },
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// Posts 4 MiB to `path` ten times; the statuses, or the transport errors.
    async fn post_big(url: &str, path: &str) -> Vec<Result<u16, String>> {
        let client = reqwest::Client::new();
        let body = vec![b'x'; 4 << 20];
        let mut seen = Vec::new();
        for _ in 0..10 {
            let r = client
                .post(format!("{url}{path}"))
                .body(body.clone())
                .send()
                .await;
            seen.push(r.map(|r| r.status().as_u16()).map_err(|e| format!("{e:?}")));
        }
        seen
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_reads_the_answer_to_a_body_the_server_did_not_want() {
        let url = serve(true).await;
        for (path, status) in [("/limited", 413), ("/refused", 401)] {
            let seen = post_big(&url, path).await;
            assert!(
                seen.iter().all(|s| s == &Ok(status)),
                "{path}: expected {status} every time, saw {seen:?}"
            );
        }
        // A body within the limit is read by the handler as before.
        let r = reqwest::Client::new()
            .post(format!("{url}/limited"))
            .body(vec![b'x'; 1000])
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "1000");
    }
}
