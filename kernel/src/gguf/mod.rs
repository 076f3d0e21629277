//! Zero-copy GGUF: parse a file's header, metadata and tensor infos from a `&[u8]`, and hand out tensor views that
//! borrow the bytes.
//!
//! Layout (all little-endian):
//! ```text
//! "GGUF" | version u32 | n_tensors u64 | n_kv u64
//! n_kv ×      key: string | type: u32 | value
//! n_tensors × name: string | n_dims: u32 | ne: [u64; n_dims] | type: u32 | offset: u64 (into the data section)
//! padding to `general.alignment` (default 32) | data section
//! ```
//! The file is untrusted: every count, length, offset and size is checked, and any problem is a [`GgufError`] that
//! says what and where.

mod cursor;
mod error;
mod value;
#[cfg(feature = "std")]
mod write;

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use cursor::{Cursor, Located, MAX_KEY_LEN};
pub use error::{Context, ErrorKind, GgufError};
pub use value::{Array, ArrayBuf, ArrayElem, ArrayIter, Value, ValueType};
#[cfg(feature = "std")]
pub use write::{GgufWriter, TensorSpec};

use crate::GgmlType;

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of tensor data when a file does not set `general.alignment`.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// Most dimensions a tensor may have (GGML's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Longest tensor name, in bytes (GGML keeps names in 64-byte buffers with a terminating NUL).
pub const MAX_TENSOR_NAME_LEN: usize = 63;

/// One metadata key-value pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetadataEntry<'a> {
    /// The key, e.g. `general.architecture`.
    pub key: &'a str,
    /// The value.
    pub value: Value<'a>,
}

/// A tensor in the file: its name, element type, shape and bytes (borrowed; nothing is copied).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TensorView<'a> {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: &'a str,
    /// Element type.
    pub dtype: GgmlType,
    /// Number of dimensions used in `ne` (1 to 4).
    pub n_dims: usize,
    /// Extent of each dimension, fastest-varying first (GGML's `ne`): a weight `[n_out, n_in]` has `ne = [n_in, n_out,
    /// 1, 1]`. Unused dimensions are 1.
    pub ne: [usize; MAX_DIMS],
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// The tensor's bytes: `n_elems / block_len * block_bytes` of them.
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The dimensions in use, fastest-varying first (GGML's `ne[..n_dims]`).
    pub fn shape(&self) -> &[usize] {
        &self.ne[..self.n_dims]
    }

    /// Total number of elements.
    pub fn n_elems(&self) -> usize {
        // Checked at parse time not to overflow.
        self.ne.iter().product()
    }

    /// Elements per row (`ne[0]`).
    pub fn row_len(&self) -> usize {
        self.ne[0]
    }

    /// Number of rows (product of all dimensions but the first).
    pub fn n_rows(&self) -> usize {
        self.ne[1..].iter().product()
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_len() / self.dtype.block_len() * self.dtype.block_bytes()
    }
}

impl core::fmt::Debug for TensorView<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "TensorView({} {} {:?} @{} +{})",
            self.name,
            self.dtype,
            self.shape(),
            self.offset,
            self.data.len()
        )
    }
}

/// A parsed GGUF file, borrowing its bytes.
#[derive(Clone, Debug)]
pub struct Gguf<'a> {
    bytes: &'a [u8],
    version: u32,
    metadata: Vec<MetadataEntry<'a>>,
    tensors: Vec<TensorView<'a>>,
    /// Indices into `tensors`, sorted by name, for lookups.
    by_name: Vec<u32>,
    alignment: usize,
    data_offset: usize,
}

impl<'a> Gguf<'a> {
    /// Parses and validates a whole GGUF file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, GgufError> {
        let header = |e: Located| GgufError {
            offset: e.offset,
            context: Context::Header,
            kind: e.kind,
        };
        let mut cur = Cursor::new(bytes);

        let magic: [u8; 4] = cur.take(4).map_err(header)?.try_into().unwrap_or_default();
        if magic != MAGIC {
            return Err(GgufError {
                offset: 0,
                context: Context::Header,
                kind: ErrorKind::BadMagic(magic),
            });
        }
        let version = cur.u32().map_err(header)?;
        if version != 2 && version != 3 {
            let kind = if matches!(version.swap_bytes(), 1..=3) {
                ErrorKind::BigEndian
            } else {
                ErrorKind::UnsupportedVersion(version)
            };
            return Err(GgufError {
                offset: 4,
                context: Context::Header,
                kind,
            });
        }
        // Smallest encodings: a tensor info is name(8) + n_dims(4) + one dim(8) + type(4) + offset(8);
        // a metadata entry is key(8) + type(4) + a one-byte value.
        let n_tensors = cur.count("tensor", 32).map_err(header)?;
        let n_kv = cur.count("metadata entry", 13).map_err(header)?;

