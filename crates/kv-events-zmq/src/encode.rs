//! Writes batches in the engines' wire format (see [`crate::wire`]): the mocker's publisher,
//! tests and the ingestion benchmark use it. Encoding goes through the `rmp` crate, a different
//! implementation from the decoder's reader.

use crate::wire::{EngineKvEvent, RemovedEvent, StoredEvent};

/// Which of the engines' layouts to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `array_like` msgspec structs: `[ts, [["BlockStored", ...], ...], dp_rank]`.
    Positional,
    /// Maps: `{"ts", "events": [{"type": "BlockStored", ...}], "data_parallel_rank"}`.
    Map,
}

/// One batch as a msgpack payload.
pub fn encode_batch(
    layout: Layout,
    ts: f64,
    dp_rank: Option<u32>,
    events: &[EngineKvEvent],
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 + events.len() * 32);
    encode_batch_into(&mut buf, layout, ts, dp_rank, events);
    buf
}

/// [`encode_batch`] into a reused buffer (cleared first).
pub fn encode_batch_into(
    buf: &mut Vec<u8>,
    layout: Layout,
    ts: f64,
    dp_rank: Option<u32>,
    events: &[EngineKvEvent],
) {
    buf.clear();
    // Writing into a Vec cannot fail.
    let w = buf;
    match layout {
        Layout::Positional => {
            let _ = rmp::encode::write_array_len(w, 3);
            let _ = rmp::encode::write_f64(w, ts);
            let _ = rmp::encode::write_array_len(w, events.len() as u32);
            for e in events {
                positional_event(w, e);
            }
            opt_uint(w, dp_rank.map(u64::from));
        }
        Layout::Map => {
            let _ = rmp::encode::write_map_len(w, 3);
            let _ = rmp::encode::write_str(w, "ts");
            let _ = rmp::encode::write_f64(w, ts);
            let _ = rmp::encode::write_str(w, "events");
            let _ = rmp::encode::write_array_len(w, events.len() as u32);
            for e in events {
                map_event(w, e);
            }
            let _ = rmp::encode::write_str(w, "data_parallel_rank");
            opt_uint(w, dp_rank.map(u64::from));
        }
    }
}

fn opt_uint(w: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            let _ = rmp::encode::write_uint(w, v);
        }
        None => {
            let _ = rmp::encode::write_nil(w);
        }
    }
}

fn opt_sint(w: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => {
            let _ = rmp::encode::write_sint(w, v);
        }
        None => {
            let _ = rmp::encode::write_nil(w);
        }
    }
}

fn opt_str(w: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(v) => {
            let _ = rmp::encode::write_str(w, v);
        }
        None => {
            let _ = rmp::encode::write_nil(w);
        }
    }
}

fn uints(w: &mut Vec<u8>, values: impl ExactSizeIterator<Item = u64>) {
    let _ = rmp::encode::write_array_len(w, values.len() as u32);
    for v in values {
        let _ = rmp::encode::write_uint(w, v);
    }
}

fn positional_event(w: &mut Vec<u8>, event: &EngineKvEvent) {
    match event {
        EngineKvEvent::Stored(StoredEvent {
            block_hashes,
            parent_block_hash,
            token_ids,
            block_size,
            lora_id,
            medium,
            lora_name,
            ..
        }) => {
            let fields = if lora_name.is_some() { 8 } else { 7 };
            let _ = rmp::encode::write_array_len(w, fields);
            let _ = rmp::encode::write_str(w, "BlockStored");
            uints(w, block_hashes.iter().copied());
            opt_uint(w, *parent_block_hash);
            uints(w, token_ids.iter().map(|&t| u64::from(t)));
            let _ = rmp::encode::write_uint(w, u64::from(*block_size));
            opt_sint(w, *lora_id);
            opt_str(w, medium.as_deref());
            if let Some(name) = lora_name {
                let _ = rmp::encode::write_str(w, name);
            }
        }
        EngineKvEvent::Removed(RemovedEvent {
            block_hashes,
            medium,
            ..
        }) => {
            let _ = rmp::encode::write_array_len(w, 3);
            let _ = rmp::encode::write_str(w, "BlockRemoved");
            uints(w, block_hashes.iter().copied());
            opt_str(w, medium.as_deref());
        }
        EngineKvEvent::Cleared => {
            let _ = rmp::encode::write_array_len(w, 1);
            let _ = rmp::encode::write_str(w, "AllBlocksCleared");
        }
        EngineKvEvent::Unknown(tag) => {
            let _ = rmp::encode::write_array_len(w, 1);
            let _ = rmp::encode::write_str(w, tag);
        }
    }
}

fn map_event(w: &mut Vec<u8>, event: &EngineKvEvent) {
    match event {
        EngineKvEvent::Stored(e) => {
            let optional = [
                e.lora_name.is_some(),
                e.cache_salt.is_some(),
                e.group_idx.is_some(),
            ]
            .iter()
            .filter(|&&b| b)
            .count() as u32;
            let _ = rmp::encode::write_map_len(w, 7 + optional);
            let _ = rmp::encode::write_str(w, "type");
            let _ = rmp::encode::write_str(w, "BlockStored");
            let _ = rmp::encode::write_str(w, "block_hashes");
            uints(w, e.block_hashes.iter().copied());
            let _ = rmp::encode::write_str(w, "parent_block_hash");
            opt_uint(w, e.parent_block_hash);
            let _ = rmp::encode::write_str(w, "token_ids");
            uints(w, e.token_ids.iter().map(|&t| u64::from(t)));
            let _ = rmp::encode::write_str(w, "block_size");
            let _ = rmp::encode::write_uint(w, u64::from(e.block_size));
            let _ = rmp::encode::write_str(w, "lora_id");
            opt_sint(w, e.lora_id);
            let _ = rmp::encode::write_str(w, "medium");
            opt_str(w, e.medium.as_deref());
            if let Some(name) = &e.lora_name {
                let _ = rmp::encode::write_str(w, "lora_name");
                let _ = rmp::encode::write_str(w, name);
            }
            if let Some(salt) = &e.cache_salt {
                let _ = rmp::encode::write_str(w, "cache_salt");
                let _ = rmp::encode::write_str(w, salt);
            }
            if let Some(group) = e.group_idx {
                let _ = rmp::encode::write_str(w, "group_idx");
                let _ = rmp::encode::write_sint(w, group);
            }
        }
        EngineKvEvent::Removed(e) => {
            let _ = rmp::encode::write_map_len(w, 3);
            let _ = rmp::encode::write_str(w, "type");
            let _ = rmp::encode::write_str(w, "BlockRemoved");
            let _ = rmp::encode::write_str(w, "block_hashes");
            uints(w, e.block_hashes.iter().copied());
            let _ = rmp::encode::write_str(w, "medium");
            opt_str(w, e.medium.as_deref());
        }
        EngineKvEvent::Cleared => {
            let _ = rmp::encode::write_map_len(w, 1);
            let _ = rmp::encode::write_str(w, "type");
            let _ = rmp::encode::write_str(w, "AllBlocksCleared");
        }
        EngineKvEvent::Unknown(tag) => {
            let _ = rmp::encode::write_map_len(w, 1);
            let _ = rmp::encode::write_str(w, "type");
            let _ = rmp::encode::write_str(w, tag);
        }
    }
}
