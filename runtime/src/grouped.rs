//! The grouped-weights cache: a model's matrices with their rows grouped sixteen at a time (`quant::grouped`), the
//! layout the AVX-512 kernels read for every number of tokens. It is built once, written next to the model file as
//! `<model>.grouped`, and memory-mapped on every later run, so the weights are never copied onto the heap and the
//! model file's own pages of these matrices are never touched.
//!
//! File layout: the magic bytes (which carry the layout's version), the header's length as a little-endian u64, the
//! header (JSON: the model file's length and modification time, and each matrix's name, type, shape, offset and
//! length), then each matrix's groups at a page-aligned offset. A cache whose header does not describe the model file
//! as it is now (replaced, re-quantized, or a cache of another layout version) is rebuilt.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use hearth_kernel::gguf::{Gguf, TensorView};
use hearth_kernel::quant::grouped::{GROUP_ROWS, group_rows, grouped_len};
use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic_with;
use crate::model::Projection;
use crate::progress::{Progress, Unit};

/// The first bytes of a cache file; the digit is the layout version (bumped whenever `quant::grouped` changes).
const MAGIC: &[u8; 8] = b"HEARTHG2";

/// Alignment of each matrix's groups in the file (a page, so every mapping of them is page-aligned).
const ALIGN: u64 = 4096;

/// Rows grouped per parallel task while building (a multiple of [`GROUP_ROWS`]); a slab of 64 tasks bounds the
/// heap the build needs to a few tens of MB whatever the matrix.
const ROWS_PER_TASK: usize = 32 * GROUP_ROWS;

/// The model's matrices, grouped, memory-mapped from the cache file.
#[derive(Debug)]
pub struct GroupedWeights {
    map: Mmap,
    matrices: HashMap<String, Range<usize>>,
}

impl GroupedWeights {
    /// The grouped bytes of the matrix `name`, if the cache holds it.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.matrices.get(name).map(|range| &self.map[range.clone()])
    }
}

/// Why the cache could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading the model file or writing the cache failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The model file's tensors could not be grouped.
    #[error("{0}")]
    Model(String),
}

/// What the header says: enough to tell whether the cache still matches the model file.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Header {
    /// The model file's length in bytes.
    source_len: u64,
    /// The model file's modification time, nanoseconds since the Unix epoch (as a string: JSON numbers are f64).
    source_modified: String,
    matrices: Vec<Matrix>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Matrix {
    name: String,
    dtype: String,
    n_in: usize,
    n_out: usize,
    /// Where its groups start in the cache file.
    offset: u64,
    /// Their length in bytes.
    len: u64,
}

/// Where the cache of the model file at `model` lives.
pub fn cache_path(model: &Path) -> PathBuf {
    let mut name = model.file_name().unwrap_or_default().to_os_string();
    name.push(".grouped");
    model.with_file_name(name)
}

/// Opens the cache of the model file at `model` (parsed as `gguf`), building it first when it is missing or stale.
pub fn open_or_build(model: &Path, gguf: &Gguf<'_>, progress: &mut dyn Progress) -> Result<GroupedWeights, CacheError> {
    // Threads of one process building the same cache would share a temporary file name; one at a time.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let expected = expected_header(model, gguf)?;
    let path = cache_path(model);
    if let Some(weights) = open_matching(&path, &expected) {
        return Ok(weights);
    }
    build(model, &path, &expected, progress)?;
    open_matching(&path, &expected).ok_or_else(|| CacheError::Model(format!("{} did not read back", path.display())))
}

/// The matrices a forward pass multiplies that have a grouped layout: every block projection and the output head
/// (the embedding table when the file ties the head to it).
fn multiplied<'g>(gguf: &'g Gguf<'_>) -> impl Iterator<Item = &'g TensorView<'g>> {
    let head = if gguf.tensor("output.weight").is_some() {
        "output.weight"
    } else {
        "token_embd.weight"
    };
    gguf.tensors().iter().filter(move |t| {
        let is_projection = t.name.strip_prefix("blk.").is_some_and(|rest| {
            rest.split_once('.').is_some_and(|(layer, tensor)| {
                layer.bytes().all(|b| b.is_ascii_digit())
                    && Projection::ALL
                        .iter()
                        .any(|p| tensor.strip_suffix(".weight") == Some(p.tensor()))
            })
        });
        (is_projection || t.name == head) && t.n_dims == 2 && grouped_len(t.dtype, t.row_len(), t.n_rows()).is_some()
    })
}

