//! Weight rows grouped sixteen at a time: the layout of the weight cache hearth keeps next to a model for the
//! AVX-512 kernels (`simd::x86::interleaved`).
//!
//! A matrix of `n_out` rows of `per_row` blocks becomes `ceil(n_out / 16)` groups of `per_row` group blocks; group
//! block `b` of group `g` holds block `b` of rows `16g..16g + 16`, row `r` of the group in lane `r` of every field:
//! the same bits as the blocks, transposed so that one 512-bit load brings one 32-bit word of each of the sixteen
//! rows. Quantized levels stay packed as the file has them (a decode step streams every weight once, so the layout
//! must not be larger than the file); only the K-quants' twelve bytes of packed 6-bit scales are spread to a byte
//! each, which the kernel widens sixteen rows at a time. Every group block is a whole number of 64-byte cache lines.
//! Rows missing from a short last group are zeros.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::kquant::unpack_scale_mins;
use super::{BlockQ4_1, BlockQ4_K, BlockQ6_K, BlockQ8_0, QuantBlock, QuantError};
use crate::GgmlType;

/// Rows in a group: one per 32-bit lane of a 512-bit vector.
pub const GROUP_ROWS: usize = 16;

/// A weight block type whose rows group sixteen at a time.
pub trait Grouped: QuantBlock {
    /// One block of each of sixteen rows.
    type Group: Pod + Send + Sync;

    /// Writes `self` as row `r` of `group`.
    fn write_row(&self, r: usize, group: &mut Self::Group);
}

/// Writes `words` (a row's bytes, four at a time) as row `r` of `lanes`: the same bytes, each word in its row's lane.
fn write_words<const N: usize>(words: &[[u8; 4]; N], r: usize, lanes: &mut [[u32; GROUP_ROWS]; N]) {
    for (lane, word) in lanes.iter_mut().zip(words) {
        lane[r] = u32::from_ne_bytes(*word);
    }
}

/// Sixteen rows of one Q4_K block (2,368 bytes; the rows' blocks take 2,304).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GroupQ4_K {
    /// `qs[w][r]`: word `w` of row `r`'s `qs`, little-endian. Word `8c + q` holds elements `4q..4q + 4` of sub-block
    /// `2c` in its low nibbles and of sub-block `2c + 1` in its high nibbles.
    pub qs: [[u32; GROUP_ROWS]; 32],
    /// `scales[j][r]`: row `r`'s 6-bit scale of sub-block `j`.
    pub scales: [[u8; GROUP_ROWS]; 8],
    /// `mins[j][r]`: row `r`'s 6-bit minimum of sub-block `j`.
    pub mins: [[u8; GROUP_ROWS]; 8],
    /// Row `r`'s super-block scale.
    pub d: [f16; GROUP_ROWS],
    /// Row `r`'s super-block scale of the minimums.
    pub dmin: [f16; GROUP_ROWS],
}

impl Grouped for BlockQ4_K {
    type Group = GroupQ4_K;

    fn write_row(&self, r: usize, group: &mut GroupQ4_K) {
        write_words(bytemuck::cast_ref(&self.qs), r, &mut group.qs);
        let (scales, mins) = unpack_scale_mins(&self.scales);
        for j in 0..8 {
            group.scales[j][r] = scales[j];
            group.mins[j][r] = mins[j];
        }
        group.d[r] = self.d;
        group.dmin[r] = self.dmin;
    }
}

/// Sixteen rows of one Q6_K block (3,392 bytes; the rows' blocks take 3,360), in the order the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GroupQ6_K {
    /// `scales[g][r]`: row `r`'s scale of 16-element group `g`.
    pub scales: [[i8; GROUP_ROWS]; 16],
    /// Row `r`'s super-block scale.
    pub d: [f16; GROUP_ROWS],
    /// Unused: keeps the levels, and every group block, on cache-line boundaries.
    pub padding: [f16; GROUP_ROWS],
    /// The levels of elements `128h..128h + 128`, half `h` of the block, by halves: the kernel then streams through
    /// the group block once.
    pub halves: [GroupQ6Half; 2],
}

/// Half of a [`GroupQ6_K`]'s levels: the 32 `ql` words and 16 `qh` words of elements `128h..128h + 128` of the
/// rows' blocks, ordered so that the kernel, going through its 16-element groups in order, first touches each cache
/// line in address order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GroupQ6Half {
    /// `quarters[j]`: `ql` words `16h + 4j..` with their `qh` words.
    pub quarters: [GroupQ6Quarter; 2],
    /// `ql_next[j][w][r]`: word `16h + 8 + 4j + w` of row `r`'s `ql`, little-endian.
    pub ql_next: [[[u32; GROUP_ROWS]; 4]; 2],
}

/// Four `ql` words of a [`GroupQ6Half`] and the `qh` words holding the top bits of both their nibbles and those of
/// the `ql` words eight further on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GroupQ6Quarter {
    /// `ql[w][r]`: word `16h + 4j + w` of row `r`'s `ql`, little-endian.
    pub ql: [[u32; GROUP_ROWS]; 4],
    /// `qh[w][r]`: word `8h + 4j + w` of row `r`'s `qh`, little-endian.
    pub qh: [[u32; GROUP_ROWS]; 4],
}

impl Grouped for BlockQ6_K {
    type Group = GroupQ6_K;

