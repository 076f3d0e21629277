//! A GGUF model file, memory-mapped and parsed once. Tensor views borrow the mapping: weights are never copied.

use std::fs::File;
use std::path::{Path, PathBuf};

use hearth_kernel::gguf::{Gguf, GgufError};
use hearth_kernel::simd::Isa;
use memmap2::Mmap;

use crate::grouped::{self, GroupedWeights};
use crate::progress::Progress;

self_cell::self_cell! {
    /// The mapping and the parsed view that borrows it, kept together.
    struct MappedGguf {
        owner: Mmap,
        #[covariant]
        dependent: Gguf,
    }
}

impl std::fmt::Debug for MappedGguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedGguf")
            .field("len", &self.borrow_owner().len())
            .finish_non_exhaustive()
    }
}

/// Why a model file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened or mapped.
    #[error("cannot read model file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid GGUF.
    #[error("{path} is not a usable GGUF model")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: GgufError,
    },
}

/// An open, validated GGUF file.
#[derive(Debug)]
pub struct ModelFile {
    path: PathBuf,
    mapped: MappedGguf,
    /// Its matrices grouped for the kernels, when opened to run with an ISA that reads them.
    grouped: Option<GroupedWeights>,
}

impl ModelFile {
    /// Maps `path` and parses it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let io_error = |source| OpenError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io_error)?;
        // SAFETY: the mapping is read-only and private to this process. Another process truncating or rewriting the
        // file while it is mapped would change the bytes under us (or fault on truncation); the model store only ever
        // replaces files by rename, which leaves this mapping intact, and users are told not to edit open models.
        let map = unsafe { Mmap::map(&file) }.map_err(io_error)?;
        let mapped = MappedGguf::try_new(map, |bytes| Gguf::parse(bytes)).map_err(|source| OpenError::Gguf {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            mapped,
            grouped: None,
        })
    }

    /// Maps `path` to run the model: [`open`](Self::open), and, when the selected ISA's kernels read rows grouped
    /// sixteen at a time (AVX-512), the grouped-weights cache next to the file ([`crate::grouped`]) — built on first
    /// use, which `progress` shows. A cache that cannot be built (a read-only directory, a full disk) is reported on
    /// `progress` as a note, and the model runs without it.
    pub fn open_to_run(path: impl AsRef<Path>, progress: &mut dyn Progress) -> Result<Self, OpenError> {
        let mut file = Self::open(path)?;
        if Isa::selected().reads_grouped_weights() {
            match grouped::open_or_build(&file.path, file.gguf(), progress) {
                Ok(weights) => file.grouped = Some(weights),
                Err(e) => progress.note(&format!("running without the grouped-weights cache (slower): {e}")),
            }
        }
        Ok(file)
    }

    /// Drops the file's pages from this process's resident memory, for a caller that has read what it needs from
    /// the rows (the trainer, once it has its transposed copies and runs its forward on the grouped cache): a page
    /// read again later is mapped back from the page cache. The grouped cache's pages are kept. Does nothing where
    /// the system has no such advice (not Unix).
    pub fn release_resident_pages(&self) -> std::io::Result<()> {
        #[cfg(unix)]
        // SAFETY: `MADV_DONTNEED` discards a private mapping's written pages; this mapping is read-only and never
        // written, so every page reads back as the file's bytes and views into it stay valid.
        unsafe {
            self.mapped
                .borrow_owner()
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)?;
        }
        Ok(())
    }

    /// The grouped matrices, when the file was opened to run with an ISA that reads them.
    pub fn grouped(&self) -> Option<&GroupedWeights> {
        self.grouped.as_ref()
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed file; tensor data borrows the mapping.
    pub fn gguf(&self) -> &Gguf<'_> {
        self.mapped.borrow_dependent()
    }
}
