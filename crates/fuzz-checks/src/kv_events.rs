//! Engine KV event batches (ZMQ payloads from vLLM / SGLang) through the decoder and the ingest.

use switchyard_kv_events_zmq::encode::{Layout, encode_batch};
use switchyard_kv_events_zmq::wire::EngineKvEvent;
use switchyard_kv_events_zmq::{KvEventIngest, decode_batch};

/// Cap of the ingest's engine hash map here: small, so eviction runs too.
const MAX_BLOCKS: usize = 64;

/// Decodes `payload` as a batch (errors are fine, panics are not). A batch that decodes is
/// re-encoded in both layouts and must decode to the same events (less what a layout cannot
/// carry), then goes through a [`KvEventIngest`] twice (as two batches, then as a restart),
/// which must stay within its block cap.
pub fn check_kv_events(payload: &[u8]) {
    let Ok(batch) = decode_batch(payload) else {
        return;
    };
    for layout in [Layout::Positional, Layout::Map] {
        let encoded = encode_batch(layout, batch.ts, batch.dp_rank, &batch.events);
        let again = decode_batch(&encoded)
            .unwrap_or_else(|e| panic!("{layout:?}: re-encoded batch does not decode: {e}"));
        assert_eq!(again.dp_rank, batch.dp_rank, "{layout:?}");
        assert_eq!(
            again.events.len(),
            batch.events.len(),
            "{layout:?}: event count"
        );
        for (a, b) in again.events.iter().zip(&batch.events) {
            assert_eq!(comparable(a, layout), comparable(b, layout), "{layout:?}");
        }
    }
    for block_size in [1, 4, 16] {
        let mut ingest = KvEventIngest::new(block_size, MAX_BLOCKS);
        let mut out = Vec::new();
        ingest.apply_batch(0, &batch, &mut out);
        ingest.apply_batch(1, &batch, &mut out);
        ingest.restart(batch.dp_rank.unwrap_or(0), &mut out);
        ingest.apply_batch(0, &batch, &mut out);
        assert!(ingest.mapped_blocks() <= MAX_BLOCKS);
        let mut last = 0;
        for event in &out {
            assert!(event.event_id > last, "event ids increase");
            last = event.event_id;
        }
    }
}

/// What both layouts carry of an event (the positional one has no `cache_salt`, no
/// `group_idx` on removals, and `lora_name` only after `medium`).
fn comparable(event: &EngineKvEvent, layout: Layout) -> EngineKvEvent {
    let mut event = event.clone();
    match &mut event {
        EngineKvEvent::Stored(e) if layout == Layout::Positional => {
            e.cache_salt = None;
            e.group_idx = None;
        }
        EngineKvEvent::Removed(e) => e.group_idx = None,
        _ => {}
    }
    event
}
