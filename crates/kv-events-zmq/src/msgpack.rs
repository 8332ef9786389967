//! A minimal MessagePack reader over a byte slice: just what the KV event decoder needs.
//!
//! It never recurses (skipping a nested value counts pending items instead), never allocates,
//! and every length it reads is checked against the bytes left, so hostile input can neither
//! overflow the stack nor make a caller reserve more memory than the payload's size.

use std::fmt;

/// Why a payload is not the MessagePack the decoder expects.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload ends early at byte {0}")]
    Truncated(usize),
    #[error("at byte {at}: expected {expected}, found {found}")]
    Unexpected {
        at: usize,
        expected: &'static str,
        found: Kind,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The kind of a MessagePack value, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nil,
    Bool,
    Int,
    Float,
    Str,
    Bin,
    Array,
    Map,
    Ext,
    Reserved,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Kind::Nil => "nil",
            Kind::Bool => "bool",
            Kind::Int => "integer",
            Kind::Float => "float",
            Kind::Str => "string",
            Kind::Bin => "bytes",
            Kind::Array => "array",
            Kind::Map => "map",
            Kind::Ext => "ext",
            Kind::Reserved => "reserved byte 0xc1",
        };
        f.write_str(name)
    }
}

/// An integer as MessagePack carries it: non-negative ones up to `u64::MAX`, negative ones down
/// to `i64::MIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int {
    Unsigned(u64),
    Negative(i64),
}

impl Int {
    /// The value's 64 bits (two's complement for negative values).
    pub fn to_bits(self) -> u64 {
        match self {
            Int::Unsigned(v) => v,
            Int::Negative(v) => v as u64,
        }
    }

    pub fn to_u64(self) -> Option<u64> {
        match self {
            Int::Unsigned(v) => Some(v),
            Int::Negative(_) => None,
        }
    }