        let mut metadata = Vec::with_capacity(n_kv);
        for index in 0..n_kv {
            let mut key = None;
            let entry = read_entry(&mut cur, &mut key).map_err(|e| GgufError {
                offset: e.offset,
                context: Context::Metadata {
                    index: index as u64,
                    key: key.map(ToOwned::to_owned),
                },
                kind: e.kind,
            })?;
            metadata.push(entry);
        }
        check_unique_keys(&metadata)?;
        let alignment = alignment_of(&metadata)?;

        let mut infos = Vec::with_capacity(n_tensors);
        for index in 0..n_tensors {
            let mut name = None;
            let info = read_tensor_info(&mut cur, &mut name).map_err(|e| GgufError {
                offset: e.offset,
                context: Context::Tensor {
                    index: index as u64,
                    name: name.map(ToOwned::to_owned),
                },
                kind: e.kind,
            })?;
            infos.push(info);
        }

        let data_offset = cur.pos().checked_next_multiple_of(alignment).ok_or_else(|| GgufError {
            offset: cur.pos() as u64,
            context: Context::Header,
            kind: ErrorKind::BadAlignment(alloc::format!("{alignment} puts the data section out of range")),
        })?;
        let tensors = bind_tensor_data(bytes, data_offset, alignment, &infos)?;
        let by_name = sorted_by_name(&tensors)?;
        Ok(Gguf {
            bytes,
            version,
            metadata,
            tensors,
            by_name,
            alignment,
            data_offset,
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data within the data section.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Offset of the data section from the start of the file.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// All metadata entries, in file order.
    pub fn metadata(&self) -> &[MetadataEntry<'a>] {
        &self.metadata
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.metadata.iter().find(|e| e.key == key).map(|e| e.value)
    }

    /// All tensors, in file order.
    pub fn tensors(&self) -> &[TensorView<'a>] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorView<'a>> {
        let i = self
            .by_name
            .binary_search_by(|&i| self.tensors[i as usize].name.cmp(name))
            .ok()?;
        Some(&self.tensors[self.by_name[i] as usize])
    }
}

fn read_entry<'a>(cur: &mut Cursor<'a>, key: &mut Option<&'a str>) -> Result<MetadataEntry<'a>, Located> {
    let k = cur.string(MAX_KEY_LEN)?;
    *key = Some(k);
    let ty = cur.value_type()?;
    let value = cur.value(ty, 0)?;
    Ok(MetadataEntry { key: k, value })
}

fn check_unique_keys(metadata: &[MetadataEntry<'_>]) -> Result<(), GgufError> {
    let mut keys: Vec<(&str, usize)> = metadata.iter().enumerate().map(|(i, e)| (e.key, i)).collect();
    keys.sort_unstable();
    match keys.windows(2).find(|w| w[0].0 == w[1].0) {
        None => Ok(()),
        Some(w) => Err(GgufError {
            offset: 0,
            context: Context::Metadata {
                index: w[1].1 as u64,
                key: Some(w[1].0.to_owned()),
            },
            kind: ErrorKind::DuplicateKey(w[1].0.to_owned()),
        }),
    }
}

fn alignment_of(metadata: &[MetadataEntry<'_>]) -> Result<usize, GgufError> {
    let Some((index, entry)) = metadata.iter().enumerate().find(|(_, e)| e.key == "general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let bad = |why: String| GgufError {
        offset: 0,
        context: Context::Metadata {
            index: index as u64,
            key: Some(entry.key.to_owned()),
        },
        kind: ErrorKind::BadAlignment(why),
    };
    match entry.value {
        Value::U32(a) if a.is_power_of_two() => Ok(a as usize),
        Value::U32(a) => Err(bad(alloc::format!("{a} is not a power of two"))),
        other => Err(bad(alloc::format!("must be uint32, found {}", other.value_type()))),
    }
}

/// A tensor info as read, before its data is located.
struct RawTensorInfo<'a> {
    name: &'a str,
    dtype: GgmlType,
    n_dims: usize,
    ne: [usize; MAX_DIMS],
    offset: u64,
    n_bytes: u64,
}

fn read_tensor_info<'a>(cur: &mut Cursor<'a>, name: &mut Option<&'a str>) -> Result<RawTensorInfo<'a>, Located> {
    let n = cur.string(MAX_TENSOR_NAME_LEN as u64)?;
    *name = Some(n);
    let dims_at = cur.pos();
    let n_dims = cur.u32()?;
    if !(1..=MAX_DIMS as u32).contains(&n_dims) {
        return Err(Located {
            offset: dims_at as u64,
            kind: ErrorKind::BadDimCount(n_dims),
        });
    }
    let mut ne = [1usize; MAX_DIMS];
    let mut n_elems: u64 = 1;
    for d in ne.iter_mut().take(n_dims as usize) {
        let at = cur.pos();
        let extent = cur.u64()?;
        let shape_error = |why: String| Located {
            offset: at as u64,
            kind: ErrorKind::BadShape(why),
        };
        if extent == 0 {
            return Err(shape_error("a dimension is 0".into()));
        }
        n_elems = n_elems
            .checked_mul(extent)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| shape_error("the element count overflows".into()))?;
        *d = usize::try_from(extent)
            .map_err(|_| shape_error(alloc::format!("{extent} is too large for this machine")))?;
    }
    let type_at = cur.pos();
    let type_id = cur.u32()?;
    let dtype = GgmlType::from_id(type_id).ok_or(Located {
        offset: type_at as u64,
        kind: ErrorKind::UnknownTensorType(type_id),
    })?;
    if !ne[0].is_multiple_of(dtype.block_len()) {
        return Err(Located {
            offset: dims_at as u64,
            kind: ErrorKind::RaggedRow {
                dtype,
                row_len: ne[0] as u64,
            },
        });
    }
    let n_bytes = dtype.bytes_for(n_elems).ok_or(Located {
        offset: dims_at as u64,
        kind: ErrorKind::BadShape("the byte size overflows".into()),
    })?;
    let offset = cur.u64()?;
    Ok(RawTensorInfo {
        name: n,
        dtype,
        n_dims: n_dims as usize,
        ne,
        offset,
        n_bytes,
    })
}

/// Places each tensor in the data section: aligned, inside the file, and not overlapping another tensor.
fn bind_tensor_data<'a>(
    bytes: &'a [u8],
    data_offset: usize,
    alignment: usize,
    infos: &[RawTensorInfo<'a>],
) -> Result<Vec<TensorView<'a>>, GgufError> {
    let file_len = bytes.len() as u64;
    let mut tensors = Vec::with_capacity(infos.len());
    for (index, info) in infos.iter().enumerate() {
        let error = |kind| GgufError {
            offset: data_offset as u64,
            context: Context::Tensor {
                index: index as u64,
                name: Some(info.name.to_owned()),
            },
            kind,
        };
        if !info.offset.is_multiple_of(alignment as u64) {
            return Err(error(ErrorKind::Misaligned {
                offset: info.offset,
                alignment: alignment as u64,
            }));
        }
        let start = (data_offset as u64).checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(info.n_bytes));
        let (Some(start), Some(end)) = (start, end.filter(|&e| e <= file_len)) else {
            let end = end.unwrap_or(u64::MAX);
            return Err(error(ErrorKind::TensorOutOfBounds { end, file_len }));
        };
        tensors.push(TensorView {
            name: info.name,
            dtype: info.dtype,
            n_dims: info.n_dims,
            ne: info.ne,
            offset: info.offset,
            // start <= end <= file_len, which is a usize.
            data: &bytes[start as usize..end as usize],
        });
    }

    let mut by_offset: Vec<usize> = (0..tensors.len()).collect();
    by_offset.sort_unstable_by_key(|&i| (tensors[i].offset, tensors[i].data.len()));
    for w in by_offset.windows(2) {
        let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
        if a.offset + a.data.len() as u64 > b.offset {
            return Err(GgufError {
                offset: data_offset as u64 + b.offset,
                context: Context::Tensor {
                    index: w[1] as u64,
                    name: Some(b.name.to_owned()),
                },
                kind: ErrorKind::TensorsOverlap {
                    other: a.name.to_owned(),
                },
            });
        }
    }
    Ok(tensors)
}

fn sorted_by_name(tensors: &[TensorView<'_>]) -> Result<Vec<u32>, GgufError> {
    // The tensor count is bounded by the file size / 32, so indices fit in u32 on any file that fits in memory.
    let mut by_name: Vec<u32> = (0..tensors.len() as u32).collect();
    by_name.sort_unstable_by_key(|&i| tensors[i as usize].name);
    if let Some(w) = by_name
        .windows(2)
        .find(|w| tensors[w[0] as usize].name == tensors[w[1] as usize].name)
    {
        let name = tensors[w[1] as usize].name.to_owned();
        return Err(GgufError {
            offset: 0,
            context: Context::Tensor {
                index: u64::from(w[1]),
                name: Some(name.clone()),
            },
            kind: ErrorKind::DuplicateTensor(name),
        });
    }
    Ok(by_name)
}
