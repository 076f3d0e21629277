//! The KV cache: keys and values of every layer, KV head and position, in f16 (default) or Q8_0.
//!
//! Layout: for each layer and KV head, `capacity` rows of `head_dim` elements, so attention streams one head's keys
//! (or values) contiguously: row `((layer · n_kv_heads + head) · capacity + pos)`.

use alloc::vec;
use alloc::vec::Vec;

use bytemuck::Zeroable;
use half::f16;

use super::{OpError, expect_len};
use crate::quant::{self, BlockQ8_0, QuantBlock};

/// How cached keys and values are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    /// IEEE half precision: exact enough for any model, 2 bytes per value.
    F16,
    /// Q8_0 blocks: 1.06 bytes per value; `head_dim` must be a multiple of 32.
    Q8_0,
}

/// Keys and values, in the same layout and type.
#[derive(Debug)]
enum Storage {
    F16 { k: Vec<f16>, v: Vec<f16> },
    Q8_0 { k: Vec<BlockQ8_0>, v: Vec<BlockQ8_0> },
}

/// The cached keys and values of one layer's KV head: `capacity` rows of `head_dim` values each, borrowed.
#[derive(Clone, Copy, Debug)]
pub enum KvHead<'a> {
    /// f16 rows.
    F16 {
        /// Keys, `[capacity, head_dim]`.
        k: &'a [f16],
        /// Values, `[capacity, head_dim]`.
        v: &'a [f16],
    },
    /// Q8_0 rows of `head_dim / 32` blocks.
    Q8_0 {
        /// Keys, `[capacity, head_dim / 32]` blocks.
        k: &'a [BlockQ8_0],
        /// Values, `[capacity, head_dim / 32]` blocks.
        v: &'a [BlockQ8_0],
    },
}

/// Keys and values of every layer for up to `capacity` positions.
#[derive(Debug)]
pub struct KvCache {
    n_layers: usize,
    n_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    data: Storage,
}

impl KvCache {
    /// An empty (zeroed) cache. Q8_0 needs `head_dim` to be a multiple of 32.
    pub fn new(
        kind: KvType,
        n_layers: usize,
        n_kv_heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Result<Self, OpError> {
        let values = n_layers * n_kv_heads * head_dim * capacity;
        let data = match kind {
            KvType::F16 => Storage::F16 {
                k: vec![f16::ZERO; values],
                v: vec![f16::ZERO; values],
            },
            KvType::Q8_0 => {
                if !head_dim.is_multiple_of(BlockQ8_0::LEN) {
                    return Err(OpError::Shape {
                        what: "Q8_0 KV head size",
                        expected: 32,
                        got: head_dim,
                    });
                }
                let blocks = values / BlockQ8_0::LEN;
                Storage::Q8_0 {
                    k: vec![BlockQ8_0::zeroed(); blocks],
                    v: vec![BlockQ8_0::zeroed(); blocks],
                }
            }
        };
        Ok(Self {
            n_layers,
            n_kv_heads,
            head_dim,
            capacity,
            data,
        })
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How keys and values are stored.
    pub fn kind(&self) -> KvType {
        match self.data {
            Storage::F16 { .. } => KvType::F16,
            Storage::Q8_0 { .. } => KvType::Q8_0,
        }
    }

    /// Bytes used by keys and values.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Storage::F16 { k, v } => (k.len() + v.len()) * size_of::<f16>(),
            Storage::Q8_0 { k, v } => (k.len() + v.len()) * size_of::<BlockQ8_0>(),
        }
    }

    /// Stores the keys and values (`[n_kv_heads, head_dim]` each) of one position of one layer.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) -> Result<(), OpError> {
        let (hd, width) = (self.head_dim, self.n_kv_heads * self.head_dim);
        expect_len("keys", k.len(), width)?;
        expect_len("values", v.len(), width)?;
        if layer >= self.n_layers || pos >= self.capacity {
            return Err(OpError::Shape {
                what: "KV position",
                expected: self.capacity,
                got: pos,
            });
        }
        for head in 0..self.n_kv_heads {
            // Row of (layer, head, pos): rows of one head are contiguous over positions.
            let row = (layer * self.n_kv_heads + head) * self.capacity + pos;
            let (k, v) = (&k[head * hd..][..hd], &v[head * hd..][..hd]);
            match &mut self.data {
                Storage::F16 { k: keys, v: values } => {
                    for (dst, src) in [(&mut keys[row * hd..][..hd], k), (&mut values[row * hd..][..hd], v)] {
                        dst.iter_mut().zip(src).for_each(|(d, s)| *d = f16::from_f32(*s));
                    }
                }
                Storage::Q8_0 { k: keys, v: values } => {
                    let per_row = hd / BlockQ8_0::LEN;
                    quant::quantize_blocks(k, &mut keys[row * per_row..][..per_row]);
                    quant::quantize_blocks(v, &mut values[row * per_row..][..per_row]);
                }
            }
        }
        Ok(())
    }

    /// The keys and values of (`layer`, KV `head`) for every position.
    pub fn head(&self, layer: usize, head: usize) -> KvHead<'_> {
        let (first, n) = ((layer * self.n_kv_heads + head) * self.capacity, self.capacity);
        match &self.data {
            Storage::F16 { k, v } => {
                let values = first * self.head_dim..(first + n) * self.head_dim;
                KvHead::F16 {
                    k: &k[values.clone()],
                    v: &v[values],
                }
            }
            Storage::Q8_0 { k, v } => {
                let per_row = self.head_dim / BlockQ8_0::LEN;
                let blocks = first * per_row..(first + n) * per_row;
                KvHead::Q8_0 {
                    k: &k[blocks.clone()],
                    v: &v[blocks],
                }
            }
        }
    }

    /// Number of layers.
    pub fn n_layers(&self) -> usize {
        self.n_layers
    }

    /// Number of KV heads.
    pub fn n_kv_heads(&self) -> usize {
        self.n_kv_heads
    }

    /// Elements per head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }
}
