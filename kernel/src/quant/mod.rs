//! Block quantization formats: one file per block family, each with its `#[repr(C)]` block, the scalar
//! dequantization, quantization and dot product that serve as the reference for every SIMD path.
//!
//! Weight blocks pair with an activation block type: legacy 32-element formats with [`BlockQ8_0`] (Q4_1/Q5_1 with
//! [`BlockQ8_1`], which carries the activation sum), K-quants with
//! [`BlockQ8_K`]. A matrix-vector product quantizes the activation row once, then takes integer dot products.
//!
//! Algorithms (including rounding) follow the reference implementation (ggml's `*_ref` functions), so files hearth
//! writes are interchangeable with llama.cpp's and dequantization is bit-exact with gguf-py's.

pub mod grouped;
pub(crate) mod kquant;
pub(crate) mod legacy;
mod plain;
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;
mod q8_1;
mod q8_k;
pub mod tiles;

use core::fmt;

pub use q4_0::BlockQ4_0;
pub use q4_1::BlockQ4_1;
pub use q4_k::BlockQ4_K;
pub use q5_0::BlockQ5_0;
pub use q5_1::BlockQ5_1;
pub use q5_k::BlockQ5_K;
pub use q6_k::BlockQ6_K;
pub use q8_0::{BlockQ8_0, BlockQ8_0Sum};
pub use q8_1::BlockQ8_1;
pub use q8_k::BlockQ8_K;

use crate::GgmlType;

/// A block of quantized values: a fixed number of elements in a fixed number of bytes.
pub trait QuantBlock: bytemuck::Pod + Send + Sync + 'static {
    /// The GGML type this block encodes.
    const DTYPE: GgmlType;
    /// Elements per block.
    const LEN: usize = Self::DTYPE.block_len();

    /// Writes the block's `LEN` values to `out[..LEN]`.
    fn dequantize(&self, out: &mut [f32]);
}

/// A block type that can be produced from f32 values.
pub trait Quantize: QuantBlock {
    /// Quantizes `x[..LEN]` into one block.
    fn quantize(x: &[f32]) -> Self;
}

/// A weight block type with an integer dot product against its activation partner.
pub trait WeightBlock: QuantBlock {
    /// The block type activations are quantized to for the dot product.
    type Act: Quantize;

    /// Dot product of a weight row with an activation row (same number of elements), scalar reference.
    fn vec_dot_ref(w: &[Self], a: &[Self::Act]) -> f32;
}

/// Why a quantization operation could not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuantError {
    /// The operation is not available for this type.
    Unsupported {
        /// What was asked.
        op: &'static str,
        /// For which type.
        dtype: GgmlType,
    },
    /// Byte and element counts that do not match the type's block layout.
    Length {
        /// The type.
        dtype: GgmlType,
        /// Bytes given.
        bytes: usize,
        /// Elements given.
        elems: usize,
    },
    /// Bytes not aligned for the block type (cannot happen for data inside a GGUF file).
    Misaligned(GgmlType),
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantError::Unsupported { op, dtype } => write!(f, "{op} is not supported for {dtype}"),
            QuantError::Length { dtype, bytes, elems } => {
                write!(f, "{bytes} bytes of {dtype} do not hold {elems} elements")
            }
            QuantError::Misaligned(dtype) => {
                write!(f, "{dtype} data is not aligned for its block type")
            }
        }
    }
}

impl core::error::Error for QuantError {}

/// Views `bytes` as blocks: the one checked place where raw bytes become typed blocks.
pub fn cast_blocks<B: QuantBlock>(bytes: &[u8]) -> Result<&[B], QuantError> {
    bytemuck::try_cast_slice(bytes).map_err(|e| match e {
        bytemuck::PodCastError::TargetAlignmentGreaterAndInputNotAligned => QuantError::Misaligned(B::DTYPE),
        _ => QuantError::Length {
            dtype: B::DTYPE,
            bytes: bytes.len(),
            elems: bytes.len() / size_of::<B>() * B::LEN,
        },
    })
}

/// Mutable counterpart of [`cast_blocks`].
pub fn cast_blocks_mut<B: QuantBlock>(bytes: &mut [u8]) -> Result<&mut [B], QuantError> {
    let len = bytes.len();
    bytemuck::try_cast_slice_mut(bytes).map_err(|e| match e {
        bytemuck::PodCastError::TargetAlignmentGreaterAndInputNotAligned => QuantError::Misaligned(B::DTYPE),
        _ => QuantError::Length {
            dtype: B::DTYPE,
            bytes: len,
            elems: len / size_of::<B>() * B::LEN,
        },
    })
}

