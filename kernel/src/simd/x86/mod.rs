//! x86-64 capability tokens and kernels.

#[macro_use]
mod int8;

pub mod amx;
pub mod avx2;
pub mod avx512;
pub mod float;
pub mod interleaved;

pub use amx::Amx;

/// Proof that the CPU supports AVX2, FMA and F16C (obtainable only through [`Avx2::detect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx2 {
    _private: (),
}

impl Avx2 {
    /// The token, if this CPU has AVX2, FMA and F16C.
    pub fn detect() -> Option<Self> {
        #[cfg(feature = "std")]
        let present = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        #[cfg(not(feature = "std"))]
        let present = cfg!(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ));
        present.then_some(Avx2 { _private: () })
    }
}

/// Whether the CPU's vendor string is Intel's.
fn is_intel() -> bool {
    // Leaf 0 (the highest leaf and the vendor) exists on every x86-64 CPU.
    let leaf = core::arch::x86_64::__cpuid(0);
    // The vendor string is EBX, EDX, ECX: "Genu", "ineI", "ntel".
    [leaf.ebx, leaf.edx, leaf.ecx] == [0x756e_6547, 0x4965_6e69, 0x6c65_746e]
}

/// Proof that the CPU supports everything [`Avx2`] stands for plus AVX-512 F, BW, VL and VNNI (obtainable only
/// through [`Avx512::detect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx512 {
    avx2: Avx2,
    prefetches: bool,
}

impl Avx512 {
    /// The token, if this CPU has AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI.
    pub fn detect() -> Option<Self> {
        let avx2 = Avx2::detect()?;
        #[cfg(feature = "std")]
        let present = std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni");
        #[cfg(not(feature = "std"))]
        let present = cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl",
            target_feature = "avx512vnni"
        ));
        present.then_some(Avx512 {
            avx2,
            prefetches: is_intel(),
        })
    }

    /// Whether the grouped kernels ask for weight lines ahead of the group block they read, when a call streams its
    /// groups from memory (a decode step). Measured both ways: on an Intel Xeon (2 threads, Qwen2.5-Coder Q4_K_M
    /// decode) 18.2–18.7 → 22.4–22.7 tokens/s with, on an AMD EPYC (one core, Q4_K) 23 → 12–14 GB/s: so on Intel only.
    pub fn prefetches_weights(self) -> bool {
        self.prefetches
    }

    /// The AVX2 token this CPU also has (for the kernels AVX-512 does not replace).
    pub fn avx2(self) -> Avx2 {
        self.avx2
    }
}
