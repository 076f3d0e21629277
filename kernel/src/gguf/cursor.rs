//! A bounds-checked little-endian reader over the file's bytes. Every read checks what remains first, so a malformed
//! length or count becomes an error, never a panic or an oversized allocation.

use super::error::ErrorKind;
use super::value::{Array, Value, ValueType};

/// Longest string value accepted (chat templates and embedded tokenizer JSON are the long ones: a few MiB).
pub(crate) const MAX_STRING_LEN: u64 = 256 << 20;
/// Longest metadata key (the GGUF specification's limit).
pub(crate) const MAX_KEY_LEN: u64 = 65_535;
/// Deepest nesting of arrays inside arrays.
pub(crate) const MAX_ARRAY_DEPTH: u32 = 8;

/// An error before it is given its context: the offset where it happened and what it is.
#[derive(Debug)]
pub(crate) struct Located {
    pub offset: u64,
    pub kind: ErrorKind,
}

#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// An error located at the current position.
    pub fn error(&self, kind: ErrorKind) -> Located {
        Located {
            offset: self.pos as u64,
            kind,
        }
    }

    pub fn take(&mut self, n: u64) -> Result<&'a [u8], Located> {
        let available = self.remaining();
        let n = usize::try_from(n).ok().filter(|&n| n <= available).ok_or_else(|| {
            self.error(ErrorKind::Truncated {
                needed: n,
                available: available as u64,
            })
        })?;
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Located> {
        let rest = &self.bytes[self.pos..];
        let (head, _) = rest.split_first_chunk::<N>().ok_or_else(|| {
            self.error(ErrorKind::Truncated {
                needed: N as u64,
                available: rest.len() as u64,
            })
        })?;
        self.pos += N;
        Ok(*head)
    }

    pub fn u32(&mut self) -> Result<u32, Located> {
        self.array().map(u32::from_le_bytes)
    }

    pub fn u64(&mut self) -> Result<u64, Located> {
        self.array().map(u64::from_le_bytes)
    }

    /// A count of items that each take at least `min_item_size` bytes: rejected when the rest of the file could not
    /// hold that many, so callers may allocate for it.
    pub fn count(&mut self, what: &'static str, min_item_size: usize) -> Result<usize, Located> {
        let start = self.pos;
        let count = self.u64()?;
        let max = (self.remaining() / min_item_size.max(1)) as u64;
        if count > max {
            return Err(Located {
                offset: start as u64,
                kind: ErrorKind::CountTooLarge { what, count, max },
            });
        }
        // count <= remaining bytes, which fit in usize.
        Ok(count as usize)
    }

    /// A length-prefixed UTF-8 string of at most `max_len` bytes.
    pub fn string(&mut self, max_len: u64) -> Result<&'a str, Located> {
        let start = self.pos;
        let len = self.u64()?;
        if len > max_len {
            return Err(Located {
                offset: start as u64,
                kind: ErrorKind::StringTooLong { len, max: max_len },
            });
        }
        let bytes = self.take(len)?;
        core::str::from_utf8(bytes).map_err(|_| Located {
            offset: start as u64,
            kind: ErrorKind::InvalidUtf8,
        })
    }

    pub fn value_type(&mut self) -> Result<ValueType, Located> {
        let start = self.pos;
        let id = self.u32()?;
        ValueType::from_id(id).ok_or(Located {
            offset: start as u64,
            kind: ErrorKind::UnknownValueType(id),
        })
    }

    fn bool(&mut self) -> Result<bool, Located> {
        match self.array::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(Located {
                offset: self.pos as u64 - 1,
                kind: ErrorKind::InvalidBool(b),
            }),
        }
    }

    /// One value of type `ty`; `depth` is how many arrays enclose it.
    pub fn value(&mut self, ty: ValueType, depth: u32) -> Result<Value<'a>, Located> {
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array()?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array()?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array()?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::Bool => Value::Bool(self.bool()?),
            ValueType::String => Value::String(self.string(MAX_STRING_LEN)?),
            ValueType::Array => Value::Array(self.array_value(depth)?),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array()?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
        })
    }

    /// An array body, validated element by element so that later iteration cannot fail.
    fn array_value(&mut self, depth: u32) -> Result<Array<'a>, Located> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.error(ErrorKind::NestingTooDeep(MAX_ARRAY_DEPTH)));
        }
        let elem = self.value_type()?;
        let len = self.count("array element", elem.min_encoded_size())?;
        let start = self.pos;
        match elem.fixed_size() {
            // Fixed-size numbers need no per-element check; bools do (0 or 1).
            Some(size) if elem != ValueType::Bool => {
                self.take((len * size) as u64)?;
            }
            _ => {
                for _ in 0..len {
                    self.value(elem, depth + 1)?;
                }
            }
        }
        Ok(Array::new(elem, len, &self.bytes[start..self.pos]))
    }
}