    pub fn to_i64(self) -> Option<i64> {
        match self {
            Int::Unsigned(v) => i64::try_from(v).ok(),
            Int::Negative(v) => Some(v),
        }
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Bytes not read yet: an upper bound on how many values can still follow.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(self.buf.len()));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated(self.buf.len()))
    }

    /// The kind of the next value, without consuming it.
    pub fn peek_kind(&self) -> Result<Kind, DecodeError> {
        Ok(kind_of(self.peek()?))
    }

    fn unexpected(&self, expected: &'static str) -> DecodeError {
        DecodeError::Unexpected {
            at: self.pos,
            expected,
            found: self.peek().map(kind_of).unwrap_or(Kind::Nil),
        }
    }

    /// Consumes a nil if one is next.
    pub fn try_nil(&mut self) -> Result<bool, DecodeError> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    pub fn read_int(&mut self) -> Result<Int, DecodeError> {
        let marker = self.peek()?;
        let value = match marker {
            0x00..=0x7f => {
                self.pos += 1;
                Int::Unsigned(u64::from(marker))
            }
            0xe0..=0xff => {
                self.pos += 1;
                Int::Negative(i64::from(marker as i8))
            }
            0xcc..=0xcf => {
                self.pos += 1;
                Int::Unsigned(self.be(1 << (marker - 0xcc))?)
            }
            0xd0..=0xd3 => {
                self.pos += 1;
                let width = 1usize << (marker - 0xd0);
                let raw = self.be(width)?;
                // Sign-extend from `width` bytes.
                let shift = 64 - 8 * width as u32;
                let v = ((raw << shift) as i64) >> shift;
                if v < 0 {
                    Int::Negative(v)
                } else {
                    Int::Unsigned(v as u64)
                }
            }
            _ => return Err(self.unexpected("an integer")),
        };
        Ok(value)
    }

    pub fn read_u32(&mut self) -> Result<u32, DecodeError> {
        let at = self.pos;
        self.read_int()?
            .to_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| DecodeError::Invalid(format!("at byte {at}: integer out of range")))
    }

    /// A float, or an integer read as one (msgspec writes whole floats as floats, other
    /// encoders may not).
    pub fn read_f64(&mut self) -> Result<f64, DecodeError> {
        match self.peek()? {
            0xca => {
                self.pos += 1;
                Ok(f64::from(f32::from_bits(self.be(4)? as u32)))
            }
            0xcb => {
                self.pos += 1;
                Ok(f64::from_bits(self.be(8)?))
            }
            _ => match self.read_int() {
                Ok(Int::Unsigned(v)) => Ok(v as f64),
                Ok(Int::Negative(v)) => Ok(v as f64),
                Err(_) => Err(self.unexpected("a number")),
            },
        }
    }

    fn str_len(&mut self) -> Result<Option<usize>, DecodeError> {
        let marker = self.peek()?;
        let len = match marker {
            0xa0..=0xbf => {
                self.pos += 1;
                usize::from(marker & 0x1f)
            }
            0xd9..=0xdb => {
                self.pos += 1;
                self.be(1 << (marker - 0xd9))? as usize
            }
            _ => return Ok(None),
        };
        Ok(Some(len))
    }

    fn bin_len(&mut self) -> Result<Option<usize>, DecodeError> {
        let marker = self.peek()?;
        let len = match marker {
            0xc4..=0xc6 => {
                self.pos += 1;
                self.be(1 << (marker - 0xc4))? as usize
            }
            _ => return Ok(None),
        };
        Ok(Some(len))
    }

    /// A UTF-8 string.
    pub fn read_str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let Some(len) = self.str_len()? else {
            return Err(self.unexpected("a string"));
        };
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| DecodeError::Invalid(format!("at byte {at}: string is not UTF-8")))
    }

    /// A string's or a byte array's raw bytes.
    pub fn read_bytes_or_str(&mut self) -> Result<&'a [u8], DecodeError> {
        if let Some(len) = self.bin_len()? {
            return self.take(len);
        }
        if let Some(len) = self.str_len()? {
            return self.take(len);
        }
        Err(self.unexpected("bytes"))
    }

    /// An array header: the number of items that follow.
    pub fn read_array_len(&mut self) -> Result<usize, DecodeError> {
        let marker = self.peek()?;
        let len = match marker {
            0x90..=0x9f => {
                self.pos += 1;
                usize::from(marker & 0x0f)
            }
            0xdc => {
                self.pos += 1;
                self.be(2)? as usize
            }
            0xdd => {
                self.pos += 1;
                self.be(4)? as usize
            }
            _ => return Err(self.unexpected("an array")),
        };
        self.check_count(len)?;
        Ok(len)
    }

    /// A map header: the number of key/value pairs that follow.
    pub fn read_map_len(&mut self) -> Result<usize, DecodeError> {
        let marker = self.peek()?;
        let len = match marker {
            0x80..=0x8f => {
                self.pos += 1;
                usize::from(marker & 0x0f)
            }
            0xde => {
                self.pos += 1;
                self.be(2)? as usize
            }
            0xdf => {
                self.pos += 1;
                self.be(4)? as usize
            }
            _ => return Err(self.unexpected("a map")),
        };
        self.check_count(len.saturating_mul(2))?;
        Ok(len)
    }

    /// Every value takes at least one byte: a count beyond the bytes left is a lie.
    fn check_count(&self, items: usize) -> Result<(), DecodeError> {
        if items > self.remaining() {
            return Err(DecodeError::Truncated(self.buf.len()));
        }
        Ok(())
    }

    /// Skips one value, however deeply nested, without recursion.
    pub fn skip_value(&mut self) -> Result<(), DecodeError> {
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            let marker = self.byte()?;
            match marker {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => {}
                0x80..=0x8f => pending += 2 * usize::from(marker & 0x0f),
                0x90..=0x9f => pending += usize::from(marker & 0x0f),
                0xa0..=0xbf => {
                    self.take(usize::from(marker & 0x1f))?;
                }
                0xc1 => {
                    return Err(DecodeError::Invalid(format!(
                        "reserved byte 0xc1 at byte {}",
                        self.pos - 1
                    )));
                }
                0xc4..=0xc6 => {
                    let n = self.be(1 << (marker - 0xc4))? as usize;
                    self.take(n)?;
                }
                0xc7..=0xc9 => {
                    let n = self.be(1 << (marker - 0xc7))? as usize;
                    self.take(n + 1)?;
                }
                0xca => {
                    self.take(4)?;
                }
                0xcb => {
                    self.take(8)?;
                }
                0xcc..=0xcf => {
                    self.take(1 << (marker - 0xcc))?;
                }
                0xd0..=0xd3 => {
                    self.take(1 << (marker - 0xd0))?;
                }
                0xd4..=0xd8 => {
                    self.take(1 + (1 << (marker - 0xd4)))?;
                }
                0xd9..=0xdb => {
                    let n = self.be(1 << (marker - 0xd9))? as usize;
                    self.take(n)?;
                }
                0xdc | 0xdd => {
                    let n = self.be(if marker == 0xdc { 2 } else { 4 })? as usize;
                    pending = pending.saturating_add(n);
                }
                0xde | 0xdf => {
                    let n = self.be(if marker == 0xde { 2 } else { 4 })? as usize;
                    pending = pending.saturating_add(n.saturating_mul(2));
                }
            }
            // More pending values than bytes left can never be satisfied.
            if pending > self.remaining() {
                return Err(DecodeError::Truncated(self.buf.len()));
            }
        }
        Ok(())
    }
}

