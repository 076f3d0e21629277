//! GGML tensor element types: their numeric ids in GGUF files, names, and block layouts.
//!
//! Every quantized type stores elements in fixed-size blocks: `block_len` elements packed into `block_bytes` bytes.
//! A tensor row (`ne[0]` elements) must be a whole number of blocks. Plain types are blocks of one element.

use core::fmt;

macro_rules! ggml_types {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, $block_len:literal, $block_bytes:literal; )*) => {
        /// A tensor element type, numbered as GGML numbers it (the `type` field of a GGUF tensor info).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types)] // GGML's own spelling (Q4_K, IQ2_XXS) is what every user and tool knows.
        #[non_exhaustive]
        pub enum GgmlType {
            $( $(#[$doc])* $variant = $id, )*
        }

        impl GgmlType {
            /// Every type this crate knows, in id order.
            pub const ALL: &'static [GgmlType] = &[$(GgmlType::$variant),*];

            /// The type with GGML id `id`, if it is one this crate knows.
            pub const fn from_id(id: u32) -> Option<Self> {
                match id {
                    $( $id => Some(Self::$variant), )*
                    _ => None,
                }
            }

            /// GGML's name for the type, e.g. `"Q4_K"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => stringify!($variant), )*
                }
            }

            /// Elements per block (1 for plain types, 32 for the legacy quants, 256 for K-quants).
            pub const fn block_len(self) -> usize {
                match self {
                    $( Self::$variant => $block_len, )*
                }
            }

            /// Bytes per block.
            pub const fn block_bytes(self) -> usize {
                match self {
                    $( Self::$variant => $block_bytes, )*
                }
            }
        }
    };
}

ggml_types! {
    /// IEEE binary32.
    F32 = 0, 1, 4;
    /// IEEE binary16.
    F16 = 1, 1, 2;
    /// 4-bit, f16 scale per 32.
    Q4_0 = 2, 32, 18;
    /// 4-bit, f16 scale and min per 32.
    Q4_1 = 3, 32, 20;
    /// 5-bit, f16 scale per 32.
    Q5_0 = 6, 32, 22;
    /// 5-bit, f16 scale and min per 32.
    Q5_1 = 7, 32, 24;
    /// 8-bit, f16 scale per 32.
    Q8_0 = 8, 32, 34;
    /// 8-bit, f16 scale and f16 scaled sum per 32 (an activation type; never stored in model files).
    Q8_1 = 9, 32, 36;
    /// 2-bit K-quant super-block.
    Q2_K = 10, 256, 84;
    /// 3-bit K-quant super-block.
    Q3_K = 11, 256, 110;
    /// 4-bit K-quant super-block: 8 sub-blocks of 32 with 6-bit scales and mins.
    Q4_K = 12, 256, 144;
    /// 5-bit K-quant super-block.
    Q5_K = 13, 256, 176;
    /// 6-bit K-quant super-block: 16 sub-blocks of 16 with 8-bit scales.
    Q6_K = 14, 256, 210;
    /// 8-bit K-quant super-block with f32 scale and per-16 sums (the activation partner of the K-quants).
    Q8_K = 15, 256, 292;
    /// i-quant, 2.06 bits per weight.
    IQ2_XXS = 16, 256, 66;
    /// i-quant, 2.31 bits per weight.
    IQ2_XS = 17, 256, 74;
    /// i-quant, 3.06 bits per weight.
    IQ3_XXS = 18, 256, 98;
    /// i-quant, 1.56 bits per weight.
    IQ1_S = 19, 256, 50;
    /// 4-bit non-linear, per 32.
    IQ4_NL = 20, 32, 18;
    /// i-quant, 3.44 bits per weight.
    IQ3_S = 21, 256, 110;
    /// i-quant, 2.5 bits per weight.
    IQ2_S = 22, 256, 82;
    /// 4-bit non-linear super-block.
    IQ4_XS = 23, 256, 136;
    /// Signed 8-bit integer.
    I8 = 24, 1, 1;
    /// Signed 16-bit integer.
    I16 = 25, 1, 2;
    /// Signed 32-bit integer.
    I32 = 26, 1, 4;
    /// Signed 64-bit integer.
    I64 = 27, 1, 8;
    /// IEEE binary64.
    F64 = 28, 1, 8;
    /// i-quant, 1.75 bits per weight.
    IQ1_M = 29, 256, 56;
    /// bfloat16.
    BF16 = 30, 1, 2;
    /// Ternary, 1.69 bits per weight.
    TQ1_0 = 34, 256, 54;
    /// Ternary, 2.06 bits per weight.
    TQ2_0 = 35, 256, 66;
    /// Microscaling FP4 (e2m1 with a shared e8m0 scale per 32).
    MXFP4 = 39, 32, 17;
}

impl GgmlType {
    /// GGML's numeric id of the type.
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// The type named `name` (GGML spelling, ASCII case-insensitive: `q4_k` finds `Q4_K`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Bytes taken by `n_elems` elements, or `None` when `n_elems` is not a whole number of blocks or the size
    /// overflows `u64`.
    pub const fn bytes_for(self, n_elems: u64) -> Option<u64> {
        let block_len = self.block_len() as u64;
        if !n_elems.is_multiple_of(block_len) {
            return None;
        }
        (n_elems / block_len).checked_mul(self.block_bytes() as u64)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_names_are_unique() {
        for &t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(GgmlType::from_name(&t.name().to_ascii_lowercase()), Some(t));
            assert!(t.block_bytes() > 0 && t.block_len() > 0);
        }
        // Ids 4 and 5 (removed Q4_2/Q4_3) are not types any more.
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(5), None);
    }

    #[test]
    fn byte_sizes_follow_blocks() {
        assert_eq!(GgmlType::Q4_K.bytes_for(1536 * 256), Some(1536 * 144));
        assert_eq!(GgmlType::Q4_K.bytes_for(100), None);
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
        assert_eq!(GgmlType::Q8_0.bytes_for(64), Some(68));
    }
}
