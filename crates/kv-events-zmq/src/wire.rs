//! The engines' KV event wire format, decoded.
//!
//! vLLM and SGLang publish each batch as one msgpack payload written by `msgspec`. The layouts
//! seen in the wild, all accepted here:
//!
//! - batch: a positional array `[ts, [events...], dp_rank?]` (`array_like` structs) or a map
//!   `{"ts", "events", "data_parallel_rank" | "attn_dp_rank"}`;
//! - event: a positional array led by its tag, `["BlockStored", block_hashes, parent_block_hash,
//!   token_ids, block_size, lora_id, medium?, lora_name?, extra_keys?, group_idx?, ...]`,
//!   `["BlockRemoved", block_hashes, medium?, group_idx?]`, `["AllBlocksCleared"]`; or a map with
//!   the tag under `"type"` and the fields by name (then also `cache_salt`);
//! - block hashes: integers (signed or unsigned 64-bit) or byte strings (e.g. 32-byte SHA-256).
//!
//! Trailing fields a version does not send are absent (`omit_defaults`); fields this decoder does
//! not know are skipped; events of an unknown type decode as [`EngineKvEvent::Unknown`] so a newer
//! engine's extra event kinds do not reject the whole batch.

use xxhash_rust::xxh3::xxh3_64;

use crate::msgpack::{DecodeError, Kind, Reader};

/// An engine's identity for a block: its integer hash, or a 64-bit digest of its byte hash.
pub type EngineHash = u64;

