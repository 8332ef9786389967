//! The byte-level matcher: a pushdown automaton over [`JsonGrammar`] nodes, run as a small set
//! of threads (one stack each) so that `anyOf` branches and object keys are followed in
//! parallel until the bytes tell them apart.

use std::sync::Arc;

use crate::schema::{
    ANY_ARRAY, ANY_OBJECT, ANY_STRING, FALSE, JsonGrammar, KEY_HASH_START, NEVER, NULL, NUMBER,
    Node, NodeId, ObjectNode, TRUE, key_hash_step,
};

/// The most whitespace bytes allowed in one gap between JSON tokens (before a value, around
/// `:` and `,`): enough for indentation, and a model cannot loop on spaces.
pub const MAX_WHITESPACE: u8 = 8;
/// The deepest a document may nest (frames per stack; a value under construction takes one,
/// a key being written one more).
pub const MAX_NESTING: usize = 64;
/// The most branches followed at once; past it further ones are dropped (only pathological,
/// highly ambiguous `anyOf` schemas get there), which never lets an invalid document through.
pub const MAX_THREADS: usize = 64;
/// Digits before the point, after it, and in the exponent: every number stays finite in f64.
pub const MAX_INT_DIGITS: u8 = 20;
pub const MAX_FRAC_DIGITS: u8 = 20;
pub const MAX_EXP_DIGITS: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ObjPhase {
    /// After `{`.
    Open,
    /// After `,`.
    BeforeKey,
    /// After a key; `pending` is the value's node.
    AfterKey,
    /// A value is being written (the frame above).
    AwaitValue,
    AfterValue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArrPhase {
    Open,
    AwaitValue,
    AfterValue,
    BeforeValue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumPhase {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl NumPhase {
    fn accepting(self) -> bool {
        matches!(
            self,
            NumPhase::Zero | NumPhase::Int | NumPhase::Frac | NumPhase::ExpDigits
        )
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Esc {
    #[default]
    None,
    Backslash,
    /// In `\uXXXX` after `n` digits; `low`: this escape must be a low surrogate.
    Hex {
        n: u8,
        value: u16,
        low: bool,
    },
    /// A high surrogate was escaped: `\u` and a low one must follow.
    NeedLowBackslash,
    NeedLowU,
}

/// Inside a JSON string: escapes and UTF-8 sequences split anywhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StrLex {
    esc: Esc,
    /// Continuation bytes still due; the next one must be within `lo..=hi`.
    need: u8,
    lo: u8,
    hi: u8,
}

enum StrStep {
    Reject,
    /// A new character starts (counts towards `minLength`/`maxLength`).
    Char,
    /// Inside a character or an escape.
    Same,
    /// The closing quote.
    Close,
}

fn hex_digit(b: u8) -> Option<u16> {
    (b as char).to_digit(16).map(|d| d as u16)
}

impl StrLex {
    fn is_plain(&self) -> bool {
        self.need == 0 && self.esc == Esc::None
    }

    fn need(&mut self, n: u8, lo: u8, hi: u8) -> StrStep {
        self.need = n;
        self.lo = lo;
        self.hi = hi;
        StrStep::Char
    }

    fn step(&mut self, b: u8) -> StrStep {
        if self.need > 0 {
            if b < self.lo || b > self.hi {
                return StrStep::Reject;
            }
            self.need -= 1;
            self.lo = 0x80;
            self.hi = 0xBF;
            return StrStep::Same;
        }
        match self.esc {
            Esc::None => match b {
                b'"' => StrStep::Close,
                b'\\' => {
                    self.esc = Esc::Backslash;
                    StrStep::Char
                }
                0x00..=0x1F => StrStep::Reject,
                0x20..=0x7F => StrStep::Char,
                0xC2..=0xDF => self.need(1, 0x80, 0xBF),
                0xE0 => self.need(2, 0xA0, 0xBF),
                0xE1..=0xEC | 0xEE..=0xEF => self.need(2, 0x80, 0xBF),
                0xED => self.need(2, 0x80, 0x9F),
                0xF0 => self.need(3, 0x90, 0xBF),
                0xF1..=0xF3 => self.need(3, 0x80, 0xBF),
                0xF4 => self.need(3, 0x80, 0x8F),
                _ => StrStep::Reject,
            },
            Esc::Backslash => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                    self.esc = Esc::None;
                    StrStep::Same
                }
                b'u' => {
                    self.esc = Esc::Hex {
                        n: 0,
                        value: 0,
                        low: false,
                    };
                    StrStep::Same
                }
                _ => StrStep::Reject,
            },
            Esc::Hex { n, value, low } => {
                let Some(d) = hex_digit(b) else {
                    return StrStep::Reject;
                };
                let n = n + 1;
                let value = (value << 4) | d;
                // Surrogates must pair up (serde_json and most parsers refuse lone ones):
                // decided as early as the digits allow, so no token leads into a dead end.
                if low {
                    if (n == 1 && d != 0xD) || (n == 2 && d < 0xC) {
                        return StrStep::Reject;
                    }
                } else if n == 2 && value >> 4 == 0xD && d >= 0xC {
                    return StrStep::Reject;
                }
                self.esc = if n < 4 {
                    Esc::Hex { n, value, low }
                } else if !low && (0xD800..=0xDBFF).contains(&value) {
                    Esc::NeedLowBackslash
                } else {
                    Esc::None
                };
                StrStep::Same
            }
            Esc::NeedLowBackslash if b == b'\\' => {
                self.esc = Esc::NeedLowU;
                StrStep::Same
            }
            Esc::NeedLowU if b == b'u' => {
                self.esc = Esc::Hex {
                    n: 0,
                    value: 0,
                    low: true,
                };
                StrStep::Same
            }
            Esc::NeedLowBackslash | Esc::NeedLowU => StrStep::Reject,
        }
    }
}

/// One level of a thread's stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A value of `node` is due (whitespace first allowed).
    Value {
        node: NodeId,
        ws: u8,
    },
    Object {
        node: NodeId,
        phase: ObjPhase,
        ws: u8,
        /// Bit i: `props[i]` was written.
        seen: u64,
        pending: NodeId,
    },
    /// Writing the declared key `props[prop]`, `pos` bytes of its quoted form done.
    KeyLit {
        obj: NodeId,
        prop: u8,
        pos: u32,
    },
    /// Writing a key not among the declared ones (`hash` tells them apart at the close).
    KeyStr {
        obj: NodeId,
        lex: StrLex,
        hash: u64,
    },
    Array {
        node: NodeId,
        phase: ArrPhase,
        ws: u8,
        count: u32,
    },
    Str {
        node: NodeId,
        /// Characters so far; only counted as far as the node's limits care.
        len: u32,
        lex: StrLex,
    },
    Num {
        integer: bool,
        phase: NumPhase,
        digits: u8,
    },
    Lit {
        lit: u32,
        pos: u32,
    },
}

/// The stack being stepped: one per matcher (or mask scratch), reused for every thread and
/// byte, so stepping allocates nothing once it has grown.
type Stack = Vec<Frame>;

/// Thread stacks, flat: `ends[i]` is where thread i's frames end.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Threads {
    frames: Vec<Frame>,
    ends: Vec<u32>,
}

