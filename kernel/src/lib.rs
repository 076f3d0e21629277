//! hearth-kernel: the inference kernel of hearth.
//!
//! It reads GGUF files zero-copy from a `&[u8]` (the caller maps the file), knows the block layouts of GGML's tensor
//! types, and computes on them. It never does I/O and needs only `core` + `alloc`; the default `std` feature adds
//! run-time ISA detection, threads and the streaming GGUF writer.
//!
//! ```no_run
//! # fn demo(bytes: &[u8]) -> Result<(), hearth_kernel::gguf::GgufError> {
//! let file = hearth_kernel::gguf::Gguf::parse(bytes)?;
//! let arch = file.get("general.architecture").and_then(|v| v.as_str());
//! for t in file.tensors() {
//!     // t.data borrows `bytes`: nothing was copied.
//!     let _ = (t.name, t.dtype, t.shape(), t.data.len(), arch);
//! }
//! # Ok(()) }
//! ```
#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(target_endian = "big")]
compile_error!(
    "GGUF tensors are little-endian and hearth-kernel reads them in place: big-endian targets are unsupported"
);

pub mod dtype;
pub mod gguf;
pub mod ops;
pub mod quant;
pub mod simd;

pub use dtype::GgmlType;
