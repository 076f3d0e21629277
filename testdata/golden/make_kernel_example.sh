#!/usr/bin/env bash
# Golden for the kernel example (kernel/examples/embed.rs): llama.cpp's tokenization of a chat prompt for SmolLM2 and
# its greedy answer, from the tools built by benches/llama-cpp/build.sh.
#   testdata/golden/make_kernel_example.sh LLAMA_BIN_DIR > testdata/golden/kernel-example.json
set -euo pipefail
BIN="$1"
export LD_LIBRARY_PATH="$BIN"
MODEL="$(cargo run -q -p hearth -- models path smollm2-135m-instruct)"
PROMPT=$'<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n'
IDS="$("$BIN/llama-tokenize" -m "$MODEL" -p "$PROMPT" --ids --log-disable 2>/dev/null | tail -1)"
# Greedy, 2 threads; llama-completion echoes the prompt (special tokens rendered as nothing) and stops at EOS.
OUT="$("$BIN/llama-completion" -m "$MODEL" -p "$PROMPT" -n 24 --temp 0 -no-cnv -t 2 2>/dev/null)"
ANSWER="${OUT##*assistant$'\n'}"
ANSWER="${ANSWER% \[end of text\]*}"
python3 -c 'import json,sys; print(json.dumps({"model": "smollm2-135m-instruct", "prompt": sys.argv[1], "prompt_ids": json.loads(sys.argv[2]), "llama_cpp_greedy_text": sys.argv[3]}, indent=1))' "$PROMPT" "$IDS" "$ANSWER"
