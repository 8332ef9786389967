//! Subjects and payload encodings (see the crate docs for the table).

use serde::{Deserialize, Serialize};

use switchyard_protocol::kv::KvCacheEvent;
use switchyard_runtime::WorkerId;
use switchyard_runtime::event_plane::WorkerEvent;

/// The payload format version this build writes and the only one it reads.
pub const WIRE_VERSION: u32 = 1;

/// The header carrying a router-sync message's sender id.
pub const SENDER_HEADER: &str = "Switchyard-Sender";

/// A namespace becomes one subject token: it must not be empty nor contain separators,
/// wildcards or whitespace.
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    if namespace.is_empty() {
        return Err("the namespace is empty".into());
    }
    if let Some(c) = namespace
        .chars()
        .find(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "namespace {namespace:?} contains {c:?}; it must be one NATS subject token"
        ));
    }
    Ok(())
}

pub fn event_subject(namespace: &str, worker: WorkerId) -> String {
    format!("switchyard.{namespace}.events.{:016x}", worker.0)
}

pub fn events_wildcard(namespace: &str) -> String {
    format!("switchyard.{namespace}.events.>")
}

pub fn kv_dump_subject(namespace: &str, worker: WorkerId) -> String {
    format!("switchyard.{namespace}.kv_dump.{:016x}", worker.0)
}

pub fn router_sync_subject(namespace: &str) -> String {
    format!("switchyard.{namespace}.router_sync")
}

/// The worker id in an event subject's last token.
pub fn worker_of_subject(subject: &str) -> Option<WorkerId> {
    let token = subject.rsplit('.').next()?;
    if token.len() != 16 {
        return None;
    }
    u64::from_str_radix(token, 16).ok().map(WorkerId)
}

#[derive(Serialize)]
struct EventOut<'a> {
    v: u32,
    event: &'a WorkerEvent,
}

#[derive(Deserialize)]
struct EventIn {
    v: u32,
    event: WorkerEvent,
}

pub fn encode_event(event: &WorkerEvent) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&EventOut {
        v: WIRE_VERSION,
        event,
    })
}

/// Decodes an event received on `subject`; the subject's worker id must match the payload's.
pub fn decode_event(subject: &str, payload: &[u8]) -> Result<WorkerEvent, String> {
    let parsed: EventIn = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if parsed.v != WIRE_VERSION {
        return Err(format!(
            "wire version {} (this build reads {WIRE_VERSION})",
            parsed.v
        ));
    }
    match worker_of_subject(subject) {
        Some(worker) if worker == parsed.event.worker => Ok(parsed.event),
        _ => Err(format!(
            "subject {subject} does not name the payload's worker {}",
            parsed.event.worker
        )),
    }
}

/// One reply message of a KV dump. A dump larger than a NATS message is split into chunks
/// numbered from 0; the last has `last: true`.
#[derive(Debug, Deserialize)]
pub struct DumpChunk {
    pub v: u32,
    pub chunk: u32,
    pub last: bool,
    pub events: Vec<KvCacheEvent>,
}

/// Splits `events` into chunk payloads whose event lists stay under `budget` bytes (an event
/// larger than the budget goes alone). An empty dump is one empty chunk, so the requester
/// always gets an answer.
pub fn encode_dump_chunks(
    events: &[KvCacheEvent],
    budget: usize,
) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    // Events are serialized once each and joined by hand, so sizing a chunk costs nothing extra.
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut body = Vec::new();
    let mut item = Vec::new();
    for event in events {
        item.clear();
        serde_json::to_writer(&mut item, event)?;
        if !body.is_empty() && body.len() + 1 + item.len() > budget {
            bodies.push(std::mem::take(&mut body));
        }
        if !body.is_empty() {
            body.push(b',');
        }
        body.extend_from_slice(&item);
    }
    bodies.push(body);
    let count = bodies.len();
    Ok(bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let last = i + 1 == count;
            let head = format!(r#"{{"v":{WIRE_VERSION},"chunk":{i},"last":{last},"events":["#);
            let mut out = Vec::with_capacity(head.len() + body.len() + 2);
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(&body);
            out.extend_from_slice(b"]}");
            out
        })
        .collect())
}

