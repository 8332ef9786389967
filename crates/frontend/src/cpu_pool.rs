//! A bounded gate in front of tokio's blocking pool for CPU-bound work (template rendering,
//! tokenization): at most one job per core runs at a time, the rest wait in FIFO order on an
//! async semaphore, so a burst of requests neither blocks the reactor nor spawns hundreds of
//! threads that fight over two cores.

use std::sync::Arc;

use switchyard_protocol::ApiError;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct CpuPool {
    permits: Arc<Semaphore>,
}

impl CpuPool {
    pub fn new(threads: usize) -> Self {
        CpuPool {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// One job per available core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Runs `job` on a blocking thread once a permit is free.
    pub async fn run<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::unavailable("the server is shutting down"))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| ApiError::internal(format!("preprocessing task failed: {e}")))
    }
}
