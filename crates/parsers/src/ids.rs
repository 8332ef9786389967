//! Tool call ids: unique within the process and unpredictable across processes, without a
//! random number generator dependency (std's `RandomState` is seeded randomly per process).

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const ALPHANUMERIC: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// How a parser's ids look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdStyle {
    /// `call_` + 24 alphanumerics (OpenAI style).
    OpenAi,
    /// 9 alphanumerics: Mistral's chat templates reject any other tool call id when the call
    /// comes back in the conversation.
    Mistral,
}

fn seeded() -> &'static RandomState {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    STATE.get_or_init(RandomState::new)
}

fn push_chars(out: &mut String, count: usize) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut left = count;
    while left > 0 {
        // Each draw hashes a fresh counter value: distinct inputs, so ids never repeat within
        // a process in practice (10 base-62 digits per 64-bit hash).
        let mut bits = seeded().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
        for _ in 0..left.min(10) {
            out.push(char::from(ALPHANUMERIC[(bits % 62) as usize]));
            bits /= 62;
            left -= 1;
        }
    }
}

pub(crate) fn new_call_id(style: IdStyle) -> String {
    match style {
        IdStyle::OpenAi => {
            let mut id = String::with_capacity(29);
            id.push_str("call_");
            push_chars(&mut id, 24);
            id
        }
        IdStyle::Mistral => {
            let mut id = String::with_capacity(9);
            push_chars(&mut id, 9);
            id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_have_their_shape_and_do_not_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = new_call_id(IdStyle::OpenAi);
            assert!(id.starts_with("call_") && id.len() == 29, "{id}");
            assert!(id[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(seen.insert(id));
            let id = new_call_id(IdStyle::Mistral);
            assert!(
                id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{id}"
            );
            assert!(seen.insert(id));
        }
    }
}
