//! x86-64 capability tokens and kernels.

pub mod avx2;
pub mod float;

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
