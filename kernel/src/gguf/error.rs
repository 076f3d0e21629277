//! Typed errors for malformed GGUF input. Each says what is wrong, where (byte offset and which entry), and why.

use alloc::string::String;
use core::fmt;

use crate::GgmlType;

/// Why a GGUF file was rejected, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufError {
    /// Byte offset in the file where the problem was found.
    pub offset: u64,
    /// Which part of the file was being read.
    pub context: Context,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// The part of a GGUF file an error was found in.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Context {
    /// The fixed header (magic, version, counts).
    Header,
    /// Metadata entry number `index`; `key` once it has been read.
    Metadata {
        /// Position of the entry among the metadata entries.
        index: u64,
        /// The entry's key, when it was readable.
        key: Option<String>,
    },
    /// Tensor info number `index`; `name` once it has been read.
    Tensor {
        /// Position of the tensor among the tensor infos.
        index: u64,
        /// The tensor's name, when it was readable.
        name: Option<String>,
    },
}

/// What is wrong with a GGUF file.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file does not start with `GGUF`.
    BadMagic([u8; 4]),
    /// The version field reads as a known version only when byte-swapped.
    BigEndian,
    /// A version other than 2 or 3.
    UnsupportedVersion(u32),
    /// The file ends before a field that it announces.
    Truncated {
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A count that cannot be right: more items than the remaining bytes could hold, or beyond a sanity cap.
    CountTooLarge {
        /// What was being counted.
        what: &'static str,
        /// The count found in the file.
        count: u64,
        /// The largest count that could be valid here.
        max: u64,
    },
    /// A string longer than the cap for its role.
    StringTooLong {
        /// The announced length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// A metadata value type id that GGUF does not define.
    UnknownValueType(u32),
    /// A bool byte other than 0 or 1.
    InvalidBool(u8),
    /// Arrays nested deeper than the cap.
    NestingTooDeep(u32),
    /// A metadata key that appears twice.
    DuplicateKey(String),
    /// `general.alignment` with the wrong type or a value that is not a power of two.
    BadAlignment(String),
    /// A tensor type id that is not a known GGML type.
    UnknownTensorType(u32),
    /// A tensor with no dimensions or more than four.
    BadDimCount(u32),
    /// A tensor shape whose element count overflows, or a dimension of zero.
    BadShape(String),
    /// A row length that is not a multiple of the type's block length.
    RaggedRow {
        /// The tensor type.
        dtype: GgmlType,
        /// Elements per row (`ne[0]`).
        row_len: u64,
    },
    /// A tensor whose data offset is not a multiple of the file's alignment.
    Misaligned {
        /// Offset relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor whose bytes extend past the end of the file.
    TensorOutOfBounds {
        /// Absolute end offset of the tensor's data.
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// Two tensors whose byte ranges overlap.
    TensorsOverlap {
        /// The other tensor's name.
        other: String,
    },
    /// A tensor name that appears twice.
    DuplicateTensor(String),
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Context::Header => f.write_str("header"),
            Context::Metadata { index, key: Some(key) } => write!(f, "metadata entry {index} ('{key}')"),
            Context::Metadata { index, key: None } => write!(f, "metadata entry {index}"),
            Context::Tensor {
                index,
                name: Some(name),
            } => write!(f, "tensor info {index} ('{name}')"),
            Context::Tensor { index, name: None } => write!(f, "tensor info {index}"),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::BadMagic(m) => write!(
                f,
                "not a GGUF file: starts with {m:02x?}, expected the bytes of \"GGUF\""
            ),
            ErrorKind::BigEndian => f.write_str("big-endian GGUF files are not supported"),
            ErrorKind::UnsupportedVersion(v) => {
                write!(f, "GGUF version {v} is not supported (only 2 and 3 are)")
            }
            ErrorKind::Truncated { needed, available } => {
                write!(f, "file is truncated: needs {needed} more bytes, {available} remain")
            }
            ErrorKind::CountTooLarge { what, count, max } => {
                write!(f, "{what} count {count} is impossible here (at most {max})")
            }
            ErrorKind::StringTooLong { len, max } => {
                write!(f, "string length {len} exceeds the limit of {max}")
            }
            ErrorKind::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            ErrorKind::UnknownValueType(t) => write!(f, "unknown metadata value type {t}"),
            ErrorKind::InvalidBool(b) => write!(f, "bool value must be 0 or 1, found {b}"),
            ErrorKind::NestingTooDeep(max) => write!(f, "arrays nested deeper than {max} levels"),
            ErrorKind::DuplicateKey(k) => write!(f, "metadata key '{k}' appears more than once"),
            ErrorKind::BadAlignment(why) => write!(f, "bad general.alignment: {why}"),
            ErrorKind::UnknownTensorType(t) => write!(f, "unknown tensor type id {t}"),
            ErrorKind::BadDimCount(n) => {
                write!(f, "tensor has {n} dimensions (1 to 4 are allowed)")
            }
            ErrorKind::BadShape(why) => write!(f, "bad tensor shape: {why}"),
            ErrorKind::RaggedRow { dtype, row_len } => write!(
                f,
                "row of {row_len} elements is not a multiple of the {dtype} block of {}",
                dtype.block_len()
            ),
            ErrorKind::Misaligned { offset, alignment } => {
                write!(
                    f,
                    "tensor data offset {offset} is not a multiple of the alignment {alignment}"
                )
            }
            ErrorKind::TensorOutOfBounds { end, file_len } => {
                write!(
                    f,
                    "tensor data ends at byte {end}, past the end of the {file_len}-byte file"
                )
            }
            ErrorKind::TensorsOverlap { other } => {
                write!(f, "tensor data overlaps that of '{other}'")
            }
            ErrorKind::DuplicateTensor(name) => {
                write!(f, "tensor name '{name}' appears more than once")
            }
        }
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid GGUF at byte {} ({}): {}",
            self.offset, self.context, self.kind
        )
    }
}

impl core::error::Error for GgufError {}
