//! AMX-INT8 tile products for the tile matmul (`quant::tiles`). One `tdpbssd` multiplies 16 rows × 32 levels of
//! activations by 32 levels × 16 weight rows into a tile of 16 × 16 i32 sums: 8,192 multiply-adds, where a VNNI
//! instruction does 64. Tiles are registers Rust does not know, so every tile instruction is inline assembly; a call
//! configures the tiles (`ldtilecfg`) when it starts and releases them (`tilerelease`) before it returns, so no tile
//! state outlives a call.

use core::arch::asm;
use core::arch::x86_64::*;

use super::Avx512;
use crate::quant::tiles::{PANEL_ROWS, TILE_K, TileBlock, TileMatrix, TileRows};

/// Proof that the CPU has AVX-512 (as [`Avx512`]) and AMX-TILE and AMX-INT8, and that the OS lets this process use
/// the tiles (obtainable only through [`Amx::detect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amx {
    _avx512: Avx512,
}

impl Amx {
    /// The token, if this CPU has AVX-512 and AMX-INT8, the OS saves tile state (XCR0 bits 17 and 18) and grants this
    /// process the tile data (Linux: `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, asked once), and
    /// `HEARTH_AMX` is not `off`. Decided once.
    #[cfg(all(feature = "std", target_os = "linux"))]
    pub fn detect() -> Option<Self> {
        static DETECTED: std::sync::OnceLock<Option<Amx>> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let avx512 = Avx512::detect()?;
            if std::env::var("HEARTH_AMX").is_ok_and(|v| v.eq_ignore_ascii_case("off")) {
                return None;
            }
            (cpu_has_amx_int8() && os_saves_tiles() && request_tile_data()).then_some(Amx { _avx512: avx512 })
        })
    }

    /// Never: tile state needs the OS's permission, which is only asked for on Linux (with `std`).
    #[cfg(not(all(feature = "std", target_os = "linux")))]
    pub fn detect() -> Option<Self> {
        None
    }

    /// The tile products of `a` with panels `first_panel..` of `w` into `by_group`, a run of whole panels' results:
    /// `by_group[g][t][n] = tiles::dot(a, t, w, 16 (first_panel + g) + n)` for the `a.n_rows()` rows `t`, each
    /// panel's results `[n_rows, 16]` (the matrix's last panel narrower when `n_out` is not a multiple of 16), in the
    /// same bits as `tiles::dot`.
    pub fn tile_products(self, a: &TileRows, w: &TileMatrix, first_panel: usize, by_group: &mut [f32]) {
        assert_eq!(
            a.k_blocks(),
            w.k_blocks(),
            "activations and weights of different widths"
        );
        let panels = by_group.len().div_ceil(PANEL_ROWS * a.n_rows().max(1));
        assert!(
            first_panel + panels <= w.panels(),
            "results for panels beyond the matrix"
        );
        if a.n_rows() == 0 {
            return;
        }
        // SAFETY: the token proves AVX-512 and AMX-INT8 with the tile data granted; the shapes were checked above.
        unsafe { tile_products(a, w, first_panel, by_group) }
    }
}

