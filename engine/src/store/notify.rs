//! Wake-ups between processes sharing a PostgreSQL database.
//!
//! A transaction that leaves deliveries claimable by anyone (an ingest whose
//! process could not take them all, leases given back or released, held
//! deliveries resumed, retries an operator asked for) calls
//! [`announce_work`], a `NOTIFY` that PostgreSQL delivers to every listening
//! process when, and only if, the transaction commits (and once per
//! transaction, however many jobs of a group commit announced). Each process
//! listens on a connection of its own ([`listen`]) and wakes its dispatcher,
//! which claims at once instead of at its next poll.
//!
//! The listener reads what the server has already sent (libpq's
//! `PQconsumeInput`, no round trip) every [`LISTEN_TICK`]: an idle process
//! costs a syscall per tick, wake-ups reach it within a tick, and the
//! notifications of a busy period coalesce into one wake-up per tick. On
//! SQLite there is one process, so both are no-ops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::RunQueryDsl as _;
use diesel::pg::PgConnection;

use super::connection::DatabaseUrl;
use super::{Conn, StoreError};

/// The channel claimable work is announced on.
const CHANNEL: &str = "hookline_work";

/// How often the listener looks for notifications.
pub const LISTEN_TICK: Duration = Duration::from_millis(20);

/// Tells the other processes, once this transaction commits, that there are
/// deliveries to claim.
pub fn announce_work(conn: &mut Conn) -> Result<(), StoreError> {
    if matches!(conn, Conn::Postgres(_)) {
        diesel::sql_query(format!("NOTIFY {CHANNEL}")).execute(conn)?;
    }
    Ok(())
}

/// Calls `wake` whenever another transaction announced work (and after each
/// reconnection, since announcements made meanwhile were missed), until
/// `stop` is set. Returns at once on SQLite.
pub fn listen(url: &DatabaseUrl, stop: Arc<AtomicBool>, wake: Arc<dyn Fn() + Send + Sync>) {
    let DatabaseUrl::Postgres(text) = url else {
        return;
    };
    let (text, shown) = (text.clone(), url.to_string());
    let spawned = std::thread::Builder::new()
        .name("hookline-listen".into())
        .spawn(move || {
            let mut conn: Option<PgConnection> = None;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(LISTEN_TICK);
                let Some(c) = conn.as_mut() else {
                    conn = subscribe(&text);
                    if conn.is_some() {
                        wake();
                    } else {
                        // Not faster than the writer's reconnects.
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    continue;
                };
                let (mut woken, mut lost) = (false, None);
                for notification in c.notifications_iter() {
                    match notification {
                        Ok(_) => woken = true,
                        Err(e) => {
                            lost = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = lost {
                    tracing::warn!(database = %shown, error = %e, "lost the connection that listens for work; reconnecting");
                    conn = None;
                }
                if woken {
                    wake();
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "failed to start the listener for work announced by other processes");
    }
}

fn subscribe(url: &str) -> Option<PgConnection> {
    use diesel::Connection as _;
    let mut conn = PgConnection::establish(&super::connection::with_timeouts(url)).ok()?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .ok()?;
    Some(conn)
}