pub fn decode_dump_chunk(payload: &[u8]) -> Result<DumpChunk, String> {
    let chunk: DumpChunk = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if chunk.v != WIRE_VERSION {
        return Err(format!(
            "wire version {} (this build reads {WIRE_VERSION})",
            chunk.v
        ));
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use switchyard_protocol::kv::{KvCacheEventData, StoredBlock};
    use switchyard_runtime::event_plane::{LoadReport, WorkerEventKind};

    use super::*;

    fn stored(event_id: u64, blocks: u64) -> KvCacheEvent {
        KvCacheEvent {
            event_id,
            data: KvCacheEventData::Stored {
                parent: Some(u64::MAX),
                blocks: (0..blocks)
                    .map(|i| StoredBlock {
                        sequence_hash: u64::MAX - i,
                        content_hash: i,
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn events_round_trip_with_full_width_hashes() {
        let worker = WorkerId(0xfeed_0000_0000_0001);
        for kind in [
            WorkerEventKind::Kv(stored(7, 3)),
            WorkerEventKind::Kv(KvCacheEvent {
                event_id: 8,
                data: KvCacheEventData::Cleared,
            }),
            WorkerEventKind::Load(LoadReport {
                active_requests: 1,
                waiting_requests: 2,
                kv_used_blocks: 3,
                kv_total_blocks: 4,
            }),
        ] {
            let event = WorkerEvent { worker, kind };
            let bytes = encode_event(&event).unwrap();
            assert!(bytes.starts_with(br#"{"v":1,"event":"#));
            let subject = event_subject("ns", worker);
            assert_eq!(subject, "switchyard.ns.events.feed000000000001");
            assert_eq!(decode_event(&subject, &bytes).unwrap(), event);
        }
    }

    #[test]
    fn decoding_refuses_other_versions_foreign_subjects_and_garbage() {
        let event = WorkerEvent {
            worker: WorkerId(1),
            kind: WorkerEventKind::Kv(stored(0, 1)),
        };
        let subject = event_subject("ns", WorkerId(1));
        let bytes = String::from_utf8(encode_event(&event).unwrap()).unwrap();
        let v2 = bytes.replacen(r#""v":1"#, r#""v":2"#, 1);
        assert!(
            decode_event(&subject, v2.as_bytes())
                .unwrap_err()
                .contains("version 2")
        );
        let other = event_subject("ns", WorkerId(2));
        assert!(decode_event(&other, bytes.as_bytes()).is_err());
        assert!(decode_event("switchyard.ns.events.zz", bytes.as_bytes()).is_err());
        for garbage in [&b""[..], b"{", b"\xff\xfe", b"null", br#"{"v":1}"#] {
            assert!(decode_event(&subject, garbage).is_err());
        }
    }

    #[test]
    fn dumps_split_under_the_budget_and_reassemble_in_order() {
        let events: Vec<_> = (0..50).map(|i| stored(i, 4)).collect();
        let chunks = encode_dump_chunks(&events, 1000).unwrap();
        assert!(chunks.len() > 5);
        let mut back = Vec::new();
        for (i, bytes) in chunks.iter().enumerate() {
            // Envelope overhead is small and fixed.
            assert!(bytes.len() < 1000 + 64);
            let chunk = decode_dump_chunk(bytes).unwrap();
            assert_eq!(chunk.chunk as usize, i);
            assert_eq!(chunk.last, i + 1 == chunks.len());
            back.extend(chunk.events);
        }
        assert_eq!(back, events);
    }

    #[test]
    fn an_empty_dump_is_one_last_chunk_and_an_oversized_event_goes_alone() {
        let chunks = encode_dump_chunks(&[], 100).unwrap();
        assert_eq!(chunks.len(), 1);
        let chunk = decode_dump_chunk(&chunks[0]).unwrap();
        assert!(chunk.last && chunk.events.is_empty());

        let events = vec![stored(0, 1), stored(1, 100), stored(2, 1)];
        let chunks = encode_dump_chunks(&events, 200).unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(decode_dump_chunk(&chunks[1]).unwrap().events, events[1..2]);
    }

    #[test]
    fn namespaces_must_be_one_subject_token() {
        assert!(check_namespace("prod-1_a").is_ok());
        for bad in ["", "a.b", "a*", ">", "a b", "a\n"] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
    }
}
