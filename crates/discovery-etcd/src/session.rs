//! The session task: keeps the lease alive and makes etcd hold exactly the registered
//! instances, in the order registrations and drops happened.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use switchyard_runtime::WorkerId;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use crate::{Backoff, Shared, bounded};

pub(crate) enum Command {
    /// Store the instance registered under this id (if it still is).
    Put(WorkerId),
    /// Remove a dropped registration's key.
    Delete(String),
    /// Answer once every earlier command is applied.
    Flush(oneshot::Sender<()>),
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    renew_every: Duration,
    keep_alive: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    /// Deletes not yet acknowledged; retried after a reconnect.
    pending_deletes: BTreeSet<String>,
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
        renew_every: Duration,
    ) -> Self {
        Session {
            shared,
            commands,
            renew_every,
            keep_alive: None,
            pending_deletes: BTreeSet::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut renew = tokio::time::interval(self.renew_every);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let outcome = tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.apply(command).await,
                    None => return,
                },
                _ = renew.tick() => self.renew().await,
            };
            if let Err(error) = outcome {
                self.recover(error).await;
                renew.reset();
            }
        }
    }

    async fn apply(&mut self, command: Command) -> Result<(), String> {
        match command {
            Command::Put(id) => {
                let entry = self
                    .shared
                    .registered
                    .lock()
                    .get(&id)
                    .map(|r| (r.key.clone(), r.json.clone()));
                match entry {
                    Some((key, json)) => self.put(key, json).await,
                    None => Ok(()),
                }
            }
            Command::Delete(key) => {
                self.pending_deletes.insert(key.clone());
                self.delete(key).await
            }
            Command::Flush(done) => {
                let _ = done.send(());
                Ok(())
            }
        }
    }

    async fn put(&self, key: String, json: String) -> Result<(), String> {
        let lease = self.shared.lease.load(Ordering::Relaxed);
        let mut kv = self.shared.client.kv_client();
        let options = PutOptions::new().with_lease(lease);
        bounded(
            self.shared.request_timeout,
            "put",
            kv.put(key, json, Some(options)),
        )
        .await
        .map(drop)
    }

    async fn delete(&mut self, key: String) -> Result<(), String> {
        let mut kv = self.shared.client.kv_client();
        bounded(
            self.shared.request_timeout,
            "delete",
            kv.delete(key.as_str(), None),
        )
        .await?;
        self.pending_deletes.remove(&key);
        Ok(())
    }

    /// One keep-alive round trip; an error when etcd does not answer or the lease is gone.
    async fn renew(&mut self) -> Result<(), String> {
        let limit = self.shared.request_timeout;
        let Some((keeper, responses)) = &mut self.keep_alive else {
            // Opening the stream renews once too.
            let lease = self.shared.lease.load(Ordering::Relaxed);
            let mut leases = self.shared.client.lease_client();
            let stream = bounded(limit, "keep-alive stream", leases.keep_alive(lease)).await?;
            self.keep_alive = Some(stream);
            return Ok(());
        };
        let round_trip = async {
            keeper.keep_alive().await?;
            responses.message().await
        };
        let result = match bounded(limit, "renew lease", round_trip).await {
            Ok(Some(response)) if response.ttl() > 0 => Ok(()),
            Ok(Some(_)) => Err("lease expired".to_string()),
            Ok(None) => Err("renew lease: stream closed".to_string()),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.keep_alive = None;
        }
        result
    }

    /// Retries until etcd holds the lease and every registered instance again.
    async fn recover(&mut self, error: String) {
        tracing::warn!("etcd registration interrupted, retrying: {error}");
        self.shared.mark_failed(&error);
        self.keep_alive = None;
        let mut backoff = Backoff::new();
        loop {
            match self.restore().await {
                Ok(()) => {
                    self.shared.mark_connected();
                    return;
                }
                Err(error) => {
                    tracing::debug!("etcd still unavailable: {error}");
                    self.shared.mark_failed(&error);
                    backoff.pause().await;
                }
            }
        }
    }

    async fn restore(&mut self) -> Result<(), String> {
        let limit = self.shared.request_timeout;
        let mut leases = self.shared.client.lease_client();
        let mut lease = self.shared.lease.load(Ordering::Relaxed);
        let remaining = bounded(limit, "lease status", leases.time_to_live(lease, None)).await?;
        if remaining.ttl() <= 0 {
            // Expired (or revoked) while we could not renew: etcd already deleted our keys.
            let granted = bounded(
                limit,
                "grant lease",
                leases.grant(self.shared.lease_ttl_secs, None),
            )
            .await?;
            tracing::warn!(
                old = format_args!("{lease:x}"),
                new = format_args!("{:x}", granted.id()),
                "etcd lease was lost; re-registering under a new one"
            );
            lease = granted.id();
            self.shared.lease.store(lease, Ordering::Relaxed);
        }
        self.keep_alive =
            Some(bounded(limit, "keep-alive stream", leases.keep_alive(lease)).await?);
        for key in self.pending_deletes.clone() {
            self.delete(key).await?;
        }
        let registered: Vec<(String, String)> = self
            .shared
            .registered
            .lock()
            .values()
            .map(|r| (r.key.clone(), r.json.clone()))
            .collect();
        for (key, json) in registered {
            self.put(key, json).await?;
        }
        Ok(())
    }
}
