//! Admission and drain, shared by every front door of a process: while draining, new
//! inference requests are refused and shutdown waits for admitted ones to finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use switchyard_protocol::ApiError;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Admission {
    draining: AtomicBool,
    active: AtomicUsize,
    idle: Notify,
}

impl Admission {
    pub fn new() -> Arc<Self> {
        Arc::new(Admission::default())
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stops admitting inference requests; health and readiness turn negative.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Admits one inference request, or refuses it while draining. The ticket is held until
    /// the response (including a stream) is complete.
    pub fn admit(self: &Arc<Self>) -> Result<ActiveTicket, ApiError> {
        if self.is_draining() {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        self.active.fetch_add(1, Ordering::AcqRel);
        Ok(ActiveTicket {
            admission: self.clone(),
        })
    }

    /// Requests admitted and not finished.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Waits until no admitted request is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One admitted request; releases its slot on drop.
pub struct ActiveTicket {
    admission: Arc<Admission>,
}

impl Drop for ActiveTicket {
    fn drop(&mut self) {
        if self.admission.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.admission.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_refuses_new_requests_and_waits_for_admitted_ones() {
        let admission = Admission::new();
        let ticket = admission.admit().unwrap();
        admission.start_draining();
        let err = admission.admit().err().unwrap();
        assert_eq!(err.kind, switchyard_protocol::ErrorKind::Unavailable);
        assert_eq!(admission.active(), 1);
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.wait_idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(ticket);
        waiter.await.unwrap();
        assert_eq!(admission.active(), 0);
    }
}
