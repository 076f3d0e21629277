//! Compute operations on f32 activations and quantized weights.

pub mod act;
pub mod attention;
pub mod kv;
pub mod matmul;
pub mod norm;
pub mod rope;
#[cfg(feature = "std")]
pub mod team;

use alloc::vec::Vec;
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

/// Runs `f(chunk_index, chunk)` over `chunk_len`-sized pieces of `data`: with `std` and more than one thread, across
/// threads (through the [`team`] of the region this thread leads, else rayon); otherwise in order. A single chunk, or a
/// single thread, keeps the work on the calling thread (handing it to the pool would only add a wake-up).
///
/// Code that runs inside a [`team::region`] parallelises its loops with this (or [`for_each_task`]): rayon loops
/// started there run on the region's leader alone. A loop started inside a chunk of a team's loop runs on that chunk's
/// thread, in order.
pub fn for_each_chunk<T: Send>(data: &mut [T], chunk_len: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if data.len() <= chunk_len {
        f(0, data);
        return;
    }
    #[cfg(feature = "std")]
    if thread_count() > 1 && !team::in_chunk() {
        team::with_leading(|team| match team {
            Some(team) => {
                let len = data.len();
                let base = SharedMut(data.as_mut_ptr());
                let run = |i: usize| {
                    let start = i * chunk_len;
                    // SAFETY: `start < len` (there are `len.div_ceil(chunk_len)` chunks), so the offset is in bounds.
                    let first = unsafe { base.get().add(start) };
                    // SAFETY: chunk `i` is `data[start..start + chunk_len]` (shorter at the end), in bounds and
                    // disjoint from every other chunk; the team runs each chunk once, while this call borrows `data`.
                    let chunk = unsafe { core::slice::from_raw_parts_mut(first, chunk_len.min(len - start)) };
                    f(i, chunk);
                };
                team.run_loop(len.div_ceil(chunk_len), &run);
            }
            None => {
                use rayon::prelude::*;
                data.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c));
            }
        });
        return;
    }
    data.chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c));
}

/// [`for_each_chunk`] for work that can fail: returns an error a chunk met (across threads every chunk still runs and
/// which error is returned is not fixed; in order, the loop stops at the first).
pub fn try_for_each_chunk<T: Send, E: Send>(
    data: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) -> Result<(), E> + Sync + Send,
) -> Result<(), E> {
    #[cfg(feature = "std")]
    {
        let error = std::sync::Mutex::new(None);
        for_each_chunk(data, chunk_len, |i, chunk| {
            if let Err(e) = f(i, chunk) {
                error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
            }
        });
        error
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(Ok(()), Err)
    }
    #[cfg(not(feature = "std"))]
    data.chunks_mut(chunk_len)
        .enumerate()
        .try_for_each(|(i, chunk)| f(i, chunk))
}

/// Runs `f` on every task of `tasks` (each holding what it reads and the disjoint parts of outputs it writes), spread
/// across threads as [`for_each_chunk`] spreads chunks: one task at a time, claimed as threads come free.
pub fn for_each_task<T: Send>(tasks: &mut [T], f: impl Fn(&mut T) + Sync + Send) {
    for_each_chunk(tasks, 1, |_, task| task.iter_mut().for_each(&f));
}

/// A slice's base pointer shared by the threads that write its disjoint chunks.
#[cfg(feature = "std")]
struct SharedMut<T>(*mut T);

#[cfg(feature = "std")]
impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper rather than its field).
    fn get(&self) -> *mut T {
        self.0
    }
}

// SAFETY: the pointer is only used to form disjoint chunks of a `&mut [T]`, each handed to one thread at a time, which
// is what `T: Send` permits (as for `par_chunks_mut`).
#[cfg(feature = "std")]
unsafe impl<T: Send> Sync for SharedMut<T> {}

/// A chunk length that splits `len` items of element-wise work evenly across the threads, but no smaller than
/// `min_chunk` (below which a thread's share costs less than waking it).
pub fn even_chunks(len: usize, min_chunk: usize) -> usize {
    len.div_ceil(thread_count()).max(min_chunk)
}

/// Elements of element-wise work (a residual sum, a gated activation, zeroing) per thread task: below this, one thread
/// does it all, as a decode step's vectors do.
pub const ELEMENTWISE_CHUNK: usize = 4096;

/// Runs `f(first_row, rows)` over groups of whole `width`-element rows of `data` (`first_row` is the group's first
/// row), at least [`ELEMENTWISE_CHUNK`] elements a group, across threads as [`for_each_chunk`] spreads chunks. Row-wise
/// work (a norm, a bias, a rotation per position) keeps each row on one thread, so its bits do not depend on how many
/// there are.
pub fn for_each_row_group<T: Send>(data: &mut [T], width: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    let rows = ELEMENTWISE_CHUNK.div_ceil(width.max(1));
    for_each_chunk(data, (rows * width).max(1), |i, group| f(i * rows, group));
}

/// [`for_each_row_group`] for work that can fail (which error is returned, as for [`try_for_each_chunk`]).
pub fn try_for_each_row_group<T: Send, E: Send>(
    data: &mut [T],
    width: usize,
    f: impl Fn(usize, &mut [T]) -> Result<(), E> + Sync + Send,
) -> Result<(), E> {
    let rows = ELEMENTWISE_CHUNK.div_ceil(width.max(1));
    try_for_each_chunk(data, (rows * width).max(1), |i, group| f(i * rows, group))
}

/// `len` zeros, written across the threads. Prefill and training allocate activations of megabytes per operation;
/// `vec![0.0; len]` zeroes reused memory with one thread's `memset` while the others wait.
pub fn zeroed(len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    let chunk = even_chunks(len, ELEMENTWISE_CHUNK);
    for_each_chunk(&mut out.spare_capacity_mut()[..len], chunk, |_, part| {
        part.fill(core::mem::MaybeUninit::new(0.0));
    });
    // SAFETY: the capacity is at least `len`, and the loop above wrote every element of `..len` (its chunks cover it).
    unsafe { out.set_len(len) };
    out
}

/// How many threads [`for_each_chunk`] spreads work over.
pub fn thread_count() -> usize {
    #[cfg(feature = "std")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "std"))]
    return 1;
}
