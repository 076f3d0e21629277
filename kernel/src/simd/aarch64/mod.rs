//! AArch64 capability tokens and kernels.

pub mod float;
pub mod neon;

/// Proof that the CPU supports Advanced SIMD (NEON), part of every AArch64 CPU's baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neon {
    _private: (),
}

impl Neon {
    /// The token, if this CPU has NEON (always, on AArch64 targets with the `neon` baseline feature).
    pub fn detect() -> Option<Self> {
        #[cfg(feature = "std")]
        let present = std::arch::is_aarch64_feature_detected!("neon");
        #[cfg(not(feature = "std"))]
        let present = cfg!(target_feature = "neon");
        present.then_some(Neon { _private: () })
    }
}
