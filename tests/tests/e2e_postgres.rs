//! The end-to-end suite on PostgreSQL: the modules of `e2e/` that touch the
//! store, compiled again with every engine on a PostgreSQL database of its
//! own (created on the server `HOOKLINE_TEST_POSTGRES_URL` names, dropped
//! with the engine). Without that variable each test says it is skipped.
//!
//! Left out, because they exercise nothing the database changes and take
//! minutes each: `hot_reload`, `sandbox`, `other_languages` and `scaffold`
//! (the plugin host, its sandbox, and building plugins). `at_rest` reads the
//! bytes of the SQLite file. `cluster` (several processes on one database)
//! is here only.

/// The database this binary's engines run on.
const BACKEND: hookline_tests::Backend = hookline_tests::Backend::Postgres;

#[path = "e2e/api_errors.rs"]
mod api_errors;
#[path = "e2e/auth.rs"]
mod auth;
#[path = "e2e/cluster.rs"]
mod cluster;
#[path = "e2e/crash.rs"]
mod crash;
#[path = "e2e/delivery.rs"]
mod delivery;
#[path = "e2e/events_in.rs"]
mod events_in;
#[path = "e2e/handshake.rs"]
mod handshake;
#[path = "e2e/lifecycle.rs"]
mod lifecycle;
#[path = "e2e/observability.rs"]
mod observability;
#[path = "e2e/payload_filters.rs"]
mod payload_filters;
#[path = "e2e/plugins.rs"]
mod plugins;
#[path = "e2e/reliability.rs"]
mod reliability;
#[path = "e2e/rotation.rs"]
mod rotation;
#[path = "e2e/ssrf.rs"]
mod ssrf;
