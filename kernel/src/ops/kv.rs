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

#[derive(Debug)]
enum Storage {
    F16(Vec<f16>),
    Q8_0(Vec<BlockQ8_0>),
}

/// One cached key or value row, borrowed.
#[derive(Clone, Copy, Debug)]
pub enum KvRow<'a> {
    /// f16 values.
    F16(&'a [f16]),
    /// Q8_0 blocks.
    Q8_0(&'a [BlockQ8_0]),
}

impl KvRow<'_> {
    /// `Σ q[i] · row[i]`.
    #[inline]
    pub fn dot(&self, q: &[f32]) -> f32 {
        match self {
            KvRow::F16(row) => row.iter().zip(q).map(|(k, q)| k.to_f32() * q).sum(),
            KvRow::Q8_0(blocks) => blocks
                .iter()
                .zip(q.chunks_exact(BlockQ8_0::LEN))
                .map(|(b, q)| {
                    let s: f32 = b.qs.iter().zip(q).map(|(&k, q)| k as f32 * q).sum();
                    s * b.d.to_f32()
                })
                .sum(),
        }
    }

    /// The accumulation step of attention, `acc[i] += p · row[i]`. With `f16_accumulator`, f16 rows accumulate as
    /// ggml's flash attention does: a fused multiply-add rounded to f16 (`acc` then holds f16 values). Q8_0 rows
    /// always accumulate in f32.
    #[inline]
    pub fn accumulate(&self, p: f32, acc: &mut [f32], f16_accumulator: bool) {
        match self {
            KvRow::F16(row) if f16_accumulator => {
                let round = |v: f32| f16::from_f32(v).to_f32();
                acc.iter_mut()
                    .zip(*row)
                    .for_each(|(a, v)| *a = round(libm::fmaf(v.to_f32(), p, *a)));
            }
            KvRow::F16(row) => acc.iter_mut().zip(*row).for_each(|(a, v)| *a += p * v.to_f32()),
            KvRow::Q8_0(blocks) => {
                for (b, acc) in blocks.iter().zip(acc.chunks_exact_mut(BlockQ8_0::LEN)) {
                    let pd = p * b.d.to_f32();
                    acc.iter_mut().zip(&b.qs).for_each(|(a, &v)| *a += pd * v as f32);
                }
            }
        }
    }
}

/// Keys and values of every layer for up to `capacity` positions.
#[derive(Debug)]
pub struct KvCache {
    n_layers: usize,
    n_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    k: Storage,
    v: Storage,
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
        let storage = || -> Result<Storage, OpError> {
            Ok(match kind {
                KvType::F16 => Storage::F16(vec![f16::ZERO; values]),
                KvType::Q8_0 => {
                    if !head_dim.is_multiple_of(BlockQ8_0::LEN) {
                        return Err(OpError::Shape {
                            what: "Q8_0 KV head size",
                            expected: 32,
                            got: head_dim,
                        });
                    }
                    Storage::Q8_0(vec![BlockQ8_0::zeroed(); values / BlockQ8_0::LEN])
                }
            })
        };
        Ok(Self {
            n_layers,
            n_kv_heads,
            head_dim,
            capacity,
            k: storage()?,
            v: storage()?,
        })
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether values are stored as f16 (the attention accumulator then is f16 too, as in ggml).
    pub fn is_f16(&self) -> bool {
        matches!(self.k, Storage::F16(_))
    }

    /// Bytes used by keys and values.
    pub fn bytes(&self) -> usize {
        let size = |s: &Storage| match s {
            Storage::F16(v) => v.len() * 2,
            Storage::Q8_0(v) => v.len() * size_of::<BlockQ8_0>(),
        };
        size(&self.k) + size(&self.v)
    }

    fn row_index(&self, layer: usize, head: usize, pos: usize) -> usize {
        (layer * self.n_kv_heads + head) * self.capacity + pos
    }

    /// Stores the keys and values (`[n_kv_heads, head_dim]` each) of one position of one layer.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) -> Result<(), OpError> {
        let width = self.n_kv_heads * self.head_dim;
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
            let row = self.row_index(layer, head, pos);
            let range = head * self.head_dim..(head + 1) * self.head_dim;
            for (storage, src) in [(&mut self.k, &k[range.clone()]), (&mut self.v, &v[range])] {
                match storage {
                    Storage::F16(data) => {
                        let dst = &mut data[row * self.head_dim..][..self.head_dim];
                        dst.iter_mut().zip(src).for_each(|(d, s)| *d = f16::from_f32(*s));
                    }
                    Storage::Q8_0(data) => {
                        let per_row = self.head_dim / BlockQ8_0::LEN;
                        quant::quantize_blocks(src, &mut data[row * per_row..][..per_row]);
                    }
                }
            }
        }
        Ok(())
    }

    fn row<'a>(&self, storage: &'a Storage, layer: usize, head: usize, pos: usize) -> KvRow<'a> {
        let row = self.row_index(layer, head, pos);
        match storage {
            Storage::F16(data) => KvRow::F16(&data[row * self.head_dim..][..self.head_dim]),
            Storage::Q8_0(data) => {
                let per_row = self.head_dim / BlockQ8_0::LEN;
                KvRow::Q8_0(&data[row * per_row..][..per_row])
            }
        }
    }

    /// The cached key of (`layer`, KV `head`, `pos`).
    pub fn key(&self, layer: usize, head: usize, pos: usize) -> KvRow<'_> {
        self.row(&self.k, layer, head, pos)
    }

    /// The cached value of (`layer`, KV `head`, `pos`).
    pub fn value(&self, layer: usize, head: usize, pos: usize) -> KvRow<'_> {
        self.row(&self.v, layer, head, pos)
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
