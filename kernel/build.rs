//! Defines `hearth_x86_simd` when the target is x86-64 with SSE2 in its baseline. Soft-float x86-64 targets (such as
//! `x86_64-unknown-none`) cannot compile vector code, so they get the scalar kernels only.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hearth_x86_simd)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if arch == "x86_64" && features.split(',').any(|f| f == "sse2") {
        println!("cargo::rustc-cfg=hearth_x86_simd");
    }
}
