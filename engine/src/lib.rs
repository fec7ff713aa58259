//! # Hookline
//!
//! A webhook and chat-notification delivery engine. Applications emit
//! CloudEvents; Hookline stores them durably, fans them out to subscribed
//! endpoints, turns each into the payload the endpoint's integration expects
//! by running a WebAssembly plugin, signs it (Standard Webhooks), sends it and
//! retries it.
//!
//! The crate is cut by responsibility; dependencies point one way
//! (`api` → `store`, `plugins`; `delivery` → `store`, `plugins`):
//!
//! - [`api`]: the HTTP API (axum) under `/v1`.
//! - [`cloudevent`] and [`filter`]: what an acceptable event and an event-type
//!   filter are.
//! - [`store`]: SQLite or PostgreSQL through diesel, with a group-committing
//!   writer; the database is the queue.
//! - [`delivery`]: the dispatcher (claims under a lease, bounded concurrency),
//!   the sender, Standard Webhooks signing, retry policy and verdicts.
//! - [`plugins`]: the wasmtime component host, the registry of plugins in
//!   service, sandbox limits, and the built-in plugins embedded at build time.
//! - [`metrics`]: the Prometheus metrics every part records into.
//! - [`ui`]: the dashboard at `/ui`, a page over the API.
//! - [`server`] and [`config`]: wiring and the validated configuration.
//! - [`cli`]: the `hookline` command line.
//!
//! # Example
//!
//! ```text
//! $ hookline serve
//! hookline listening on http://127.0.0.1:4665
//! ```

pub mod api;
pub mod auth;
pub mod cli;
pub mod cloudevent;
pub mod config;
pub mod delivery;
pub mod filter;
pub mod id;
pub mod metrics;
pub mod payload_filter;
pub mod plugins;
pub mod server;
pub mod store;
pub mod ui;