fn expected_header(model: &Path, gguf: &Gguf<'_>) -> Result<Header, CacheError> {
    let io_error = |source| CacheError::Io {
        what: "reading",
        path: model.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(model).map_err(io_error)?;
    let modified = metadata.modified().map_err(io_error)?;
    let modified = modified.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut offset = 0u64;
    let matrices = multiplied(gguf)
        .map(|t| {
            let (n_in, n_out) = (t.row_len(), t.n_rows());
            let len = grouped_len(t.dtype, n_in, n_out).unwrap_or_default() as u64;
            offset = offset.next_multiple_of(ALIGN);
            let matrix = Matrix {
                name: t.name.to_owned(),
                dtype: t.dtype.to_string(),
                n_in,
                n_out,
                offset,
                len,
            };
            offset += len;
            matrix
        })
        .collect();
    Ok(Header {
        source_len: metadata.len(),
        source_modified: modified.to_string(),
        matrices,
    })
}

/// The cache at `path` if it exists, describes `expected`, and holds all its bytes.
fn open_matching(path: &Path, expected: &Header) -> Option<GroupedWeights> {
    let file = File::open(path).ok()?;
    // SAFETY: the mapping is read-only and private to this process. The cache is only ever replaced by rename (see
    // `build`), which leaves this mapping intact; a user editing it in place while hearth runs is not supported, as
    // for the model file itself.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    let (magic, rest) = map.split_first_chunk::<8>()?;
    let (header_len, rest) = rest.split_first_chunk::<8>()?;
    let header_len = usize::try_from(u64::from_le_bytes(*header_len)).ok()?;
    if magic != MAGIC || header_len > rest.len() {
        return None;
    }
    let header: Header = serde_json::from_slice(&rest[..header_len]).ok()?;
    if header != *expected {
        return None;
    }
    // Matrix offsets count from the page after the header.
    let data_start = (16 + header_len as u64).next_multiple_of(ALIGN);
    let mut matrices = HashMap::new();
    for m in header.matrices {
        let start = usize::try_from(data_start + m.offset).ok()?;
        let end = start.checked_add(usize::try_from(m.len).ok()?)?;
        if end > map.len() {
            return None;
        }
        matrices.insert(m.name, start..end);
    }
    Some(GroupedWeights { map, matrices })
}

/// Writes the cache for `header` at `path` from the model file at `model`, atomically.
fn build(model: &Path, path: &Path, header: &Header, progress: &mut dyn Progress) -> Result<(), CacheError> {
    let read_error = |source| CacheError::Io {
        what: "reading",
        path: model.to_path_buf(),
        source,
    };
    // A mapping of its own, dropped at the end: the pages read here do not stay in the process (the model's own
    // mapping is never used for these matrices again).
    let file = File::open(model).map_err(read_error)?;
    // SAFETY: read-only and private, as in `ModelFile::open`.
    let map = unsafe { Mmap::map(&file) }.map_err(read_error)?;
    let gguf = Gguf::parse(&map).map_err(|e| CacheError::Model(e.to_string()))?;
    let header_json = serde_json::to_vec(header).map_err(|e| CacheError::Model(e.to_string()))?;
    let total = header.matrices.iter().map(|m| m.len).sum();
    progress.stage(
        "arranging the weights for AVX-512 (once per model file)",
        Some(total),
        Unit::Bytes,
    );
    let write = |file: &mut File| -> io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC)?;
        out.write_all(&(header_json.len() as u64).to_le_bytes())?;
        out.write_all(&header_json)?;
        let mut written = 16 + header_json.len() as u64;
        let data_start = written.next_multiple_of(ALIGN);
        let mut slab = Vec::new();
        for m in &header.matrices {
            let t = gguf
                .tensor(&m.name)
                .ok_or_else(|| io::Error::other(format!("{} vanished", m.name)))?;
            pad_to(&mut out, &mut written, data_start + m.offset)?;
            let row_bytes = t.data.len() / m.n_out;
            let group_bytes = (m.len as usize) / m.n_out.div_ceil(GROUP_ROWS);
            let slab_rows = 64 * ROWS_PER_TASK;
            for rows in t.data.chunks(slab_rows * row_bytes) {
                let n_rows = rows.len() / row_bytes;
                slab.clear();
                slab.resize(n_rows.div_ceil(GROUP_ROWS) * group_bytes / 4, 0u32);
                let per_task = ROWS_PER_TASK / GROUP_ROWS * group_bytes / 4;
                slab.par_chunks_mut(per_task)
                    .zip(rows.par_chunks(ROWS_PER_TASK * row_bytes))
                    .try_for_each(|(out, rows)| group_rows(t.dtype, m.n_in, rows, bytemuck::cast_slice_mut(out)))
                    .map_err(|e| io::Error::other(format!("{}: {e}", m.name)))?;
                out.write_all(bytemuck::cast_slice(&slab))?;
                written += slab.len() as u64 * 4;
                progress.advance(slab.len() as u64 * 4);
            }
        }
        out.flush()
    };
    let result = write_atomic_with(path, write).map_err(|source| CacheError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    });
    progress.finish_stage();
    result
}

