//! Fresh deliveries go from ingest straight to the dispatcher.
//!
//! The ingest transaction inserts a new event's deliveries already leased to
//! this process and returns what is needed to send them; after the commit the
//! API hands them over here. The dispatcher then needs no claim query for
//! fresh work. The claim path is left for retries, expired leases (another
//! process died) and whatever did not fit: the queue is bounded, and
//! deliveries beyond it are stored unleased for the dispatcher to claim.
//! Nothing depends on the handoff for safety: if the process dies, the
//! leases run out and the deliveries are claimed again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::id::now_ms;
use crate::store::deliveries::Claimed;
use crate::store::events::LeaseToSelf;

pub struct Handoff {
    owner: Arc<str>,
    lease: Duration,
    capacity: usize,
    queued: AtomicUsize,
    tx: mpsc::UnboundedSender<Claimed>,
    /// Wakes the dispatcher to claim from the store.
    pub wake: Notify,
}

pub struct HandoffReceiver {
    pub(super) rx: mpsc::UnboundedReceiver<Claimed>,
}

impl Handoff {
    /// A handoff for the process `owner`, holding at most `capacity` deliveries.
    pub fn new(
        owner: Arc<str>,
        lease: Duration,
        capacity: usize,
    ) -> (Arc<Handoff>, HandoffReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handoff = Handoff {
            owner,
            lease,
            capacity,
            queued: AtomicUsize::new(0),
            tx,
            wake: Notify::new(),
        };
        (Arc::new(handoff), HandoffReceiver { rx })
    }

    pub fn owner(&self) -> &Arc<str> {
        &self.owner
    }

    /// The lease an ingest may take for this process right now.
    pub fn lease(&self) -> LeaseToSelf {
        let queued = self.queued.load(Ordering::Relaxed);
        LeaseToSelf {
            owner: self.owner.clone(),
            until: now_ms() + self.lease.as_millis() as i64,
            max: self.capacity.saturating_sub(queued),
        }
    }

    /// Hands over committed, leased deliveries; wakes the dispatcher to claim
    /// the `unleased` ones.
    pub fn deliver(&self, leased: Vec<Claimed>, unleased: usize) {
        for job in leased {
            self.queued.fetch_add(1, Ordering::Relaxed);
            if self.tx.send(job).is_err() {
                // The dispatcher has stopped: the lease runs out and the
                // delivery is claimed after the restart.
                self.queued.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if unleased > 0 {
            self.wake.notify_one();
        }
    }

    pub(super) fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }
}
