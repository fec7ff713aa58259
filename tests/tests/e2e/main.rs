//! End-to-end tests: the real `hookline` binary, real HTTP receivers on
//! 127.0.0.1, a real SQLite file and real compiled Wasm plugins. One test
//! binary made of modules, so it links once. `e2e_postgres.rs` compiles the
//! modules that touch the store again, with every engine on PostgreSQL.

/// The database this binary's engines run on.
const BACKEND: hookline_tests::Backend = hookline_tests::Backend::Sqlite;

mod api_errors;
mod at_rest;
mod auth;
mod cli;
mod crash;
mod delivery;
mod events_in;
mod handshake;
mod hot_reload;
mod lifecycle;
mod observability;
mod openapi;
mod other_languages;
mod payload_filters;
mod plugins;
mod reliability;
mod rotation;
mod sandbox;
mod scaffold;
mod ssrf;
mod ui;