/// One decoded batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineBatch {
    pub ts: f64,
    /// The data-parallel rank that published it, when the engine says.
    pub dp_rank: Option<u32>,
    pub events: Vec<EngineKvEvent>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineKvEvent {
    Stored(StoredEvent),
    Removed(RemovedEvent),
    Cleared,
    /// An event type this decoder does not know (its tag), skipped.
    Unknown(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredEvent {
    pub block_hashes: Vec<EngineHash>,
    pub parent_block_hash: Option<EngineHash>,
    /// The stored blocks' tokens, `block_size` per block.
    pub token_ids: Vec<u32>,
    pub block_size: u32,
    pub lora_id: Option<i64>,
    pub lora_name: Option<String>,
    pub cache_salt: Option<String>,
    /// Storage tier (`GPU`, `CPU`, ...); `None` from engines that have only one.
    pub medium: Option<String>,
    /// KV cache group of hybrid models; `None` or 0 is the main (full attention) group.
    pub group_idx: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemovedEvent {
    pub block_hashes: Vec<EngineHash>,
    pub medium: Option<String>,
    pub group_idx: Option<i64>,
}

/// Decodes one batch payload.
pub fn decode_batch(payload: &[u8]) -> Result<EngineBatch, DecodeError> {
    let mut r = Reader::new(payload);
    let mut batch = EngineBatch::default();
    match r.peek_kind()? {
        Kind::Array => {
            let len = r.read_array_len()?;
            if len < 2 {
                return Err(DecodeError::Invalid(format!(
                    "batch array has {len} fields, expected [ts, events, dp_rank?]"
                )));
            }
            batch.ts = r.read_f64()?;
            read_events(&mut r, &mut batch.events)?;
            if len >= 3 {
                batch.dp_rank = read_opt_rank(&mut r)?;
            }
            for _ in 3..len {
                r.skip_value()?;
            }
        }
        Kind::Map => {
            let len = r.read_map_len()?;
            let mut saw_events = false;
            for _ in 0..len {
                match r.read_str()? {
                    "ts" => batch.ts = r.read_f64()?,
                    "events" => {
                        read_events(&mut r, &mut batch.events)?;
                        saw_events = true;
                    }
                    "data_parallel_rank" | "attn_dp_rank" | "dp_rank" => {
                        batch.dp_rank = read_opt_rank(&mut r)?;
                    }
                    _ => r.skip_value()?,
                }
            }
            if !saw_events {
                return Err(DecodeError::Invalid("batch map has no `events`".into()));
            }
        }
        found => {
            return Err(DecodeError::Unexpected {
                at: 0,
                expected: "a batch (array or map)",
                found,
            });
        }
    }
    if !r.is_at_end() {
        return Err(DecodeError::Invalid(format!(
            "{} bytes after the batch",
            r.remaining()
        )));
    }
    Ok(batch)
}

fn read_opt_rank(r: &mut Reader<'_>) -> Result<Option<u32>, DecodeError> {
    if r.try_nil()? {
        return Ok(None);
    }
    Ok(Some(r.read_u32()?))
}

fn read_events(r: &mut Reader<'_>, out: &mut Vec<EngineKvEvent>) -> Result<(), DecodeError> {
    let n = r.read_array_len()?;
    out.reserve(n);
    for _ in 0..n {
        out.push(read_event(r)?);
    }
    Ok(())
}

fn read_event(r: &mut Reader<'_>) -> Result<EngineKvEvent, DecodeError> {
    match r.peek_kind()? {
        Kind::Array => read_positional_event(r),
        Kind::Map => read_map_event(r),
        found => Err(DecodeError::Unexpected {
            at: r.position(),
            expected: "an event (array or map)",
            found,
        }),
    }
}

fn read_positional_event(r: &mut Reader<'_>) -> Result<EngineKvEvent, DecodeError> {
    let len = r.read_array_len()?;
    if len == 0 {
        return Err(DecodeError::Invalid("empty event array (no tag)".into()));
    }
    let tag = r.read_str()?;
    let mut fields = len - 1;
    // Reads the next positional field if the array has one.
    macro_rules! next {
        ($read:expr) => {
            if fields > 0 {
                fields -= 1;
                Some($read)
            } else {
                None
            }
        };
    }
    let event = match tag {
        "BlockStored" => {
            let mut e = StoredEvent {
                block_hashes: next!(read_hashes(r)?).ok_or_else(|| missing("block_hashes"))?,
                parent_block_hash: next!(read_opt_hash(r)?).flatten(),
                token_ids: next!(read_tokens(r)?).ok_or_else(|| missing("token_ids"))?,
                block_size: next!(r.read_u32()?).ok_or_else(|| missing("block_size"))?,
                ..StoredEvent::default()
            };
            e.lora_id = next!(read_opt_i64(r)?).flatten();
            e.medium = next!(read_opt_string(r)?).flatten();
            // vLLM's later positional fields: lora_name, extra_keys, group_idx.
            e.lora_name = next!(read_opt_string_or_skip(r)?).flatten();
            if next!(r.skip_value()?).is_some() {
                e.group_idx = next!(read_opt_i64_or_skip(r)?).flatten();
            }
            EngineKvEvent::Stored(e)
        }
        "BlockRemoved" => {
            let mut e = RemovedEvent {
                block_hashes: next!(read_hashes(r)?).ok_or_else(|| missing("block_hashes"))?,
                ..RemovedEvent::default()
            };
            e.medium = next!(read_opt_string(r)?).flatten();
            e.group_idx = next!(read_opt_i64_or_skip(r)?).flatten();
            EngineKvEvent::Removed(e)
        }
        "AllBlocksCleared" => EngineKvEvent::Cleared,
        other => EngineKvEvent::Unknown(other.to_string()),
    };
    for _ in 0..fields {
        r.skip_value()?;
    }
    Ok(event)
}

fn read_map_event(r: &mut Reader<'_>) -> Result<EngineKvEvent, DecodeError> {
    let len = r.read_map_len()?;
    let mut tag: Option<&str> = None;
    let mut hashes = None;
    let mut parent = None;
    let mut tokens = None;
    let mut block_size = None;
    let mut stored = StoredEvent::default();
    for _ in 0..len {
        match r.read_str()? {
            "type" => tag = Some(r.read_str()?),
            "block_hashes" => hashes = Some(read_hashes(r)?),
            "parent_block_hash" => parent = read_opt_hash(r)?,
            "token_ids" => tokens = Some(read_tokens(r)?),
            "block_size" => block_size = Some(r.read_u32()?),
            "lora_id" => stored.lora_id = read_opt_i64(r)?,
            "lora_name" => stored.lora_name = read_opt_string(r)?,
            "cache_salt" => stored.cache_salt = read_opt_string(r)?,
            "medium" => stored.medium = read_opt_string(r)?,
            "group_idx" => stored.group_idx = read_opt_i64(r)?,
            _ => r.skip_value()?,
        }
    }
    let tag = tag.ok_or_else(|| missing("type"))?;
    Ok(match tag {
        "BlockStored" => EngineKvEvent::Stored(StoredEvent {
            block_hashes: hashes.ok_or_else(|| missing("block_hashes"))?,
            parent_block_hash: parent,
            token_ids: tokens.ok_or_else(|| missing("token_ids"))?,
            block_size: block_size.ok_or_else(|| missing("block_size"))?,
            ..stored
        }),
        "BlockRemoved" => EngineKvEvent::Removed(RemovedEvent {
            block_hashes: hashes.ok_or_else(|| missing("block_hashes"))?,
            medium: stored.medium,
            group_idx: stored.group_idx,
        }),
        "AllBlocksCleared" => EngineKvEvent::Cleared,
        other => EngineKvEvent::Unknown(other.to_string()),
    })
}

fn missing(field: &str) -> DecodeError {
    DecodeError::Invalid(format!("event has no `{field}`"))
}

/// An integer hash as its 64 bits; a byte hash as the XXH3-64 of its bytes.
fn read_hash(r: &mut Reader<'_>) -> Result<EngineHash, DecodeError> {
    match r.peek_kind()? {
        Kind::Int => Ok(r.read_int()?.to_bits()),
        Kind::Bin | Kind::Str => Ok(xxh3_64(r.read_bytes_or_str()?)),
        found => Err(DecodeError::Unexpected {
            at: r.position(),
            expected: "a block hash (integer or bytes)",
            found,
        }),
    }
}

fn read_opt_hash(r: &mut Reader<'_>) -> Result<Option<EngineHash>, DecodeError> {
    if r.try_nil()? {
        return Ok(None);
    }
    read_hash(r).map(Some)
}

fn read_hashes(r: &mut Reader<'_>) -> Result<Vec<EngineHash>, DecodeError> {
    let n = r.read_array_len()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(read_hash(r)?);
    }
    Ok(out)
}

fn read_tokens(r: &mut Reader<'_>) -> Result<Vec<u32>, DecodeError> {
    let n = r.read_array_len()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.read_u32()?);
    }
    Ok(out)
}

