#!/usr/bin/env bash
# Builds llama.cpp's command-line tools from the source vendored in the llama-cpp-python sdist on PyPI (the only
# place these machines can get it), for side-by-side comparisons and golden outputs. Not run by CI.
#
#   benches/llama-cpp/build.sh [DEST]      # default DEST: target/llama.cpp
#
# Afterwards the tools are in DEST/build/bin; run them with LD_LIBRARY_PATH=DEST/build/bin.
# Flags: GGML_NATIVE=OFF with each x86 extension switched on only when this CPU has it (an AVX-512 build dies with
# SIGILL on an AVX2-only machine). -march=native is avoided: its AMX path crashes on some VMs, and laptops have no
# AMX anyway. Takes about 10 minutes on 2 cores.
set -euo pipefail

VERSION=0.3.36
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="${1:-$ROOT/target/llama.cpp}"
mkdir -p "$DEST"
cd "$DEST"

# pip needs scikit-build-core and cmake to read the sdist's metadata, even just to download it.
python3 -m pip install --quiet scikit-build-core cmake ninja
if [ ! -d "llama_cpp_python-$VERSION" ]; then
    python3 -m pip download --quiet --no-deps --no-build-isolation --no-binary :all: "llama-cpp-python==$VERSION" -d .
    tar xzf "llama_cpp_python-$VERSION.tar.gz"
fi
SRC="$DEST/llama_cpp_python-$VERSION/vendor/llama.cpp"

# ON when /proc/cpuinfo lists the flag.
has() { grep -qw "$1" /proc/cpuinfo && echo ON || echo OFF; }
cmake -S "$SRC" -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
    -DGGML_AVX="$(has avx)" -DGGML_AVX2="$(has avx2)" -DGGML_FMA="$(has fma)" -DGGML_F16C="$(has f16c)" \
    -DGGML_BMI2="$(has bmi2)" -DGGML_AVX512="$(has avx512f)" -DGGML_AVX512_VBMI="$(has avx512vbmi)" \
    -DGGML_AVX512_VNNI="$(has avx512_vnni)" -DGGML_AVX512_BF16="$(has avx512_bf16)" -DGGML_AVX_VNNI="$(has avx_vnni)" \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DLLAMA_CURL=OFF
cmake --build build --target llama-bench llama-perplexity llama-tokenize llama-completion llama-quantize \
    llama-gguf-split test-quantize-fns
echo "llama.cpp tools: $DEST/build/bin (LD_LIBRARY_PATH=$DEST/build/bin)"