impl Clone for Threads {
    fn clone(&self) -> Self {
        Threads {
            frames: self.frames.clone(),
            ends: self.ends.clone(),
        }
    }

    /// Reuses `self`'s buffers (the derived one would allocate new ones).
    fn clone_from(&mut self, source: &Self) {
        self.frames.clone_from(&source.frames);
        self.ends.clone_from(&source.ends);
    }
}

impl Threads {
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.ends.clear();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &[Frame]> {
        let mut start = 0usize;
        self.ends.iter().map(move |&end| {
            let s = &self.frames[start..end as usize];
            start = end as usize;
            s
        })
    }

    fn push(&mut self, stack: &[Frame]) {
        if self.ends.len() >= MAX_THREADS || self.iter().any(|t| t == stack) {
            return;
        }
        self.frames.extend_from_slice(stack);
        self.ends.push(self.frames.len() as u32);
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn object_of(g: &JsonGrammar, node: NodeId) -> &ObjectNode {
    match g.node(node) {
        Node::Object(o) => o,
        _ => unreachable!("object frames hold object nodes"),
    }
}

fn string_limits(g: &JsonGrammar, node: NodeId) -> (u32, u32) {
    match g.node(node) {
        Node::String { min, max } => (*min, *max),
        _ => (0, u32::MAX),
    }
}

/// The value on top is finished: pop it and move its container on.
fn complete(w: &mut Stack) {
    w.pop();
    match w.last_mut() {
        Some(Frame::Object { phase, ws, .. }) => {
            *phase = ObjPhase::AfterValue;
            *ws = 0;
        }
        Some(Frame::Array { phase, ws, .. }) => {
            *phase = ArrPhase::AfterValue;
            *ws = 0;
        }
        _ => {}
    }
}

/// A key on top is finished: pop it; the object expects `:` and then a `value`.
fn complete_key(w: &mut Stack, seen_bit: u64, value: NodeId) {
    w.pop();
    if let Some(Frame::Object {
        phase,
        ws,
        seen,
        pending,
        ..
    }) = w.last_mut()
    {
        *phase = ObjPhase::AfterKey;
        *ws = 0;
        *seen |= seen_bit;
        *pending = value;
    }
}

/// Every thread of `cur` fed one byte, into `out`; `work` is scratch.
pub(crate) fn step_all(g: &JsonGrammar, cur: &Threads, b: u8, out: &mut Threads, work: &mut Stack) {
    out.clear();
    for thread in cur.iter() {
        work.clear();
        work.extend_from_slice(thread);
        feed(g, work, b, out);
    }
}

fn feed(g: &JsonGrammar, w: &mut Stack, b: u8, out: &mut Threads) {
    let Some(&top) = w.last() else {
        // The document is complete: nothing may follow.
        return;
    };
    let last = w.len() - 1;
    match top {
        Frame::Value { node, ws } => {
            if is_ws(b) {
                if ws < MAX_WHITESPACE {
                    w[last] = Frame::Value { node, ws: ws + 1 };
                    out.push(w);
                }
                return;
            }
            start_value(g, w, node, b, out);
        }
        Frame::Object {
            node,
            phase,
            ws,
            seen,
            pending,
        } => {
            if is_ws(b) {
                if ws < MAX_WHITESPACE && phase != ObjPhase::AwaitValue {
                    w[last] = Frame::Object {
                        node,
                        phase,
                        ws: ws + 1,
                        seen,
                        pending,
                    };
                    out.push(w);
                }
                return;
            }
            let obj = object_of(g, node);
            match (phase, b) {
                (ObjPhase::Open | ObjPhase::BeforeKey, b'"') => start_key(g, w, node, seen, out),
                (ObjPhase::Open | ObjPhase::AfterValue, b'}')
                    if seen & obj.required == obj.required =>
                {
                    complete(w);
                    out.push(w);
                }
                (ObjPhase::AfterValue, b',') => {
                    // Only if some key may still come: else a dead end.
                    let slot = w.len();
                    let more = obj.additional.is_some_and(|a| g.fits(a, slot))
                        || obj.props.iter().enumerate().any(|(i, p)| {
                            p.enabled && seen & (1 << i) == 0 && g.fits(p.value, slot)
                        });
                    if !more {
                        return;
                    }
                    w[last] = Frame::Object {
                        node,
                        phase: ObjPhase::BeforeKey,
                        ws: 0,
                        seen,
                        pending,
                    };
                    out.push(w);
                }
                (ObjPhase::AfterKey, b':') => {
                    if w.len() >= MAX_NESTING {
                        return;
                    }
                    w[last] = Frame::Object {
                        node,
                        phase: ObjPhase::AwaitValue,
                        ws: 0,
                        seen,
                        pending,
                    };
                    w.push(Frame::Value {
                        node: pending,
                        ws: 0,
                    });
                    out.push(w);
                }
                _ => {}
            }
        }
        Frame::KeyLit { obj, prop, pos } => {
            let p = &object_of(g, obj).props[prop as usize];
            let key = g.literal(p.key);
            if key.get(pos as usize) != Some(&b) {
                return;
            }
            let pos = pos + 1;
            if pos as usize == key.len() {
                complete_key(w, 1 << prop, p.value);
            } else {
                w[last] = Frame::KeyLit { obj, prop, pos };
            }
            out.push(w);
        }
        Frame::KeyStr { obj, mut lex, hash } => {
            let o = object_of(g, obj);
            match lex.step(b) {
                StrStep::Reject => {}
                StrStep::Close => {
                    if o.props.iter().any(|p| p.hash == hash) {
                        return;
                    }
                    let Some(additional) = o.additional else {
                        return;
                    };
                    complete_key(w, 0, additional);
                    out.push(w);
                }
                StrStep::Char | StrStep::Same => {
                    // Only a key that could be a declared one needs hashing.
                    let hash = if o.props.is_empty() {
                        hash
                    } else {
                        key_hash_step(hash, b)
                    };
                    w[last] = Frame::KeyStr { obj, lex, hash };
                    out.push(w);
                }
            }
        }
        Frame::Array {
            node,
            phase,
            ws,
            count,
        } => {
            let Node::Array { items, min, max } = *g.node(node) else {
                return;
            };
            if is_ws(b) {
                if ws < MAX_WHITESPACE && phase != ArrPhase::AwaitValue {
                    w[last] = Frame::Array {
                        node,
                        phase,
                        ws: ws + 1,
                        count,
                    };
                    out.push(w);
                }
                return;
            }
            match phase {
                ArrPhase::Open if b == b']' => {
                    if min == 0 {
                        complete(w);
                        out.push(w);
                    }
                }
                ArrPhase::Open | ArrPhase::BeforeValue => {
                    if count >= max || !g.fits(items, w.len()) {
                        return;
                    }
                    w[last] = Frame::Array {
                        node,
                        phase: ArrPhase::AwaitValue,
                        ws: 0,
                        count: count + 1,
                    };
                    w.push(Frame::Value { node: items, ws: 0 });
                    start_value(g, w, items, b, out);
                }
                ArrPhase::AfterValue if b == b',' => {
                    if count < max {
                        w[last] = Frame::Array {
                            node,
                            phase: ArrPhase::BeforeValue,
                            ws: 0,
                            count,
                        };
                        out.push(w);
                    }
                }
                ArrPhase::AfterValue if b == b']' => {
                    if count >= min {
                        complete(w);
                        out.push(w);
                    }
                }
                ArrPhase::AfterValue | ArrPhase::AwaitValue => {}
            }
        }
        Frame::Str { node, len, mut lex } => {
            let (min, max) = string_limits(g, node);
            match lex.step(b) {
                StrStep::Reject => {}
                StrStep::Close => {
                    if len >= min {
                        complete(w);
                        out.push(w);
                    }
                }
                StrStep::Char => {
                    let len = if max == u32::MAX {
                        // Past `min` nothing counts: the state stays the same (cheap masks).
                        (len + 1).min(min)
                    } else if len >= max {
                        return;
                    } else {
                        len + 1
                    };
                    w[last] = Frame::Str { node, len, lex };
                    out.push(w);
                }
                StrStep::Same => {
                    w[last] = Frame::Str { node, len, lex };
                    out.push(w);
                }
            }
        }
        Frame::Num {
            integer,
            phase,
            digits,
        } => match number_step(integer, phase, digits, b) {
            Some((phase, digits)) => {
                w[last] = Frame::Num {
                    integer,
                    phase,
                    digits,
                };
                out.push(w);
            }
            None => {
                if phase.accepting() {
                    // The byte ends the number and belongs to the container.
                    complete(w);
                    feed(g, w, b, out);
                }
            }
        },
        Frame::Lit { lit, pos } => {
            let bytes = g.literal(lit);
            if bytes.get(pos as usize) != Some(&b) {
                return;
            }
            let pos = pos + 1;
            if pos as usize == bytes.len() {
                complete(w);
            } else {
                w[last] = Frame::Lit { lit, pos };
            }
            out.push(w);
        }
    }
}

fn number_step(integer: bool, phase: NumPhase, digits: u8, b: u8) -> Option<(NumPhase, u8)> {
    use NumPhase::*;
    let digit = b.is_ascii_digit();
    Some(match phase {
        Minus if b == b'0' => (Zero, 1),
        Minus if digit => (Int, 1),
        Int if digit && digits < MAX_INT_DIGITS => (Int, digits + 1),
        Zero | Int if b == b'.' && !integer => (Dot, 0),
        Zero | Int | Frac if (b == b'e' || b == b'E') && !integer => (Exp, 0),
        Dot if digit => (Frac, 1),
        Frac if digit && digits < MAX_FRAC_DIGITS => (Frac, digits + 1),
        Exp if b == b'+' || b == b'-' => (ExpSign, 0),
        Exp | ExpSign if digit => (ExpDigits, 1),
        ExpDigits if digit && digits < MAX_EXP_DIGITS => (ExpDigits, digits + 1),
        _ => return None,
    })
}

/// Replaces the `Value` frame on top of `w` by the start of a `node` value beginning with `b`.
fn start_value(g: &JsonGrammar, w: &mut Stack, node: NodeId, b: u8, out: &mut Threads) {
    let last = w.len() - 1;
    match g.node(node) {
        Node::Any => {
            let sub = match b {
                b'{' => ANY_OBJECT,
                b'[' => ANY_ARRAY,
                b'"' => ANY_STRING,
                b'-' | b'0'..=b'9' => NUMBER,
                b't' => TRUE,
                b'f' => FALSE,
                b'n' => NULL,
                _ => NEVER,
            };
            if sub != NEVER {
                start_value(g, w, sub, b, out);
            }
        }
        Node::Never | Node::Alias(_) => {}
        Node::Union(alts) => {
            // Each branch starts from the same stack. Starting a value rewrites the top frame
            // or pops it and moves its container on, nothing deeper: the two top frames and
            // the length restore it.
            let len = w.len();
            let top = w[last];
            let below = last.checked_sub(1).map(|i| w[i]);
            for &alt in alts {
                start_value(g, w, alt, b, out);
                w.truncate(len);
                if w.len() < len {
                    w.push(top);
                }
                w[last] = top;
                if let Some(frame) = below {
                    w[last - 1] = frame;
                }
            }
        }
        Node::Object(_) => {
            if b == b'{' && g.fits(node, last) {
                w[last] = Frame::Object {
                    node,
                    phase: ObjPhase::Open,
                    ws: 0,
                    seen: 0,
                    pending: NEVER,
                };
                out.push(w);
            }
        }
        Node::Array { .. } => {
            if b == b'[' && g.fits(node, last) {
                w[last] = Frame::Array {
                    node,
                    phase: ArrPhase::Open,
                    ws: 0,
                    count: 0,
                };
                out.push(w);
            }
        }
        Node::String { .. } => {
            if b == b'"' {
                w[last] = Frame::Str {
                    node,
                    len: 0,
                    lex: StrLex::default(),
                };
                out.push(w);
            }
        }
        &Node::Number { integer } => {
            let phase = match b {
                b'-' => NumPhase::Minus,
                b'0' => NumPhase::Zero,
                b'1'..=b'9' => NumPhase::Int,
                _ => return,
            };
            w[last] = Frame::Num {
                integer,
                phase,
                digits: u8::from(b != b'-'),
            };
            out.push(w);
        }
        &Node::Literal(lit) => {
            let bytes = g.literal(lit);
            if bytes.first() != Some(&b) {
                return;
            }
            if bytes.len() == 1 {
                complete(w);
            } else {
                w[last] = Frame::Lit { lit, pos: 1 };
            }
            out.push(w);
        }
    }
}

/// After an object's `"`: one thread per declared key still allowed, one for any other key.
fn start_key(g: &JsonGrammar, w: &mut Stack, node: NodeId, seen: u64, out: &mut Threads) {
    let slot = w.len();
    let o = object_of(g, node);
    for (i, p) in o.props.iter().enumerate() {
        if !p.enabled || seen & (1 << i) != 0 || !g.fits(p.value, slot) {
            continue;
        }
        w.push(Frame::KeyLit {
            obj: node,
            prop: i as u8,
            pos: 1,
        });
        out.push(w);
        w.pop();
    }
    if o.additional.is_some_and(|a| g.fits(a, slot)) {
        w.push(Frame::KeyStr {
            obj: node,
            lex: StrLex::default(),
            hash: KEY_HASH_START,
        });
        out.push(w);
    }
}

/// Whether every plain ASCII string byte (`0x20..=0x7F` but `"` and `\`) leaves `t` as it is:
/// a single thread inside a string that counts nothing and has no escape or UTF-8 sequence
/// open. Masks skip whole vocabulary subtrees in that state.
pub(crate) fn in_plain_string(g: &JsonGrammar, t: &Threads) -> bool {
    if t.ends.len() != 1 {
        return false;
    }
    match t.frames.last() {
        Some(Frame::Str { node, len, lex }) => {
            let (min, max) = string_limits(g, *node);
            lex.is_plain() && max == u32::MAX && *len >= min
        }
        Some(Frame::KeyStr { obj, lex, .. }) => {
            lex.is_plain() && object_of(g, *obj).props.is_empty()
        }
        _ => false,
    }
}

/// How many plain ASCII string bytes in a row (`0x20..=0x7F` but `"` and `\`) some thread of
/// `t` surely takes: one inside a string (or a key) with no escape or UTF-8 sequence open,
/// as many as its `maxLength` leaves room for. Masks let such subtrees through unstepped.
pub(crate) fn plain_run(g: &JsonGrammar, t: &Threads) -> u32 {
    t.iter()
        .map(|stack| match stack.last() {
            Some(Frame::Str { node, len, lex }) if lex.is_plain() => {
                let (_, max) = string_limits(g, *node);
                if max == u32::MAX {
                    u32::MAX
                } else {
                    max.saturating_sub(*len)
                }
            }
            Some(Frame::KeyStr { lex, .. }) if lex.is_plain() => u32::MAX,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Where a document stands: a [`JsonGrammar`] and the threads still alive. Cloning copies the
/// state (a few small buffers); advancing allocates nothing once the buffers have grown.
#[derive(Clone, Debug)]
pub struct Matcher {
    grammar: Arc<JsonGrammar>,
    pub(crate) state: Threads,
    next: Threads,
    spare: Threads,
    work: Stack,
}

impl Matcher {
    /// At the start of a document.
    pub fn new(grammar: Arc<JsonGrammar>) -> Matcher {
        let mut state = Threads::default();
        state.push(&[Frame::Value {
            node: grammar.root,
            ws: 0,
        }]);
        Matcher {
            grammar,
            state,
            next: Threads::default(),
            spare: Threads::default(),
            work: Stack::new(),
        }
    }

    pub fn grammar(&self) -> &Arc<JsonGrammar> {
        &self.grammar
    }

    /// Feeds `bytes`; false (and no change) if they cannot continue a valid document.
    pub fn advance(&mut self, bytes: &[u8]) -> bool {
        let Some((&first, rest)) = bytes.split_first() else {
            return true;
        };
        step_all(
            &self.grammar,
            &self.state,
            first,
            &mut self.next,
            &mut self.work,
        );
        if self.next.is_empty() {
            return false;
        }
        for &b in rest {
            step_all(
                &self.grammar,
                &self.next,
                b,
                &mut self.spare,
                &mut self.work,
            );
            if self.spare.is_empty() {
                return false;
            }
            std::mem::swap(&mut self.next, &mut self.spare);
        }
        std::mem::swap(&mut self.state, &mut self.next);
        true
    }

    /// Whether `bytes` would be accepted, without moving.
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        self.clone().advance(bytes)
    }

    /// Whether the bytes so far are a whole valid document (EOS may come now).
    pub fn is_complete(&self) -> bool {
        self.state.iter().any(|t| match t {
            [] => true,
            [Frame::Num { phase, .. }] => phase.accepting(),
            _ => false,
        })
    }

    /// Whether any byte may still follow (false once the top-level value is closed, or is a
    /// number at its digit limit).
    pub fn can_continue(&self) -> bool {
        self.state.iter().any(|t| match t {
            [] => false,
            // A top-level number: only its own bytes may follow.
            [
                Frame::Num {
                    integer,
                    phase,
                    digits,
                },
            ] => b"0.e-"
                .iter()
                .any(|&b| number_step(*integer, *phase, *digits, b).is_some()),
            _ => true,
        })
    }

    /// Branches alive (1 unless an `anyOf` or a key is still ambiguous).
    pub fn thread_count(&self) -> usize {
        self.state.ends.len()
    }
}