fn read_opt_i64(r: &mut Reader<'_>) -> Result<Option<i64>, DecodeError> {
    if r.try_nil()? {
        return Ok(None);
    }
    let at = r.position();
    r.read_int()?
        .to_i64()
        .map(Some)
        .ok_or_else(|| DecodeError::Invalid(format!("at byte {at}: integer out of range")))
}

fn read_opt_string(r: &mut Reader<'_>) -> Result<Option<String>, DecodeError> {
    if r.try_nil()? {
        return Ok(None);
    }
    Ok(Some(r.read_str()?.to_string()))
}

/// A positional field whose meaning differs between engine versions: a string is taken, any
/// other value skipped.
fn read_opt_string_or_skip(r: &mut Reader<'_>) -> Result<Option<String>, DecodeError> {
    if r.peek_kind()? == Kind::Str {
        return read_opt_string(r);
    }
    r.skip_value()?;
    Ok(None)
}

fn read_opt_i64_or_skip(r: &mut Reader<'_>) -> Result<Option<i64>, DecodeError> {
    if r.peek_kind()? == Kind::Int {
        return read_opt_i64(r);
    }
    r.skip_value()?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode;

    #[test]
    fn positional_and_map_layouts_decode_alike() {
        let events = vec![
            EngineKvEvent::Stored(StoredEvent {
                block_hashes: vec![11, 12],
                parent_block_hash: Some(10),
                token_ids: (0..8).collect(),
                block_size: 4,
                medium: Some("GPU".into()),
                ..StoredEvent::default()
            }),
            EngineKvEvent::Removed(RemovedEvent {
                block_hashes: vec![12],
                medium: Some("GPU".into()),
                group_idx: None,
            }),
            EngineKvEvent::Cleared,
        ];
        for layout in [encode::Layout::Positional, encode::Layout::Map] {
            let payload = encode::encode_batch(layout, 1.25, Some(3), &events);
            let batch = decode_batch(&payload).unwrap();
            assert_eq!(batch.ts, 1.25, "{layout:?}");
            assert_eq!(batch.dp_rank, Some(3), "{layout:?}");
            assert_eq!(batch.events, events, "{layout:?}");
        }
    }

    #[test]
    fn byte_hashes_and_negative_ints_are_hashes_too() {
        // ["BlockStored", [b"\x01\x02", -5], nil, [1,2,3,4,5,6,7,8], 4, nil]
        let mut buf = Vec::new();
        rmp::encode::write_array_len(&mut buf, 3).unwrap();
        rmp::encode::write_f64(&mut buf, 0.0).unwrap();
        rmp::encode::write_array_len(&mut buf, 1).unwrap();
        rmp::encode::write_array_len(&mut buf, 6).unwrap();
        rmp::encode::write_str(&mut buf, "BlockStored").unwrap();
        rmp::encode::write_array_len(&mut buf, 2).unwrap();
        rmp::encode::write_bin(&mut buf, &[1, 2]).unwrap();
        rmp::encode::write_sint(&mut buf, -5).unwrap();
        rmp::encode::write_nil(&mut buf).unwrap();
        rmp::encode::write_array_len(&mut buf, 8).unwrap();
        for t in 1..=8 {
            rmp::encode::write_uint(&mut buf, t).unwrap();
        }
        rmp::encode::write_uint(&mut buf, 4).unwrap();
        rmp::encode::write_nil(&mut buf).unwrap();
        rmp::encode::write_nil(&mut buf).unwrap();
        let batch = decode_batch(&buf).unwrap();
        let EngineKvEvent::Stored(e) = &batch.events[0] else {
            panic!("{batch:?}")
        };
        assert_eq!(e.block_hashes, vec![xxh3_64(&[1, 2]), (-5i64) as u64]);
        assert_eq!(batch.dp_rank, None);
    }

    #[test]
    fn unknown_events_and_fields_are_skipped_not_fatal() {
        let mut buf = Vec::new();
        rmp::encode::write_map_len(&mut buf, 3).unwrap();
        rmp::encode::write_str(&mut buf, "future_field").unwrap();
        rmp::encode::write_array_len(&mut buf, 1).unwrap();
        rmp::encode::write_map_len(&mut buf, 0).unwrap();
        rmp::encode::write_str(&mut buf, "ts").unwrap();
        rmp::encode::write_f64(&mut buf, 2.0).unwrap();
        rmp::encode::write_str(&mut buf, "events").unwrap();
        rmp::encode::write_array_len(&mut buf, 1).unwrap();
        rmp::encode::write_map_len(&mut buf, 2).unwrap();
        rmp::encode::write_str(&mut buf, "type").unwrap();
        rmp::encode::write_str(&mut buf, "BlockOffloaded").unwrap();
        rmp::encode::write_str(&mut buf, "whatever").unwrap();
        rmp::encode::write_uint(&mut buf, 7).unwrap();
        let batch = decode_batch(&buf).unwrap();
        assert_eq!(
            batch.events,
            vec![EngineKvEvent::Unknown("BlockOffloaded".into())]
        );
    }

    #[test]
    fn malformed_batches_are_errors() {
        for bad in [
            &b""[..],
            &[0xc1],
            &[0x91, 0x00],             // batch array with one field
            &[0x92, 0x00, 0x91],       // events array cut short
            &[0x92, 0x00, 0x91, 0x90], // event without tag
            &[0x80],                   // map without events
            &[0x92, 0x00, 0x90, 0x00], // trailing byte
        ] {
            assert!(decode_batch(bad).is_err(), "{bad:?}");
        }
    }
}
