//! Replies whose SCONEs are still being verified: a client's next request waits for them,
//! so the relay never attaches an older SCONE than the client's last reply carried.
//!
//! The relay answers the client first and verifies the reply's SCONEs in the background
//! (unless its store keeps them before the reply, as the durable mesh does; then the
//! wait below only covers concurrent requests of one client).
//! Without this, a client quick enough to send its next request before that verification
//! ends would get the previous SCONE attached and lose its last change. With it, the
//! next request of the same (client, service) waits until the verification is over, which
//! it usually is already (one signature check, 30 to 60 µs), at the cost of one map
//! lookup per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::HoldKey;

/// Verifications in flight, counted by (client, service). An entry lives only while its
/// count is above zero, so the map holds no more than the requests in flight.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Each key's count of verifications in flight, watched by the requests that wait.
    in_flight: Mutex<HashMap<HoldKey, watch::Sender<usize>>>,
    /// Verifications in flight in all, watched at shutdown.
    total: watch::Sender<usize>,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            in_flight: Mutex::default(),
            total: watch::Sender::new(0),
        }
    }
}

/// One verification in flight; it ends when this is dropped (done, failed, or its task
/// cancelled), so a waiter is never left waiting for a task that is gone.
#[derive(Debug)]
pub(crate) struct PendingGuard {
    pending: Arc<Pending>,
    key: HoldKey,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<HoldKey, watch::Sender<usize>>> {
        // Every update is one complete step: a panic elsewhere leaves consistent data.
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one more verification in flight for `key`, until the guard is dropped.
    pub(crate) fn start(self: &Arc<Self>, key: HoldKey) -> PendingGuard {
        self.total.send_modify(|total| *total += 1);
        let mut in_flight = self.lock();
        match in_flight.get(&key) {
            Some(count) => count.send_modify(|count| *count += 1),
            None => {
                in_flight.insert(key.clone(), watch::Sender::new(1));
            }
        }
        PendingGuard {
            pending: Arc::clone(self),
            key,
        }
    }

    /// Waits until no verification is in flight for `key`, or `limit` has passed;
    /// returns `false` if it gave up.
    pub(crate) async fn settled(&self, key: &HoldKey, limit: Duration) -> bool {
        let Some(mut count) = self.lock().get(key).map(watch::Sender::subscribe) else {
            return true;
        };
        // An error means the sender is gone, which happens only once the count is zero.
        let settled = tokio::time::timeout(limit, count.wait_for(|count| *count == 0)).await;
        settled.is_ok()
    }

    /// Waits until no verification at all is in flight, or `limit` has passed; returns
    /// `false` if it gave up.
    pub(crate) async fn all_settled(&self, limit: Duration) -> bool {
        let mut total = self.total.subscribe();
        let settled = tokio::time::timeout(limit, total.wait_for(|total| *total == 0)).await;
        settled.is_ok()
    }

    /// How many keys have verifications in flight.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        {
            let mut in_flight = self.pending.lock();
            if let Some(count) = in_flight.get(&self.key) {
                count.send_modify(|count| *count = count.saturating_sub(1));
                if *count.borrow() == 0 {
                    in_flight.remove(&self.key);
                }
            }
        }
        self.pending
            .total
            .send_modify(|total| *total = total.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use scone::{ClientId, ServiceId};

    use super::*;

    fn key(byte: u8) -> HoldKey {
        (
            ClientId::from_bytes([byte; 16]),
            ServiceId::new("cart").unwrap(),
        )
    }

    #[tokio::test]
    async fn a_waiter_is_released_when_the_last_verification_ends() {
        let pending = Arc::new(Pending::default());
        assert!(pending.settled(&key(1), Duration::ZERO).await);
        assert!(pending.all_settled(Duration::ZERO).await);
        let first = pending.start(key(1));
        let second = pending.start(key(1));
        let other = pending.start(key(2));
        assert_eq!(pending.len(), 2);

        let waiter = {
            let pending = Arc::clone(&pending);
            tokio::spawn(async move { pending.settled(&key(1), Duration::from_secs(10)).await })
        };
        drop(first);
        assert!(!pending.settled(&key(1), Duration::from_millis(1)).await);
        drop(second);
        let settled = tokio::time::timeout(Duration::from_secs(10), waiter).await;
        assert!(settled.unwrap().unwrap());
        // Another client's verification does not hold this one up, and ends on its own.
        assert_eq!(pending.len(), 1);
        assert!(!pending.all_settled(Duration::from_millis(1)).await);
        drop(other);
        assert_eq!(pending.len(), 0);
        assert!(pending.all_settled(Duration::ZERO).await);
    }
}