fn kind_of(marker: u8) -> Kind {
    match marker {
        0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff => Kind::Int,
        0x80..=0x8f | 0xde | 0xdf => Kind::Map,
        0x90..=0x9f | 0xdc | 0xdd => Kind::Array,
        0xa0..=0xbf | 0xd9..=0xdb => Kind::Str,
        0xc0 => Kind::Nil,
        0xc1 => Kind::Reserved,
        0xc2 | 0xc3 => Kind::Bool,
        0xc4..=0xc6 => Kind::Bin,
        0xc7..=0xc9 | 0xd4..=0xd8 => Kind::Ext,
        0xca | 0xcb => Kind::Float,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut buf = Vec::new();
        f(&mut buf);
        buf
    }

    #[test]
    fn integers_of_every_width_round_trip() {
        for v in [0i64, 1, 127, 128, 255, 256, 65535, 65536, 1 << 40, i64::MAX] {
            let buf = encoded(|b| {
                rmp::encode::write_sint(b, v).unwrap();
            });
            assert_eq!(Reader::new(&buf).read_int().unwrap().to_i64(), Some(v));
        }
        for v in [-1i64, -32, -33, -128, -129, -40000, i64::MIN] {
            let buf = encoded(|b| {
                rmp::encode::write_sint(b, v).unwrap();
            });
            assert_eq!(Reader::new(&buf).read_int().unwrap(), Int::Negative(v));
        }
        let buf = encoded(|b| {
            rmp::encode::write_uint(b, u64::MAX).unwrap();
        });
        assert_eq!(Reader::new(&buf).read_int().unwrap().to_bits(), u64::MAX);
    }

    #[test]
    fn skip_handles_nesting_without_recursion_and_rejects_lies() {
        // 100k nested one-element arrays: a recursive skipper would overflow the stack.
        let mut deep = vec![0x91u8; 100_000];
        deep.push(0x01);
        let mut r = Reader::new(&deep);
        r.skip_value().unwrap();
        assert!(r.is_at_end());
        // An array claiming 2^32-1 items in 5 bytes.
        let lie = [0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(Reader::new(&lie).skip_value().is_err());
        assert!(Reader::new(&lie).read_array_len().is_err());
        // A string running past the end.
        assert!(Reader::new(&[0xd9, 0x10, b'a']).read_str().is_err());
    }

    #[test]
    fn floats_and_strings() {
        let buf = encoded(|b| {
            rmp::encode::write_f64(b, 1.5).unwrap();
            rmp::encode::write_f32(b, 2.5).unwrap();
            rmp::encode::write_str(b, "BlockStored").unwrap();
            rmp::encode::write_bin(b, &[1, 2, 3]).unwrap();
        });
        let mut r = Reader::new(&buf);
        assert_eq!(r.read_f64().unwrap(), 1.5);
        assert_eq!(r.read_f64().unwrap(), 2.5);
        assert_eq!(r.read_str().unwrap(), "BlockStored");
        assert_eq!(r.read_bytes_or_str().unwrap(), &[1, 2, 3]);
        assert!(r.is_at_end());
    }
}
