//! One request at a time per session, at the node that serves it (seed 004's lock on
//! the primary state): requests that share a session wait in turn rather than run from
//! the same version and have all but one refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OwnedMutexGuard;

use crate::session::SessionId;

/// The sessions locked on this node, each by the request that runs on it.
#[derive(Debug, Default)]
pub(crate) struct SessionLocks {
    locks: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>,
}

/// A session held by one request, until it is dropped: the request's reply is made, or
/// the request's future is dropped (its deadline passed, its connection closed). So a
/// holder that dies or hangs holds it no longer than its own deadline: that is the lease.
#[derive(Debug)]
pub struct SessionLease {
    locks: Arc<SessionLocks>,
    session: SessionId,
    guard: Option<OwnedMutexGuard<()>>,
}

impl SessionLocks {
    /// Waits for `session` until `deadline`; `None` if it stayed held past it.
    pub(crate) async fn lock(
        self: &Arc<Self>,
        session: &SessionId,
        deadline: Instant,
    ) -> Option<SessionLease> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(locks.entry(session.clone()).or_default())
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        let guard = tokio::time::timeout_at(deadline, lock.lock_owned())
            .await
            .ok()?;
        Some(SessionLease {
            locks: Arc::clone(self),
            session: session.clone(),
            guard: Some(guard),
        })
    }

    /// How many sessions have a lock entry (held, or waited for).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the entry once nobody holds or waits for it: the map holds one Arc.
        if locks
            .get(&self.session)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.session);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scone::{EndpointId, ObjectId, ServiceId};

    use super::*;

    fn session(byte: u8) -> SessionId {
        SessionId {
            service: ServiceId::new("cart").unwrap(),
            endpoint: EndpointId::from_bytes([byte; 16]),
            object: ObjectId(0),
        }
    }

    #[tokio::test]
    async fn one_holder_at_a_time_waiters_time_out_and_entries_go_away() {
        let locks = Arc::new(SessionLocks::default());
        let soon = || Instant::now() + Duration::from_millis(50);
        let held = locks.lock(&session(1), soon()).await.expect("free");
        assert!(
            locks.lock(&session(1), soon()).await.is_none(),
            "held past the deadline"
        );
        let other = locks
            .lock(&session(2), soon())
            .await
            .expect("another session is free");
        drop(held);
        let again = locks.lock(&session(1), soon()).await.expect("free again");
        drop((again, other));
        assert_eq!(locks.len(), 0, "no entry left behind");
    }
}
