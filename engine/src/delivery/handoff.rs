//! Fresh deliveries go from ingest straight to the dispatcher.
//!
//! Before its transaction, an ingest reserves room in the handoff; the
//! transaction then inserts at most that many of the new deliveries already
//! leased to this process (under a claim token of their own) and returns
//! what is needed to send them; after the commit they are handed over here
//! and the unused reservation is given back. The dispatcher needs no claim
//! query for fresh work. The bound is real: reservations never exceed the
//! capacity, so the channel can never hold more (`try_send` cannot fail for
//! lack of room). Deliveries beyond it are stored unleased for the
//! dispatcher to claim. Nothing depends on the handoff for safety: if the
//! process dies, the leases run out and the deliveries are claimed again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::id::now_ms;
use crate::store::deliveries::Claimed;
use crate::store::events::LeaseToSelf;

pub struct Handoff {
    owner: Arc<str>,
    lease: Duration,
    capacity: usize,
    /// Reserved or queued, never above `capacity`.
    used: AtomicUsize,
    claims: AtomicU64,
    tx: mpsc::Sender<Claimed>,
    /// Endpoints whose lanes are full: ingest stores their deliveries
    /// unleased (the dispatcher claims them when there is room) rather than
    /// handing over what the lane would only send back.
    saturated: RwLock<Arc<HashSet<String>>>,
    /// Wakes the dispatcher to claim from the store.
    pub wake: Notify,
}

pub struct HandoffReceiver {
    pub(super) rx: mpsc::Receiver<Claimed>,
}

/// Room reserved by one ingest; give it back with [`Handoff::deliver`] or
/// [`Handoff::cancel`].
#[derive(Debug)]
pub struct Reservation {
    pub lease: LeaseToSelf,
}

impl Handoff {
    /// A handoff for the process `owner`, holding at most `capacity` deliveries.
    pub fn new(
        owner: Arc<str>,
        lease: Duration,
        capacity: usize,
    ) -> (Arc<Handoff>, HandoffReceiver) {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let handoff = Handoff {
            owner,
            lease,
            capacity,
            used: AtomicUsize::new(0),
            claims: AtomicU64::new(0),
            tx,
            saturated: RwLock::default(),
            wake: Notify::new(),
        };
        (Arc::new(handoff), HandoffReceiver { rx })
    }

    pub fn owner(&self) -> &Arc<str> {
        &self.owner
    }

    /// A new claim token of this process: `<owner>/<n>`.
    pub fn token(&self) -> Arc<str> {
        let n = self.claims.fetch_add(1, Ordering::Relaxed);
        format!("{}/{n}", self.owner).into()
    }

    /// Reserves room for up to `want` deliveries (fewer when the handoff is
    /// nearly full, none when it is full).
    pub fn reserve(&self, want: usize) -> Reservation {
        let mut got = 0;
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                got = want.min(self.capacity.saturating_sub(used));
                Some(used + got)
            });
        let skip = self
            .saturated
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Reservation {
            lease: LeaseToSelf {
                owner: self.token(),
                until: now_ms() + self.lease.as_millis() as i64,
                max: got,
                skip,
            },
        }
    }

    /// Hands over committed, leased deliveries (at most what was reserved),
    /// gives back the rest of the reservation, and wakes the dispatcher to
    /// claim the `unleased` ones.
    pub fn deliver(&self, reservation: Reservation, leased: Vec<Claimed>, unleased: usize) {
        let unused = reservation.lease.max.saturating_sub(leased.len());
        self.used.fetch_sub(unused, Ordering::AcqRel);
        for job in leased {
            if self.tx.try_send(job).is_err() {
                // The dispatcher has stopped (room was reserved, so it is not
                // for lack of it): the lease runs out and the delivery is
                // claimed after the restart.
                self.used.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if unleased > 0 {
            self.wake.notify_one();
        }
    }

    /// Gives back a reservation whose ingest stored nothing.
    pub fn cancel(&self, reservation: Reservation) {
        self.used.fetch_sub(reservation.lease.max, Ordering::AcqRel);
    }

    /// The dispatcher says which endpoints' lanes are full now.
    pub(super) fn set_saturated(&self, endpoints: Vec<String>) {
        let mut current = self.saturated.write().unwrap_or_else(|p| p.into_inner());
        if current.len() != endpoints.len() || endpoints.iter().any(|e| !current.contains(e)) {
            *current = Arc::new(endpoints.into_iter().collect());
        }
    }

    /// The dispatcher took one delivery off the channel.
    pub(super) fn taken(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }

    /// Reserved or queued right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_exceed_the_capacity_and_come_back() {
        let (handoff, _rx) = Handoff::new("node_x".into(), Duration::from_secs(60), 10);
        let a = handoff.reserve(7);
        let b = handoff.reserve(7);
        let c = handoff.reserve(1);
        assert_eq!((a.lease.max, b.lease.max, c.lease.max), (7, 3, 0));
        assert_ne!(a.lease.owner, b.lease.owner, "each claim has its own token");
        assert!(a.lease.owner.starts_with("node_x/"));
        handoff.cancel(b);
        handoff.deliver(a, Vec::new(), 0);
        handoff.cancel(c);
        assert_eq!(handoff.used(), 0);
    }
}
