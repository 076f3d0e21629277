//! Streaming GGUF writer: the header and tensor infos first, then each tensor's data in order, padded to the
//! alignment. Tensors never need to be in memory all at once.

use alloc::string::String;
use alloc::vec::Vec;
use std::io::{self, Read, Write};

use super::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS, MAX_TENSOR_NAME_LEN, MetadataEntry, Value};
use crate::GgmlType;

/// A tensor to be written: its name, element type and shape (fastest-varying dimension first, like GGML's `ne`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name (at most [`MAX_TENSOR_NAME_LEN`] bytes).
    pub name: String,
    /// Element type.
    pub dtype: GgmlType,
    /// Extents, fastest-varying first; 1 to 4 of them, none zero.
    pub ne: Vec<usize>,
}

impl TensorSpec {
    /// Size of the tensor's data in bytes, after checking the shape is one GGUF can hold.
    fn n_bytes(&self) -> io::Result<u64> {
        let invalid = |why: String| invalid_input(alloc::format!("tensor '{}': {why}", self.name));
        if self.name.len() > MAX_TENSOR_NAME_LEN {
            return Err(invalid(alloc::format!("name longer than {MAX_TENSOR_NAME_LEN} bytes")));
        }
        if !(1..=MAX_DIMS).contains(&self.ne.len()) || self.ne.contains(&0) {
            return Err(invalid(alloc::format!(
                "shape {:?} needs 1 to 4 non-zero extents",
                self.ne
            )));
        }
        if !self.ne[0].is_multiple_of(self.dtype.block_len()) {
            return Err(invalid(alloc::format!(
                "row of {} is not a multiple of the {} block of {}",
                self.ne[0],
                self.dtype,
                self.dtype.block_len()
            )));
        }
        self.ne
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
            .and_then(|n| self.dtype.bytes_for(n))
            .ok_or_else(|| invalid("size overflows".into()))
    }
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Writes a GGUF v3 file to `W`. Create it with the metadata and the list of tensors, then give each tensor's data
/// with [`GgufWriter::write_tensor`] in the same order, then call [`GgufWriter::finish`].
#[derive(Debug)]
pub struct GgufWriter<W: Write> {
    out: W,
    /// Data size of each tensor, in order.
    sizes: Vec<u64>,
    next: usize,
    alignment: usize,
}

impl<W: Write> GgufWriter<W> {
    /// Writes the header, metadata and tensor infos. `general.alignment`, if among the metadata, must be a
    /// power-of-two `uint32` and sets the data alignment.
    pub fn new(mut out: W, metadata: &[MetadataEntry<'_>], tensors: &[TensorSpec]) -> io::Result<Self> {
        let alignment = match metadata.iter().find(|e| e.key == "general.alignment").map(|e| e.value) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => a as usize,
            Some(other) => {
                return Err(invalid_input(alloc::format!(
                    "general.alignment {other:?} is not a power-of-two uint32"
                )));
            }
        };
        check_unique(metadata.iter().map(|e| e.key), "metadata key")?;
        check_unique(tensors.iter().map(|t| t.name.as_str()), "tensor name")?;

        let mut header = Vec::new();
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for entry in metadata {
            Value::String(entry.key).encode_payload(&mut header);
            header.extend_from_slice(&entry.value.value_type().id().to_le_bytes());
            entry.value.encode_payload(&mut header);
        }
        let mut sizes = Vec::with_capacity(tensors.len());
        let mut offset = 0u64;
        for spec in tensors {
            let size = spec.n_bytes()?;
            Value::String(&spec.name).encode_payload(&mut header);
            header.extend_from_slice(&(spec.ne.len() as u32).to_le_bytes());
            for &d in &spec.ne {
                header.extend_from_slice(&(d as u64).to_le_bytes());
            }
            header.extend_from_slice(&spec.dtype.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offset = offset
                .checked_add(size)
                .and_then(|end| end.checked_next_multiple_of(alignment as u64))
                .ok_or_else(|| invalid_input("total tensor data size overflows".into()))?;
            sizes.push(size);
        }
        header.resize(header.len().next_multiple_of(alignment), 0);
        out.write_all(&header)?;
        Ok(Self {
            out,
            sizes,
            next: 0,
            alignment,
        })
    }

    /// Writes the data of the next tensor; `data` must be exactly its size.
    pub fn write_tensor(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(&size) = self.sizes.get(self.next) else {
            return Err(invalid_input(alloc::format!(
                "all {} tensors were already written",
                self.sizes.len()
            )));
        };
        if data.len() as u64 != size {
            return Err(invalid_input(alloc::format!(
                "tensor {} needs {size} bytes of data, got {}",
                self.next,
                data.len()
            )));
        }
        self.out.write_all(data)?;
        let padding = data.len().next_multiple_of(self.alignment) - data.len();
        io::copy(&mut io::repeat(0).take(padding as u64), &mut self.out)?;
        self.next += 1;
        Ok(())
    }

    /// Checks every tensor was written, flushes, and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        if self.next != self.sizes.len() {
            return Err(invalid_input(alloc::format!(
                "only {} of {} tensors were written",
                self.next,
                self.sizes.len()
            )));
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn check_unique<'a>(names: impl Iterator<Item = &'a str>, what: &str) -> io::Result<()> {
    let mut names: Vec<&str> = names.collect();
    names.sort_unstable();
    match names.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(invalid_input(alloc::format!("{what} '{}' appears twice", w[0]))),
        None => Ok(()),
    }
}
