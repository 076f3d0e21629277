//! Instruction-set selection. The best available ISA is chosen once at run time (under `std`; by
//! `cfg!(target_feature)` without it) and can be forced with `HEARTH_ISA=scalar|avx2|avx512|neon` so tests and
//! benches exercise every path the machine has. AVX-512 machines with AMX-INT8 also run the tile matmul on it (the
//! trainer's); `HEARTH_AMX=off` keeps it on its scalar reference, so callers choose another way.
//!
//! Each SIMD ISA is represented by a zero-sized capability token that can only be obtained after its CPU features
//! were detected; `#[target_feature]` kernels are reachable only through a token, which is what makes calling them
//! sound.

/// The safe entry points of one ISA's kernels. Invoked inside an ISA module with its token type, it defines
/// `dot_q8_0(token, w, [a; N])` … `dot_q6_k(…)`: one weight row against `N` activation rows. With `batched`, each
/// calls that module's `#[target_feature]` kernel of the matching name, generic over `N` (the weight blocks are
/// unpacked once for all rows); with `per_token`, the module's kernels take one activation row and are called once
/// per row. The token is the proof that the call is sound.
// Targets without SIMD kernels (soft-float no_std builds) have no ISA module to invoke it.
#[cfg_attr(not(any(hearth_x86_simd, target_arch = "aarch64")), allow(unused_macros))]
macro_rules! entry_points {
    ($token:ty, $mode:ident) => {
        entry_points!(@each $token, $mode;
            /// Q8_0 · Q8_0.
            dot_q8_0 => q8_0(BlockQ8_0, BlockQ8_0);
            /// Q4_0 · Q8_0.
            dot_q4_0 => q4_0(BlockQ4_0, BlockQ8_0);
            /// Q4_1 · Q8_1.
            dot_q4_1 => q4_1(BlockQ4_1, BlockQ8_1);
            /// Q5_0 · Q8_0.
            dot_q5_0 => q5_0(BlockQ5_0, BlockQ8_0);
            /// Q5_1 · Q8_1.
            dot_q5_1 => q5_1(BlockQ5_1, BlockQ8_1);
            /// Q4_K · Q8_K.
            dot_q4_k => q4_k(BlockQ4_K, BlockQ8_K);
            /// Q5_K · Q8_K.
            dot_q5_k => q5_k(BlockQ5_K, BlockQ8_K);
            /// Q6_K · Q8_K.
            dot_q6_k => q6_k(BlockQ6_K, BlockQ8_K);
        );
    };
    (@each $token:ty, $mode:ident; $($(#[$doc:meta])* $name:ident => $kernel:ident($w:ty, $a:ty);)*) => {$(
        $(#[$doc])*
        pub fn $name<const N: usize>(_: $token, w: &[$w], a: [&[$a]; N]) -> [f32; N] {
            entry_points!(@call $mode, $kernel, w, a)
        }
    )*};
    (@call batched, $kernel:ident, $w:ident, $a:ident) => {
        // SAFETY: a token exists only after the CPU features its kernels are compiled for were detected.
        unsafe { $kernel($w, $a) }
    };
    (@call per_token, $kernel:ident, $w:ident, $a:ident) => {
        // SAFETY: a token exists only after the CPU features its kernels are compiled for were detected.
        $a.map(|a| unsafe { $kernel($w, a) })
    };
}

/// `mad_rows` (`float::reference::mad_rows`) for one vector type of `core::arch::$arch`, its intrinsics named as
/// x86's (`$fmadd(a, b, c)` = `a·b + c`, fused). Accumulators stay in registers, a block of `$tokens` rows of `acc`
/// by `$vectors` vectors, through every row of `rows`: per row, `$vectors` loads and `$tokens` broadcasts feed
/// `$tokens · $vectors` fused multiply-adds. The column spans are the outer loop, so a span of `rows` (at most
/// `J × $vectors` vectors) stays in L1 while every block of tokens passes over it. Tokens left over from the blocks
/// go one at a time, `$single` vectors at a time. Widths that are not a whole number of vectors go to `$fallback`.
#[cfg_attr(not(any(hearth_x86_simd, target_arch = "aarch64")), allow(unused_macros))]
macro_rules! mad_rows_kernel {
    ($arch:ident, $module:ident, $features:literal, $vec:ty, $lanes:literal, $zero:path, $load:path, $store:path,
     $set1:path, $fmadd:path,
     block: $tokens:literal x $vectors:literal, single: $single:literal, otherwise: $fallback:path) => {
        mod $module {
            use core::arch::$arch::*;

            const LANES: usize = $lanes;

            /// `acc[t][v] += Σ_j w(t, j)·rows[j][v]` for the `T` rows of `acc` (each `vectors` long) and their `V`
            /// vectors from vector `first`, weight `(t, j)` at `t · strides.token + j · strides.row` of `weights`.
            #[inline]
            #[target_feature(enable = $features)]
            fn block<const T: usize, const V: usize>(
                acc: &mut [[f32; LANES]],
                vectors: usize,
                first: usize,
                rows: &[[f32; LANES]],
                weights: &[f32],
                strides: crate::simd::float::Strides,
            ) {
                // Vector arrays are filled by loops, not `core::array::from_fn`: its closures are not compiled with
                // this function's features, so they would pass every vector through memory.
                let mut sums = [[$zero(); V]; T];
                for (t, sums) in sums.iter_mut().enumerate() {
                    for (v, sum) in sums.iter_mut().enumerate() {
                        // SAFETY: `LANES` readable floats; the unaligned load has no alignment requirement.
                        *sum = unsafe { $load(acc[t * vectors + first + v].as_ptr()) };
                    }
                }
                for (j, row) in rows.chunks_exact(vectors).enumerate() {
                    let mut x = [$zero(); V];
                    for (x, lanes) in x.iter_mut().zip(&row[first..][..V]) {
                        // SAFETY: as above.
                        *x = unsafe { $load(lanes.as_ptr()) };
                    }
                    for (t, sums) in sums.iter_mut().enumerate() {
                        let w = $set1(weights[t * strides.token + j * strides.row]);
                        for (sum, x) in sums.iter_mut().zip(&x) {
                            *sum = $fmadd(*x, w, *sum);
                        }
                    }
                }
                for (t, sums) in sums.iter().enumerate() {
                    for (v, sum) in sums.iter().enumerate() {
                        // SAFETY: `LANES` writable floats; the unaligned store has no alignment requirement.
                        unsafe { $store(acc[t * vectors + first + v].as_mut_ptr(), *sum) };
                    }
                }
            }

            #[target_feature(enable = $features)]
            pub(super) fn mad_rows(
                width: usize,
                acc: &mut [f32],
                rows: &[f32],
                weights: &[f32],
                strides: crate::simd::float::Strides,
            ) {
                if width == 0 || !width.is_multiple_of(LANES) || rows.is_empty() {
                    return $fallback(width, acc, rows, weights, strides);
                }
                let vectors = width / LANES;
                let (acc, rows) = (acc.as_chunks_mut::<LANES>().0, rows.as_chunks::<LANES>().0);
                let blocked = acc.len() / (vectors * $tokens) * $tokens;
                let (acc_blocks, acc_rest) = acc.split_at_mut(blocked * vectors);
                // Token `t`'s weights start at `t · strides.token`.
                let from = |t: usize| &weights[t * strides.token..];
                let spans = vectors / $vectors * $vectors;
                for first in (0..vectors).step_by($vectors) {
                    for (b, acc) in acc_blocks.chunks_exact_mut($tokens * vectors).enumerate() {
                        let weights = from(b * $tokens);
                        if first < spans {
                            block::<$tokens, $vectors>(acc, vectors, first, rows, weights, strides);
                        } else {
                            for first in first..vectors {
                                block::<$tokens, 1>(acc, vectors, first, rows, weights, strides);
                            }
                        }
                    }
                }
                let singles = vectors / $single * $single;
                for (t, acc) in acc_rest.chunks_exact_mut(vectors).enumerate() {
                    let weights = from(blocked + t);
                    for first in (0..singles).step_by($single) {
                        block::<1, $single>(acc, vectors, first, rows, weights, strides);
                    }
                    for first in singles..vectors {
                        block::<1, 1>(acc, vectors, first, rows, weights, strides);
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod float;
#[cfg(hearth_x86_simd)]
pub mod x86;

use core::fmt;

use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, WeightBlock,
};

/// An instruction set to run kernels with.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isa {
    /// Portable Rust: the reference every other path is tested against.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    #[cfg(hearth_x86_simd)]
    Avx2(x86::Avx2),
    /// x86-64 with AVX-512 (F, BW, VL) and VNNI besides AVX2: the integer dot products use VNNI; the float kernels
    /// are AVX2's.
    #[cfg(hearth_x86_simd)]
    Avx512(x86::Avx512),
    /// AArch64 Advanced SIMD.
    #[cfg(target_arch = "aarch64")]
    Neon(aarch64::Neon),
}

impl Isa {
    /// Every ISA this machine can run, scalar first.
    pub fn available() -> alloc::vec::Vec<Isa> {
        let simd = core::iter::empty();
        #[cfg(hearth_x86_simd)]
        let simd = simd
            .chain(x86::Avx2::detect().map(Isa::Avx2))
            .chain(x86::Avx512::detect().map(Isa::Avx512));
        #[cfg(target_arch = "aarch64")]
        let simd = simd.chain(aarch64::Neon::detect().map(Isa::Neon));
        core::iter::once(Isa::Scalar).chain(simd).collect()
    }

    /// The fastest ISA this machine can run.
    pub fn best() -> Isa {
        Self::available().last().copied().unwrap_or(Isa::Scalar)
    }

    /// The ISA called `name` (`scalar`, `avx2`, `avx512`, `neon`), if this machine can run it.
    pub fn by_name(name: &str) -> Option<Isa> {
        Self::available()
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(name))
    }

    /// The ISA kernels use by default: `HEARTH_ISA` if set (and runnable here), else the best one. Decided once.
    #[cfg(feature = "std")]
    pub fn selected() -> Isa {
        static SELECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *SELECTED.get_or_init(|| match std::env::var("HEARTH_ISA") {
            Ok(name) => Self::by_name(&name).unwrap_or_else(|| {
                let best = Self::best();
                std::eprintln!("HEARTH_ISA={name} is not available on this machine; using {best}");
                best
            }),
            Err(_) => Self::best(),
        })
    }

    /// The ISA kernels use by default: the best one the build targets.
    #[cfg(not(feature = "std"))]
    pub fn selected() -> Isa {
        Self::best()
    }

    /// Whether this ISA's matmul reads weights grouped sixteen rows at a time (`quant::grouped`) when they are given
    /// (`Weights::with_grouped`).
    pub fn reads_grouped_weights(self) -> bool {
        #[cfg(hearth_x86_simd)]
        if let Isa::Avx512(_) = self {
            return true;
        }
        false
    }

    /// AMX for the tile matmul (`ops::matmul::tile_matmul`), when this ISA is AVX-512 and the CPU and the OS offer
    /// AMX-INT8 ([`x86::Amx::detect`]).
    #[cfg(hearth_x86_simd)]
    pub(crate) fn amx(self) -> Option<x86::Amx> {
        match self {
            Isa::Avx512(_) => x86::Amx::detect(),
            _ => None,
        }
    }

    /// Whether the tile matmul (`ops::matmul::tile_matmul`) runs on hardware made for it with this ISA (AMX-INT8),
    /// rather than on its scalar reference.
    pub fn multiplies_tiles(self) -> bool {
        #[cfg(hearth_x86_simd)]
        return self.amx().is_some();
        #[cfg(not(hearth_x86_simd))]
        return false;
    }

    /// Short lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            #[cfg(hearth_x86_simd)]
            Isa::Avx2(_) => "avx2",
            #[cfg(hearth_x86_simd)]
            Isa::Avx512(_) => "avx512",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon(_) => "neon",
        }
    }

    /// Dot product of a weight row with a quantized activation row.
    #[inline]
    pub fn vec_dot<W: SimdDot>(self, w: &[W], a: &[W::Act]) -> f32 {
        let [dot] = self.vec_dots(w, [a]);
        dot
    }

    /// Dot products of one weight row with `N` quantized activation rows (a matmul's token tile: the row's blocks
    /// are loaded and unpacked once for all of them).
    #[inline]
    pub fn vec_dots<W: SimdDot, const N: usize>(self, w: &[W], a: [&[W::Act]; N]) -> [f32; N] {
        debug_assert!(
            a.iter()
                .all(|a| w.len() * W::LEN == a.len() * <W::Act as crate::quant::QuantBlock>::LEN)
        );
        match self {
            Isa::Scalar => a.map(|a| W::vec_dot_ref(w, a)),
            #[cfg(hearth_x86_simd)]
            Isa::Avx2(token) => W::vec_dots_avx2(token, w, a),
            #[cfg(hearth_x86_simd)]
            Isa::Avx512(token) => W::vec_dots_avx512(token, w, a),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon(token) => W::vec_dots_neon(token, w, a),
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A weight block type with dot products for each ISA: one weight row against `N` activation rows. An ISA without a
/// kernel of its own for the type falls back to the scalar reference.
pub trait SimdDot: WeightBlock {
    /// AVX2 dot products.
    #[cfg(hearth_x86_simd)]
    fn vec_dots_avx2<const N: usize>(token: x86::Avx2, w: &[Self], a: [&[Self::Act]; N]) -> [f32; N] {
        let _ = token;
        a.map(|a| Self::vec_dot_ref(w, a))
    }

    /// AVX-512 VNNI dot products.
    #[cfg(hearth_x86_simd)]
    fn vec_dots_avx512<const N: usize>(token: x86::Avx512, w: &[Self], a: [&[Self::Act]; N]) -> [f32; N] {
        let _ = token;
        a.map(|a| Self::vec_dot_ref(w, a))
    }

    /// NEON dot products.
    #[cfg(target_arch = "aarch64")]
    fn vec_dots_neon<const N: usize>(token: aarch64::Neon, w: &[Self], a: [&[Self::Act]; N]) -> [f32; N] {
        let _ = token;
        a.map(|a| Self::vec_dot_ref(w, a))
    }
}

macro_rules! simd_dot_impls {
    ($($block:ty => $kernel:ident),* $(,)?) => {$(
        impl SimdDot for $block {
            #[cfg(hearth_x86_simd)]
            fn vec_dots_avx2<const N: usize>(token: x86::Avx2, w: &[Self], a: [&[Self::Act]; N]) -> [f32; N] {
                x86::avx2::$kernel(token, w, a)
            }

            #[cfg(hearth_x86_simd)]
            fn vec_dots_avx512<const N: usize>(token: x86::Avx512, w: &[Self], a: [&[Self::Act]; N]) -> [f32; N] {
                x86::avx512::$kernel(token, w, a)
            }

            #[cfg(target_arch = "aarch64")]
            fn vec_dots_neon<const N: usize>(token: aarch64::Neon, w: &[Self], a: [&[Self::Act]; N]) -> [f32; N] {
                aarch64::neon::$kernel(token, w, a)
            }
        }
    )*};
}

simd_dot_impls! {
    BlockQ8_0 => dot_q8_0,
    BlockQ4_0 => dot_q4_0,
    BlockQ4_1 => dot_q4_1,
    BlockQ5_0 => dot_q5_0,
    BlockQ5_1 => dot_q5_1,
    BlockQ4_K => dot_q4_k,
    BlockQ5_K => dot_q5_k,
    BlockQ6_K => dot_q6_k,
}