/// Dequantizes whole blocks: `out.len()` must be `blocks.len() * LEN`.
pub fn dequantize_blocks<B: QuantBlock>(blocks: &[B], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * B::LEN);
    for (block, out) in blocks.iter().zip(out.chunks_exact_mut(B::LEN)) {
        block.dequantize(out);
    }
}

/// Quantizes `x` into whole blocks: `x.len()` must be `out.len() * LEN`.
pub fn quantize_blocks<B: Quantize>(x: &[f32], out: &mut [B]) {
    debug_assert_eq!(x.len(), out.len() * B::LEN);
    for (x, block) in x.chunks_exact(B::LEN).zip(out.iter_mut()) {
        *block = B::quantize(x);
    }
}

fn check_len(dtype: GgmlType, bytes: usize, elems: usize) -> Result<(), QuantError> {
    match dtype.bytes_for(elems as u64) {
        Some(n) if n == bytes as u64 => Ok(()),
        _ => Err(QuantError::Length { dtype, bytes, elems }),
    }
}

/// Dequantizes `bytes` of type `dtype` into `out` (one value per element).
pub fn dequantize(dtype: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check_len(dtype, bytes.len(), out.len())?;
    fn run<B: QuantBlock>(bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
        dequantize_blocks(cast_blocks::<B>(bytes)?, out);
        Ok(())
    }
    match dtype {
        GgmlType::F32 => plain::f32_from_le(bytes, out),
        GgmlType::F16 => plain::f16_to_f32(bytes, out),
        GgmlType::BF16 => plain::bf16_to_f32(bytes, out),
        GgmlType::Q4_0 => run::<BlockQ4_0>(bytes, out)?,
        GgmlType::Q4_1 => run::<BlockQ4_1>(bytes, out)?,
        GgmlType::Q5_0 => run::<BlockQ5_0>(bytes, out)?,
        GgmlType::Q5_1 => run::<BlockQ5_1>(bytes, out)?,
        GgmlType::Q8_0 => run::<BlockQ8_0>(bytes, out)?,
        GgmlType::Q8_1 => run::<BlockQ8_1>(bytes, out)?,
        GgmlType::Q4_K => run::<BlockQ4_K>(bytes, out)?,
        GgmlType::Q5_K => run::<BlockQ5_K>(bytes, out)?,
        GgmlType::Q6_K => run::<BlockQ6_K>(bytes, out)?,
        GgmlType::Q8_K => run::<BlockQ8_K>(bytes, out)?,
        other => {
            return Err(QuantError::Unsupported {
                op: "dequantization",
                dtype: other,
            });
        }
    }
    Ok(())
}

/// Quantizes `x` to type `dtype` into `out`, which must be exactly the encoded size.
pub fn quantize(dtype: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
    check_len(dtype, out.len(), x.len())?;
    fn run<B: Quantize>(x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
        quantize_blocks(x, cast_blocks_mut::<B>(out)?);
        Ok(())
    }
    match dtype {
        GgmlType::F32 => plain::f32_to_le(x, out),
        GgmlType::F16 => plain::f32_to_f16(x, out),
        GgmlType::BF16 => plain::f32_to_bf16(x, out),
        GgmlType::Q4_0 => run::<BlockQ4_0>(x, out)?,
        GgmlType::Q4_1 => run::<BlockQ4_1>(x, out)?,
        GgmlType::Q5_0 => run::<BlockQ5_0>(x, out)?,
        GgmlType::Q5_1 => run::<BlockQ5_1>(x, out)?,
        GgmlType::Q8_0 => run::<BlockQ8_0>(x, out)?,
        GgmlType::Q8_1 => run::<BlockQ8_1>(x, out)?,
        GgmlType::Q4_K => run::<BlockQ4_K>(x, out)?,
        GgmlType::Q5_K => run::<BlockQ5_K>(x, out)?,
        GgmlType::Q6_K => run::<BlockQ6_K>(x, out)?,
        GgmlType::Q8_K => run::<BlockQ8_K>(x, out)?,
        other => {
            return Err(QuantError::Unsupported {
                op: "quantization",
                dtype: other,
            });
        }
    }
    Ok(())
}