/// Writes zeros until `written` reaches `offset`.
fn pad_to(out: &mut impl Write, written: &mut u64, offset: u64) -> io::Result<()> {
    let zeros = [0u8; ALIGN as usize];
    while *written < offset {
        let n = (offset - *written).min(ALIGN);
        out.write_all(&zeros[..n as usize])?;
        *written += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use hearth_kernel::GgmlType;
    use hearth_kernel::gguf::{GgufWriter, MetadataEntry, TensorSpec, Value};
    use hearth_kernel::quant;

    use super::*;
    use crate::ModelFile;
    use crate::progress::NoProgress;

    /// Tensors of a small model file: (name, type, n_in, n_out).
    const TENSORS: [(&str, GgmlType, usize, usize); 4] = [
        ("token_embd.weight", GgmlType::Q8_0, 64, 20),
        ("blk.0.attn_norm.weight", GgmlType::F32, 64, 1),
        ("blk.0.attn_q.weight", GgmlType::Q8_0, 64, 40),
        ("blk.0.ffn_down.weight", GgmlType::F16, 64, 64),
    ];

    /// Writes the model file with weights from `seed`; returns each tensor's bytes.
    fn write_model(path: &Path, seed: f32) -> Vec<Vec<u8>> {
        let specs: Vec<TensorSpec> = TENSORS
            .iter()
            .map(|&(name, dtype, n_in, n_out)| TensorSpec {
                name: name.into(),
                dtype,
                ne: if n_out == 1 { vec![n_in] } else { vec![n_in, n_out] },
            })
            .collect();
        let metadata = [MetadataEntry {
            key: "general.architecture",
            value: Value::String("llama"),
        }];
        let mut writer = GgufWriter::new(File::create(path).unwrap(), &metadata, &specs).unwrap();
        let datas: Vec<Vec<u8>> = TENSORS
            .iter()
            .map(|&(_, dtype, n_in, n_out)| {
                let values: Vec<f32> = (0..n_in * n_out).map(|i| (i as f32 * 0.37 + seed).sin()).collect();
                let mut bytes = vec![0u8; dtype.bytes_for(values.len() as u64).unwrap() as usize];
                quant::quantize(dtype, &values, &mut bytes).unwrap();
                bytes
            })
            .collect();
        for data in &datas {
            writer.write_tensor(data).unwrap();
        }
        writer.finish().unwrap();
        datas
    }

    fn grouped_rows(dtype: GgmlType, n_in: usize, n_out: usize, rows: &[u8]) -> Vec<u8> {
        let mut out = vec![0u32; grouped_len(dtype, n_in, n_out).unwrap() / 4];
        group_rows(dtype, n_in, rows, bytemuck::cast_slice_mut(&mut out)).unwrap();
        bytemuck::cast_slice(&out).to_vec()
    }

    /// The matrices a forward pass multiplies, grouped: the projection and the embedding table (the file has no
    /// output matrix, so it is the head), not the norm nor the F16 matrix.
    fn check(weights: &GroupedWeights, datas: &[Vec<u8>]) {
        for (i, &(name, dtype, n_in, n_out)) in TENSORS.iter().enumerate() {
            match dtype {
                GgmlType::Q8_0 => assert_eq!(
                    weights.get(name),
                    Some(&grouped_rows(dtype, n_in, n_out, &datas[i])[..]),
                    "{name}"
                ),
                _ => assert!(weights.get(name).is_none(), "{name}"),
            }
        }
    }

    #[test]
    fn the_cache_is_built_once_reused_and_rebuilt_when_the_model_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let datas = write_model(&path, 0.0);
        let open = || {
            let file = ModelFile::open(&path).unwrap();
            open_or_build(&path, file.gguf(), &mut NoProgress).unwrap()
        };
        check(&open(), &datas);
        let cache = cache_path(&path);
        let built = std::fs::metadata(&cache).unwrap().modified().unwrap();
        check(&open(), &datas);
        assert_eq!(
            std::fs::metadata(&cache).unwrap().modified().unwrap(),
            built,
            "rebuilt needlessly"
        );

        // Another model written over the file: the cache follows it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let datas = write_model(&path, 1.0);
        check(&open(), &datas);

        // A damaged cache is rebuilt, not read.
        let bytes = std::fs::read(&cache).unwrap();
        std::fs::write(&cache, &bytes[..bytes.len() - 100]).unwrap();
        check(&open(), &datas);
        std::fs::write(&cache, b"not a cache").unwrap();
        check(&open(), &datas);
    }

    #[test]
    fn a_cache_that_cannot_be_written_is_an_error_and_the_model_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        write_model(&path, 0.0);
        // A directory where the cache file would go makes it unwritable whatever the user's permissions.
        std::fs::create_dir(cache_path(&path)).unwrap();
        let file = ModelFile::open(&path).unwrap();
        assert!(open_or_build(&path, file.gguf(), &mut NoProgress).is_err());
        assert!(ModelFile::open_to_run(&path, &mut NoProgress).is_ok());
    }
}
