//! Compute operations on f32 activations and quantized weights.

pub mod act;
pub mod attention;
pub mod kv;
pub mod matmul;
pub mod norm;
pub mod rope;

use core::fmt;

use crate::quant::QuantError;

/// Why an operation could not run: inputs whose shapes do not fit together, or weights it cannot read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpError {
    /// A buffer whose length does not match the shape.
    Shape {
        /// Which argument.
        what: &'static str,
        /// The length the shape asks for.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The weights cannot be used as they are.
    Quant(QuantError),
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Shape { what, expected, got } => {
                write!(f, "{what} has {got} elements, the shape needs {expected}")
            }
            OpError::Quant(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for OpError {}

impl From<QuantError> for OpError {
    fn from(e: QuantError) -> Self {
        OpError::Quant(e)
    }
}

/// Checks a buffer length against the shape.
pub fn expect_len(what: &'static str, got: usize, expected: usize) -> Result<(), OpError> {
    if got == expected {
        Ok(())
    } else {
        Err(OpError::Shape { what, expected, got })
    }
}

/// Runs `f(chunk_index, chunk)` over `chunk_len`-sized pieces of `data`: across threads with `std`, in order without.
/// Work of a single chunk runs on the calling thread (handing it to the pool would only add a wake-up).
pub(crate) fn for_each_chunk<T: Send>(data: &mut [T], chunk_len: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if data.len() <= chunk_len {
        f(0, data);
        return;
    }
    #[cfg(feature = "std")]
    {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c));
    }
    #[cfg(not(feature = "std"))]
    data.chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c));
}

/// A chunk length that splits `len` items of element-wise work evenly across the threads, but no smaller than
/// `min_chunk` (below which a thread's share costs less than waking it).
pub(crate) fn even_chunks(len: usize, min_chunk: usize) -> usize {
    len.div_ceil(thread_count()).max(min_chunk)
}

/// How many threads `for_each_chunk` spreads work over.
pub(crate) fn thread_count() -> usize {
    #[cfg(feature = "std")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "std"))]
    return 1;
}
