//! Native KV events from engines over ZeroMQ (vLLM's and SGLang's `ZmqEventPublisher`).
//!
//! An engine publishes on a PUB socket multipart messages `[topic, sequence (8 bytes, big
//! endian), msgpack batch]`, and may serve a ROUTER replay socket: a client sends the first
//! sequence number it wants (8 bytes, big endian, after an empty delimiter frame) and receives
//! `[sequence, batch]` frames (SGLang also sends the topic first) up to an end marker whose
//! sequence is -1 with an empty payload.
//!
//! - [`wire`]: decodes a batch in every layout the engines have used (positional arrays or maps,
//!   integer or byte hashes); [`encode`] writes them (the mocker, tests, benchmarks).
//! - [`ingest::KvEventIngest`]: sequence bookkeeping (gaps, duplicates, restarts) and the
//!   translation into Switchyard's [`KvCacheEvent`]s, with routing hashes recomputed from the
//!   events' token ids by the router's `BlockHasher`.
//! - [`subscriber`]: the SUB (+ DEALER for replays) task feeding an [`EngineEventSink`], so the
//!   router's index sees an external engine's cache like the mocker's.
//! - [`publisher::ZmqKvPublisher`]: an [`EngineEventSink`] that publishes an engine's (the
//!   mocker's) KV events in the engines' wire format, with a replay socket.
//!
//! ZeroMQ is the pure-Rust `zeromq` crate (no libzmq).
//!
//! [`KvCacheEvent`]: switchyard_protocol::kv::KvCacheEvent
//! [`EngineEventSink`]: switchyard_engines::EngineEventSink

pub mod encode;
pub mod ingest;
pub mod msgpack;
pub mod publisher;
pub mod subscriber;
pub mod wire;

pub use ingest::{IngestStats, KvEventIngest, SequenceCheck};
pub use msgpack::DecodeError;
pub use publisher::{PublisherConfig, ZmqKvPublisher};
pub use subscriber::{KvEventSubscriber, SubscriberConfig, SubscriberStats};
pub use wire::{EngineBatch, EngineKvEvent, decode_batch};

/// The sequence number of the replay end marker (-1 as 8 big-endian bytes).
pub const REPLAY_END: [u8; 8] = [0xff; 8];

/// `tcp://host:port` with the port moved by `offset` (vLLM's convention for data-parallel
/// ranks, used here for the workers of one `serve`).
pub fn offset_endpoint(endpoint: &str, offset: u16) -> Result<String, String> {
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return Err(format!(
            "ZMQ endpoint `{endpoint}`: expected tcp://host:port"
        ));
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(format!(
            "ZMQ endpoint `{endpoint}`: expected tcp://host:port"
        ));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("ZMQ endpoint `{endpoint}`: `{port}` is not a port number"))?;
    if host.is_empty() {
        return Err(format!("ZMQ endpoint `{endpoint}`: no host"));
    }
    let port = port
        .checked_add(offset)
        .ok_or_else(|| format!("ZMQ endpoint `{endpoint}` + {offset}: port out of range"))?;
    Ok(format!("tcp://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_offset_by_rank() {
        assert_eq!(
            offset_endpoint("tcp://127.0.0.1:5557", 2).unwrap(),
            "tcp://127.0.0.1:5559"
        );
        assert_eq!(
            offset_endpoint("tcp://[::1]:10", 0).unwrap(),
            "tcp://[::1]:10"
        );
        assert!(offset_endpoint("ipc:///tmp/x", 0).is_err());
        assert!(offset_endpoint("tcp://h:65535", 1).is_err());
        assert!(offset_endpoint("tcp://h:port", 0).is_err());
        assert!(offset_endpoint("tcp://:1", 0).is_err());
    }
}