    fn write_row(&self, r: usize, group: &mut GroupQ6_K) {
        // `ql[h][c][j]`: words 16h + 8c + 4j..; `qh[h][j]`: words 8h + 4j...
        let ql: &[[[[[u8; 4]; 4]; 2]; 2]; 2] = bytemuck::cast_ref(&self.ql);
        let qh: &[[[[u8; 4]; 4]; 2]; 2] = bytemuck::cast_ref(&self.qh);
        for (h, half) in group.halves.iter_mut().enumerate() {
            for j in 0..2 {
                write_words(&ql[h][0][j], r, &mut half.quarters[j].ql);
                write_words(&qh[h][j], r, &mut half.quarters[j].qh);
                write_words(&ql[h][1][j], r, &mut half.ql_next[j]);
            }
        }
        for g in 0..16 {
            group.scales[g][r] = self.scales[g];
        }
        group.d[r] = self.d;
    }
}

/// Sixteen rows of one Q4_1 block (320 bytes, as the rows' blocks).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GroupQ4_1 {
    /// `qs[w][r]`: word `w` of row `r`'s `qs`, little-endian: elements `4w..4w + 4` in the low nibbles,
    /// `16 + 4w..` in the high nibbles.
    pub qs: [[u32; GROUP_ROWS]; 4],
    /// Row `r`'s scale.
    pub d: [f16; GROUP_ROWS],
    /// Row `r`'s minimum.
    pub m: [f16; GROUP_ROWS],
}

impl Grouped for BlockQ4_1 {
    type Group = GroupQ4_1;

    fn write_row(&self, r: usize, group: &mut GroupQ4_1) {
        write_words(bytemuck::cast_ref(&self.qs), r, &mut group.qs);
        group.d[r] = self.d;
        group.m[r] = self.m;
    }
}

/// Sixteen rows of one Q8_0 block (576 bytes, padded to whole cache lines; the rows' blocks take 544).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GroupQ8_0 {
    /// `qs[w][r]`: elements `4w..4w + 4` of row `r`, little-endian, each level offset by 128 to an unsigned byte
    /// (`vpdpbusd` takes its unsigned operand from the weights, so the activations can be broadcast from memory).
    pub qs: [[u32; GROUP_ROWS]; 8],
    /// Row `r`'s scale.
    pub d: [f16; GROUP_ROWS],
    /// Zeros, to the next cache line.
    pub padding: [u16; GROUP_ROWS],
}

impl Grouped for BlockQ8_0 {
    type Group = GroupQ8_0;

    fn write_row(&self, r: usize, group: &mut GroupQ8_0) {
        let unsigned: [u8; 32] = self.qs.map(|q| (q as u8) ^ 0x80);
        write_words(bytemuck::cast_ref(&unsigned), r, &mut group.qs);
        group.d[r] = self.d;
    }
}

/// Bytes of an `n_out × n_in` matrix of `dtype` grouped, or `None` when `dtype` has no grouped layout or `n_in` is
/// not a whole number of its blocks.
pub fn grouped_len(dtype: GgmlType, n_in: usize, n_out: usize) -> Option<usize> {
    let group_size = match dtype {
        GgmlType::Q4_K => size_of::<GroupQ4_K>(),
        GgmlType::Q6_K => size_of::<GroupQ6_K>(),
        GgmlType::Q4_1 => size_of::<GroupQ4_1>(),
        GgmlType::Q8_0 => size_of::<GroupQ8_0>(),
        _ => return None,
    };
    let block_len = dtype.block_len();
    n_in.is_multiple_of(block_len)
        .then(|| n_out.div_ceil(GROUP_ROWS) * (n_in / block_len) * group_size)
}

/// Groups the `n_out` rows of `n_in` elements in `rows` (a matrix of `dtype`) into `out`, which must hold
/// [`grouped_len`] bytes.
pub fn group_rows(dtype: GgmlType, n_in: usize, rows: &[u8], out: &mut [u8]) -> Result<(), QuantError> {
    match dtype {
        GgmlType::Q4_K => group_typed::<BlockQ4_K>(n_in, rows, out),
        GgmlType::Q6_K => group_typed::<BlockQ6_K>(n_in, rows, out),
        GgmlType::Q4_1 => group_typed::<BlockQ4_1>(n_in, rows, out),
        GgmlType::Q8_0 => group_typed::<BlockQ8_0>(n_in, rows, out),
        _ => Err(QuantError::Unsupported {
            op: "grouping rows",
            dtype,
        }),
    }
}

fn group_typed<W: Grouped>(n_in: usize, rows: &[u8], out: &mut [u8]) -> Result<(), QuantError> {
    let blocks: &[W] = super::cast_blocks(rows)?;
    let per_row = n_in / W::LEN;
    let length_error = || QuantError::Length {
        dtype: W::DTYPE,
        bytes: rows.len(),
        elems: n_in,
    };
    if per_row == 0 || !n_in.is_multiple_of(W::LEN) || !blocks.len().is_multiple_of(per_row) {
        return Err(length_error());
    }
    let n_out = blocks.len() / per_row;
    let groups: &mut [W::Group] = bytemuck::try_cast_slice_mut(out).map_err(|_| length_error())?;
    if groups.len() != n_out.div_ceil(GROUP_ROWS) * per_row {
        return Err(length_error());
    }
    for (g, groups) in groups.chunks_exact_mut(per_row).enumerate() {
        let rows = &blocks[g * GROUP_ROWS * per_row..];
        group_blocks(rows.chunks(per_row).take(GROUP_ROWS), groups);
    }
    Ok(())
}

/// Writes up to sixteen rows (each `out.len()` blocks) into the group blocks `out`; rows missing from a short last
/// group are zeros.
pub fn group_blocks<'r, W: Grouped>(rows: impl ExactSizeIterator<Item = &'r [W]> + Clone, out: &mut [W::Group]) {
    debug_assert!(rows.len() <= GROUP_ROWS);
    let full = rows.len() == GROUP_ROWS;
    for (b, group) in out.iter_mut().enumerate() {
        if !full {
            *group = W::Group::zeroed();
        }
        for (r, row) in rows.clone().enumerate() {
            row[b].write_row(r, group);
        }
    }
}
