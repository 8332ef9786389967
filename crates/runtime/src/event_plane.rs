//! The event plane: worker → every frontend replica, fire and forget.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::WorkerId;

/// A worker's current load, as it measures it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub active_requests: u32,
    pub waiting_requests: u32,
    pub kv_used_blocks: u64,
    pub kv_total_blocks: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WorkerEventKind {
    Load(LoadReport),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerEvent {
    pub worker: WorkerId,
    pub kind: WorkerEventKind,
}

/// Publish/subscribe of worker events. Delivery is best effort: a lagging subscriber loses
/// old events and must rely on the next report (load) or a state dump (KV, later).
pub trait EventPlane: Send + Sync + 'static {
    fn publish(&self, event: WorkerEvent);
    fn subscribe(&self) -> broadcast::Receiver<WorkerEvent>;
}

/// A bounded in-process broadcast channel.
#[derive(Clone)]
pub struct InProcessEventPlane {
    tx: broadcast::Sender<WorkerEvent>,
}

impl InProcessEventPlane {
    pub fn new(capacity: usize) -> Self {
        InProcessEventPlane {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }
}

impl EventPlane for InProcessEventPlane {
    fn publish(&self, event: WorkerEvent) {
        // No subscriber is fine: nobody routes yet.
        let _ = self.tx.send(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<WorkerEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_receive_published_events() {
        let plane = InProcessEventPlane::new(8);
        let mut rx = plane.subscribe();
        let event = WorkerEvent {
            worker: WorkerId(3),
            kind: WorkerEventKind::Load(LoadReport {
                active_requests: 2,
                ..Default::default()
            }),
        };
        plane.publish(event.clone());
        assert_eq!(rx.try_recv().unwrap(), event);
    }
}