/// CPUID leaf 7's AMX-TILE (EDX bit 24) and AMX-INT8 (bit 25).
#[cfg(all(feature = "std", target_os = "linux"))]
fn cpu_has_amx_int8() -> bool {
    if __cpuid(0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

/// Whether the OS enabled the tile configuration and data state components (XCR0 bits 17 and 18).
#[cfg(all(feature = "std", target_os = "linux"))]
fn os_saves_tiles() -> bool {
    // CPUID.1:ECX bit 27 (OSXSAVE): `xgetbv` may be executed.
    if __cpuid(1).ecx & (1 << 27) == 0 {
        return false;
    }
    let (low, _high): (u32, u32);
    // SAFETY: `xgetbv` with ECX = 0 reads XCR0, allowed once OSXSAVE is set (checked above); it touches no memory.
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") low, out("edx") _high, options(nomem, nostack, preserves_flags)) };
    low & (0b11 << 17) == 0b11 << 17
}

/// Asks Linux for this process's permission to use tile data, which it grants once for every thread.
#[cfg(all(feature = "std", target_os = "linux"))]
fn request_tile_data() -> bool {
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let result: isize;
    // SAFETY: the `arch_prctl` system call with these arguments only changes which state components the process may
    // use; `syscall` clobbers RCX and R11 and touches no memory of ours.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => result,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        )
    };
    result == 0
}

/// The 64-byte operand of `ldtilecfg` (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// One tile of sums: 16 rows of 16 i32s.
#[repr(C, align(64))]
struct Sums([[i32; PANEL_ROWS]; PANEL_ROWS]);

/// Bytes of activation rows one pass keeps in L2 while every panel of the call goes by: a pass reads the call's
/// weights once, and each panel's blocks (at most 280 × 576 bytes for Qwen2.5's 8960-wide rows) stay in L2 too while
/// the pass's rows go by them 16 at a time.
const PASS_BYTES: usize = 1 << 20;

/// See [`Amx::tile_products`].
///
/// # Safety
/// The CPU must have AVX-512 F and AMX-INT8 with the tile data granted, `a` and `w` must have the same K blocks, and
/// `by_group` must hold results for no panel beyond `w.panels()` and for at least one row.
#[target_feature(enable = "avx512f")]
unsafe fn tile_products(a: &TileRows, w: &TileMatrix, first_panel: usize, by_group: &mut [f32]) {
    // Tiles 0–1: sums, 16 rows of 16 i32s; 2–3: activations, 16 rows of a K block; 4–5: a panel's K block, as quads of
    // 16 rows' levels. Each kind twice, so that one K block is multiplied while the last one's sums are scaled.
    // Palette 1 has 8 tiles; the entries of tiles 6–15 must be zero.
    const LINE: u16 = 64;
    let (mut bytes_per_row, mut rows) = ([0; 16], [0; 16]);
    bytes_per_row[..6].copy_from_slice(&[LINE, LINE, TILE_K as u16, TILE_K as u16, LINE, LINE]);
    rows[..6].copy_from_slice(&[16, 16, 16, 16, TILE_K as u8 / 4, TILE_K as u8 / 4]);
    let config = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        bytes_per_row,
        rows,
    };
    // SAFETY: `config` is a valid palette-1 configuration of 6 tiles in readable memory.
    unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
    let (n_rows, k_blocks) = (a.n_rows(), a.k_blocks());
    let group_len = PANEL_ROWS * n_rows;
    let pass_tiles = (PASS_BYTES / (PANEL_ROWS * k_blocks * TILE_K)).max(1);
    let mut sums = Sums([[0; PANEL_ROWS]; PANEL_ROWS]);
    for pass in (0..n_rows.div_ceil(PANEL_ROWS)).step_by(pass_tiles) {
        for (g, group) in by_group.chunks_mut(group_len).enumerate() {
            let panel = w.panel(first_panel + g);
            let width = group.len() / n_rows;
            for r in pass..(pass + pass_tiles).min(n_rows.div_ceil(PANEL_ROWS)) {
                // SAFETY: the caller's guarantees, the tiles configured above, and one row tile of `a`.
                let acc = unsafe { tile_dot(a.tile_levels(r), a.tile_scales(r), panel, &mut sums) };
                for (t, acc) in (r * PANEL_ROWS..n_rows.min((r + 1) * PANEL_ROWS)).zip(acc) {
                    let mut lanes = [0.0f32; PANEL_ROWS];
                    // SAFETY: 16 writable floats; the unaligned store has no alignment requirement.
                    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc) };
                    group[t * width..][..width].copy_from_slice(&lanes[..width]);
                }
            }
        }
    }
    // SAFETY: releasing the tiles has no operands; the configuration loaded above is dropped with them.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// Loads K block `$levels`/`$block` of the activations and the weights into tiles `$a` and `$b` and multiplies them
