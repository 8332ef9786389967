//! The event plane: worker → every frontend replica, fire and forget.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use switchyard_engines::{EngineEvent, EngineEventSink};
use switchyard_protocol::kv::KvCacheEvent;

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
    Kv(KvCacheEvent),
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

/// Publishes one engine's events as a worker's events on an event plane.
pub struct EngineEventPublisher<P: EventPlane> {
    pub plane: P,
    pub worker: WorkerId,
}

impl<P: EventPlane> EngineEventSink for EngineEventPublisher<P> {
    fn publish(&self, event: EngineEvent) {
        let kind = match event {
            EngineEvent::Kv(kv) => WorkerEventKind::Kv(kv),
            EngineEvent::Load(load) => WorkerEventKind::Load(LoadReport {
                active_requests: load.active_requests,
                waiting_requests: load.waiting_requests,
                kv_used_blocks: load.kv_used_blocks,
                kv_total_blocks: load.kv_total_blocks,
            }),
        };
        self.plane.publish(WorkerEvent {
            worker: self.worker,
            kind,
        });
    }
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
