//! A reader for the metadata of a GGUF file (llama.cpp's model format): the key/value section
//! after the header, where a GGUF keeps its tokenizer (`tokenizer.ggml.*`), chat template and
//! hyper-parameters. Tensor data is never read.
//!
//! Layout (little-endian, GGUF versions 2 and 3): magic `GGUF`, `u32` version, `u64` tensor
//! count, `u64` key/value count, then each pair as a string key, a `u32` value type and the
//! value. Strings are a `u64` byte length and UTF-8 bytes; arrays are a `u32` element type, a
//! `u64` count and the elements.
//!
//! Every length and count is checked against the bytes left in the file before anything is
//! allocated, so a truncated or hostile file is an error naming the key, never a panic or an
//! oversized allocation.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Why a GGUF file's metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a GGUF file (magic {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("GGUF version {0} is not supported (only 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("truncated or corrupt metadata at key `{key}`: {message}")]
    Corrupt { key: String, message: String },
}

/// The metadata of one GGUF file.
#[derive(Clone, Debug, Default)]
pub struct GgufMetadata {
    pub version: u32,
    pub tensor_count: u64,
    pub values: HashMap<String, GgufValue>,
}

/// Arrays nest at most this deep (llama.cpp writes one level; more is a corrupt file).
const MAX_ARRAY_DEPTH: u32 = 4;

impl GgufMetadata {
    /// Reads the metadata section of the file at `path`.
    pub fn read_file(path: &Path) -> Result<Self, GgufError> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Self::read(BufReader::with_capacity(1 << 16, file), len)
    }

    /// Reads the metadata from `reader`, which holds at most `len` bytes (the file size bounds
    /// every length inside).
    pub fn read<R: Read>(reader: R, len: u64) -> Result<Self, GgufError> {
        let mut r = Cursor {
            inner: reader,
            left: len,
            key: String::from("<header>"),
        };
        let mut magic = [0u8; 4];
        r.bytes(&mut magic)?;
        if &magic != b"GGUF" {
            return Err(GgufError::BadMagic(magic));
        }
        let version = r.u32()?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = r.u64()?;
        let kv_count = r.u64()?;
        // Each pair takes at least 8 (key length) + 4 (type) + 1 bytes.
        r.check_count(kv_count, 13)?;
        let mut values = HashMap::with_capacity(kv_count as usize);
        for _ in 0..kv_count {
            r.key = String::from("<key>");
            let key = r.string()?;
            r.key = key.clone();
            let kind = r.u32()?;
            let value = r.value(kind, 0)?;
            values.insert(key, value);
        }
        Ok(GgufMetadata {
            version,
            tensor_count,
            values,
        })
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.values.get(key)
    }
}

/// A reader that knows how many bytes are left and which key it is in (for errors).
struct Cursor<R> {
    inner: R,
    left: u64,
    key: String,
}

impl<R: Read> Cursor<R> {
    fn corrupt(&self, message: impl Into<String>) -> GgufError {
        GgufError::Corrupt {
            key: self.key.clone(),
            message: message.into(),
        }
    }

