//! The request plane: open a token stream for a preprocessed request on a chosen worker.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use switchyard_engines::{Engine, EngineStream};
use switchyard_protocol::PreprocessedRequest;

use crate::{RuntimeError, WorkerId, WorkerInstance};

/// Sends requests to workers. Dropping the returned stream cancels the request on the worker.
#[async_trait]
pub trait RequestPlane: Send + Sync + 'static {
    async fn generate(
        &self,
        worker: &WorkerInstance,
        request: PreprocessedRequest,
    ) -> Result<EngineStream, RuntimeError>;
}

/// Calls engines living in this process; no serialization, no copies.
#[derive(Clone, Default)]
pub struct InProcessRequestPlane {
    engines: Arc<RwLock<HashMap<WorkerId, Arc<dyn Engine>>>>,
}

impl InProcessRequestPlane {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `engine` reachable as `id` until [`Self::remove`].
    pub fn insert(&self, id: WorkerId, engine: Arc<dyn Engine>) {
        self.engines.write().insert(id, engine);
    }

    pub fn remove(&self, id: WorkerId) {
        self.engines.write().remove(&id);
    }
}

#[async_trait]
impl RequestPlane for InProcessRequestPlane {
    async fn generate(
        &self,
        worker: &WorkerInstance,
        request: PreprocessedRequest,
    ) -> Result<EngineStream, RuntimeError> {
        let engine = self.engines.read().get(&worker.id).cloned();
        match engine {
            Some(engine) => Ok(engine.generate(request)),
            None => Err(RuntimeError::Unreachable(
                worker.id,
                "no such in-process worker".into(),
            )),
        }
    }
}
