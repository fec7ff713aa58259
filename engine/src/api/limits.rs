//! Limits on every request, before any handler runs: a body limit (routes
//! that take more set their own), a deadline, and a cap on requests in
//! progress that sheds load with 503 rather than queue without bound. Bodies
//! a handler did not read to the end are drained ([`super::linger`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Body limit of every route but `POST /v1/events` (which has its own).
pub const BODY_LIMIT: usize = 256 << 10;
/// How long a request may take before it is answered 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests in progress at once; more are refused with 503.
pub const MAX_IN_PROGRESS: usize = 1024;

/// The shared state of [`guard`].
#[derive(Clone)]
pub struct RequestLimits {
    in_progress: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

impl RequestLimits {
    pub fn new(max_in_progress: usize, timeout: Duration) -> RequestLimits {
        RequestLimits {
            in_progress: Arc::new(tokio::sync::Semaphore::new(max_in_progress)),
            timeout,
        }
    }
}

/// Middleware: refuses a request when too many are in progress, and
/// answers 503 when one runs past the deadline. (Handlers that must finish
/// what they started, such as ingest's commit and handoff, do it in a task of
/// their own, so cutting the request short loses nothing.)
pub async fn guard(State(limits): State<RequestLimits>, req: Request, next: Next) -> Response {
    let Ok(_permit) = limits.in_progress.clone().try_acquire_owned() else {
        return ApiError::Unavailable("too many requests in progress; try again shortly".into())
            .into_response();
    };
    // Whatever a handler leaves of the body is read after it answers, so the
    // client sees the answer (a 413, a 401) and not a reset. (A request shed
    // above is not drained: shedding must lighten the load.)
    let req = req.map(super::linger::Lingering::wrap);
    match tokio::time::timeout(limits.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "the request took longer than {} s",
            limits.timeout.as_secs()
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;

    /// A real server on loopback with `limits`, one slow route and one fast.
    async fn serve(limits: RequestLimits, release: Arc<tokio::sync::Notify>) -> String {
        let app = Router::new()
            .route(
                "/slow",
                get(move || {
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        "slow"
                    }
                }),
            )
            .route("/fast", get(|| async { "fast" }))
            .layer(axum::middleware::from_fn_with_state(limits, guard));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn a_request_past_the_deadline_is_answered_503() {
        let release = Arc::new(tokio::sync::Notify::new());
        let url = serve(RequestLimits::new(8, Duration::from_millis(200)), release).await;
        let r = reqwest::get(format!("{url}/slow")).await.unwrap();
        assert_eq!(r.status().as_u16(), 503);
        assert!(r.text().await.unwrap().contains("longer than"));
        let r = reqwest::get(format!("{url}/fast")).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    #[tokio::test]
    async fn requests_past_the_cap_are_refused_not_queued() {
        let release = Arc::new(tokio::sync::Notify::new());
        let url = serve(
            RequestLimits::new(1, Duration::from_secs(30)),
            release.clone(),
        )
        .await;
        let slow = tokio::spawn(reqwest::get(format!("{url}/slow")));
        // Wait until the slow request holds the only slot.
        let refused = loop {
            let r = reqwest::get(format!("{url}/fast")).await.unwrap();
            if r.status().as_u16() == 503 {
                break r;
            }
            tokio::task::yield_now().await;
        };
        assert!(refused.headers().contains_key("retry-after"));
        release.notify_one();
        assert_eq!(slow.await.unwrap().unwrap().status().as_u16(), 200);
        let r = reqwest::get(format!("{url}/fast")).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "the slot came back");
    }
}