    fn bytes(&mut self, out: &mut [u8]) -> Result<(), GgufError> {
        if (out.len() as u64) > self.left {
            return Err(self.corrupt("the file ends early"));
        }
        self.inner.read_exact(out).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.corrupt("the file ends early")
            } else {
                GgufError::Io(e)
            }
        })?;
        self.left -= out.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        self.bytes(&mut out)?;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Refuses a count of items of at least `min_item_bytes` each that cannot fit in the rest.
    fn check_count(&self, count: u64, min_item_bytes: u64) -> Result<(), GgufError> {
        if count.saturating_mul(min_item_bytes) > self.left {
            return Err(self.corrupt(format!(
                "{count} items cannot fit in the {} bytes left",
                self.left
            )));
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        if len > self.left {
            return Err(self.corrupt(format!(
                "a string of {len} bytes cannot fit in the {} bytes left",
                self.left
            )));
        }
        let mut bytes = vec![0u8; len as usize];
        self.bytes(&mut bytes)?;
        // Some writers NUL-terminate strings; the terminator is not part of the text.
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        String::from_utf8(bytes).map_err(|_| self.corrupt("a string is not UTF-8"))
    }

    fn value(&mut self, kind: u32, depth: u32) -> Result<GgufValue, GgufError> {
        Ok(match kind {
            0 => GgufValue::U8(u8::from_le_bytes(self.array()?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array()?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                other => return Err(self.corrupt(format!("boolean byte {other}"))),
            },
            8 => GgufValue::String(self.string()?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.corrupt("arrays nested too deep"));
                }
                let element = self.u32()?;
                let count = self.u64()?;
                self.check_count(count, element_min_bytes(element))?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(element, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(self.corrupt(format!("unknown value type {other}"))),
        })
    }
}

/// The fewest bytes one element of value type `kind` takes (unknown types: 1, refused later).
fn element_min_bytes(kind: u32) -> u64 {
    match kind {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => 8,
        9 => 12,
        10..=12 => 8,
        _ => 1,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a GGUF v3 header and metadata (no tensors) for tests.
    #[derive(Default)]
    pub(crate) struct GgufWriter {
        pairs: Vec<(String, Vec<u8>)>,
    }

    impl GgufWriter {
        fn push(&mut self, key: &str, kind: u32, body: Vec<u8>) -> &mut Self {
            let mut value = kind.to_le_bytes().to_vec();
            value.extend(body);
            self.pairs.push((key.to_string(), value));
            self
        }

        pub(crate) fn string(&mut self, key: &str, value: &str) -> &mut Self {
            self.push(key, 8, encode_string(value))
        }

        pub(crate) fn u32(&mut self, key: &str, value: u32) -> &mut Self {
            self.push(key, 4, value.to_le_bytes().to_vec())
        }

        pub(crate) fn bool(&mut self, key: &str, value: bool) -> &mut Self {
            self.push(key, 7, vec![u8::from(value)])
        }

        pub(crate) fn strings(&mut self, key: &str, values: &[&str]) -> &mut Self {
            let mut body = 8u32.to_le_bytes().to_vec();
            body.extend((values.len() as u64).to_le_bytes());
            for v in values {
                body.extend(encode_string(v));
            }
            self.push(key, 9, body)
        }

        pub(crate) fn i32s(&mut self, key: &str, values: &[i32]) -> &mut Self {
            let mut body = 5u32.to_le_bytes().to_vec();
            body.extend((values.len() as u64).to_le_bytes());
            for v in values {
                body.extend(v.to_le_bytes());
            }
            self.push(key, 9, body)
        }

        pub(crate) fn bytes(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(3u32.to_le_bytes());
            out.extend(0u64.to_le_bytes());
            out.extend((self.pairs.len() as u64).to_le_bytes());
            for (key, value) in &self.pairs {
                out.extend(encode_string(key));
                out.extend(value);
            }
            out
        }
    }

    fn encode_string(s: &str) -> Vec<u8> {
        let mut out = (s.len() as u64).to_le_bytes().to_vec();
        out.extend(s.as_bytes());
        out
    }

    fn read(bytes: &[u8]) -> Result<GgufMetadata, GgufError> {
        GgufMetadata::read(bytes, bytes.len() as u64)
    }

    #[test]
    fn reads_scalars_strings_and_arrays() {
        let bytes = GgufWriter::default()
            .string("general.architecture", "llama")
            .u32("llama.context_length", 8192)
            .bool("tokenizer.ggml.add_bos_token", false)
            .strings("tokenizer.ggml.tokens", &["a", "b\0"])
            .i32s("tokenizer.ggml.token_type", &[1, 3])
            .bytes();
        let meta = read(&bytes).unwrap();
        assert_eq!(meta.version, 3);
        assert_eq!(
            meta.get("general.architecture").unwrap().as_str(),
            Some("llama")
        );
        assert_eq!(
            meta.get("llama.context_length").unwrap().as_u64(),
            Some(8192)
        );
        assert_eq!(
            meta.get("tokenizer.ggml.add_bos_token").unwrap().as_bool(),
            Some(false)
        );
        let tokens = meta
            .get("tokenizer.ggml.tokens")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(tokens[1].as_str(), Some("b"), "NUL terminator dropped");
        let types = meta.get("tokenizer.ggml.token_type").unwrap();
        assert_eq!(types.as_array().unwrap()[1].as_i64(), Some(3));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = GgufWriter::default()
            .string("general.architecture", "llama")
            .strings("tokenizer.ggml.tokens", &["hello", "world"])
            .bytes();
        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(read(&bytes).is_ok());
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(0u64.to_le_bytes());
        bytes.extend(1u64.to_le_bytes());
        bytes.extend(3u64.to_le_bytes());
        bytes.extend(b"arr");
        bytes.extend(9u32.to_le_bytes());
        bytes.extend(8u32.to_le_bytes());
        bytes.extend(u64::MAX.to_le_bytes());
        let err = read(&bytes).unwrap_err().to_string();
        assert!(err.contains("`arr`") && err.contains("cannot fit"), "{err}");

        let err = read(b"GGML\x03\0\0\0").unwrap_err();
        assert!(matches!(err, GgufError::BadMagic(_)), "{err}");
        let mut v1 = b"GGUF".to_vec();
        v1.extend(1u32.to_le_bytes());
        assert!(matches!(
            read(&v1).unwrap_err(),
            GgufError::UnsupportedVersion(1)
        ));
    }
}