/// into tile `$c`, zeroed first.
macro_rules! multiply_block {
    ($c:literal, $a:literal, $b:literal, $levels:expr, $block:expr) => {
        // SAFETY: tile `$a` reads 16 rows of `TILE_K` consecutive bytes from `$levels` (that long), tile `$b`
        // `TILE_K / 4` rows of 64 consecutive bytes from `$block`'s levels (that long); `tile_products` configured
        // them.
        unsafe {
            asm!(
                concat!("tileloadd ", $a, ", [{a} + {a_row}]"),
                concat!("tileloadd ", $b, ", [{b} + {b_row}]"),
                concat!("tilezero ", $c),
                concat!("tdpbssd ", $c, ", ", $a, ", ", $b),
                a = in(reg) $levels.as_ptr(),
                a_row = in(reg) TILE_K,
                b = in(reg) $block.levels.as_ptr(),
                b_row = in(reg) 64usize,
                options(nostack, readonly),
            )
        }
    };
}

/// Stores tile `$c` into `$sums` (a [`Sums`]).
macro_rules! store_sums {
    ($c:literal, $sums:expr) => {
        // SAFETY: the tile is 16 rows of 64 bytes, all of `$sums`.
        unsafe {
            asm!(
                concat!("tilestored [{sums} + {row}], ", $c),
                sums = in(reg) $sums.0.as_mut_ptr(),
                row = in(reg) 64usize,
                options(nostack),
            )
        }
    };
}

/// The products of 16 activation rows (`levels`, `scales`: a row tile as [`TileRows::tile_levels`] and
/// [`TileRows::tile_scales`]) with a panel's 16 rows, `[row]` of 16 outputs. The K blocks alternate between two sets of
/// tiles: block `kb + 1` is multiplied while block `kb`'s sums are scaled into the accumulators.
///
/// # Safety
/// As [`tile_products`], with the tiles configured by it, and `levels`, `scales` and `panel` of the same K blocks.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile_dot(levels: &[i8], scales: &[f32], panel: &[TileBlock], sums: &mut Sums) -> [__m512; PANEL_ROWS] {
    let tile = PANEL_ROWS * TILE_K;
    let levels = levels.chunks_exact(tile);
    let scales = scales.chunks_exact(PANEL_ROWS);
    let mut acc = [_mm512_setzero_ps(); PANEL_ROWS];
    let mut blocks = panel.iter().zip(levels).zip(scales).enumerate().peekable();
    if let Some((_, ((block, levels), _))) = blocks.peek() {
        multiply_block!("tmm0", "tmm2", "tmm4", levels, block);
    }
    while let Some((kb, ((block, _), a_scales))) = blocks.next() {
        if let Some((_, ((next, levels), _))) = blocks.peek() {
            if kb % 2 == 0 {
                multiply_block!("tmm1", "tmm3", "tmm5", levels, next);
            } else {
                multiply_block!("tmm0", "tmm2", "tmm4", levels, next);
            }
        }
        if kb % 2 == 0 {
            store_sums!("tmm0", sums);
        } else {
            store_sums!("tmm1", sums);
        }
        // SAFETY: 16 readable floats; the unaligned load has no alignment requirement.
        let w_scales = unsafe { _mm512_loadu_ps(block.scales.as_ptr()) };
        for ((acc, sums), &a_scale) in acc.iter_mut().zip(&sums.0).zip(a_scales) {
            // SAFETY: as above, 16 readable i32s.
            let sums = unsafe { _mm512_loadu_si512(sums.as_ptr().cast()) };
            *acc = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(sums),
                _mm512_mul_ps(_mm512_set1_ps(a_scale), w_scales),
                *acc,
            );
        }
    }
    acc
}
