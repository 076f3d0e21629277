"""LoRA training throughput and peak memory: hearth train against PyTorch + PEFT, side by side on this machine.

Both train the same model file (transformers dequantizes the GGUF to float32; hearth keeps it quantized), on the same
text, with the same shape of step: one example of SEQ_LEN predicted tokens per optimizer step, LoRA rank 8, alpha 16
on all seven projections, AdamW, the same thread count; with and without gradient checkpointing. Each run is its own
process, so its peak RSS is its own.

    python3 -m venv /tmp/peftenv && /tmp/peftenv/bin/pip install torch transformers peft gguf
    cargo build --release -p hearth
    /tmp/peftenv/bin/python benches/peft/train_anchor.py -m smollm2-135m-instruct --steps 3
    /tmp/peftenv/bin/python benches/peft/train_anchor.py -m qwen2.5-coder-1.5b-instruct --steps 2

Tokens/s: predicted tokens over the wall time of the steps. PyTorch's first step (allocator and kernel warm-up) is
run but not timed; hearth's report includes its first step, so the comparison leans towards PyTorch.
"""

import argparse
import json
import pathlib
import re
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEXT = ROOT / "testdata/perplexity/textwrap.py.txt"
HEARTH = ROOT / "target/release/hearth"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def pytorch_child(gguf: pathlib.Path, seq_len: int, steps: int, threads: int, checkpointing: bool) -> dict:
    """Trains in this process and reports tokens/s and this process's peak RSS."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    ids = tokenizer(TEXT.read_text(), add_special_tokens=False)["input_ids"]
    windows = [ids[i : i + seq_len + 1] for i in range(0, len(ids) - seq_len - 1, seq_len)]
    assert len(windows) > steps, "the text is too short for this many steps"
    timed = 0.0
    for step in range(steps + 1):
        batch = torch.tensor([windows[step]])
        start = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss  # labels are shifted inside: seq_len predicted tokens
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step > 0:
            timed += time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"tokens_per_s": steps * seq_len / timed, "peak_bytes": peak, "loss": loss.item()}


def pytorch(gguf, seq_len, steps, threads, checkpointing) -> dict:
    args = [sys.executable, __file__, "--child", str(gguf), str(seq_len), str(steps), str(threads)]
    args += ["--checkpointing"] if checkpointing else []
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def hearth(model: str, seq_len, steps, threads, checkpointing) -> dict:
    args = [str(HEARTH), "train", "-m", model, "--data", str(TEXT), "-o", "/tmp/train_anchor.gguf"]
    args += ["--seq-len", str(seq_len), "--grad-accum", "1", "--max-steps", str(steps), "--held-out", "0"]
    args += ["--rank", "8", "--alpha", "16", "--targets", "q,k,v,o,gate,up,down", "--threads", str(threads)]
    args += [] if checkpointing else ["--no-grad-checkpointing"]
    err = subprocess.run(args, check=True, capture_output=True, text=True).stderr
    found = re.search(r"\(([\d.]+) tokens/s\), peak memory (\d+) MiB", err)
    assert found, err
    return {"tokens_per_s": float(found[1]), "peak_bytes": int(found[2]) << 20}


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        gguf, seq_len, steps, threads = pathlib.Path(sys.argv[2]), *map(int, sys.argv[3:6])
        print(json.dumps(pytorch_child(gguf, seq_len, steps, threads, "--checkpointing" in sys.argv)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-m", "--model", default="smollm2-135m-instruct", help="a known model name or a .gguf path")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    path = subprocess.run([str(HEARTH), "models", "path", args.model], check=True, capture_output=True, text=True)
    gguf = pathlib.Path(path.stdout.strip())
    print(f"{gguf.name}: seq-len {args.seq_len}, {args.steps} steps, rank 8, all projections, {args.threads} threads")
    print("| trainer | gradient checkpointing | tokens/s | peak RSS |")
    print("|---|---|---:|---:|")
    results = {}
    for checkpointing in (True, False):
        for name, run in (("PyTorch + PEFT (f32)", pytorch), ("hearth", hearth)):
            spec = gguf if run is pytorch else args.model
            r = results[(name, checkpointing)] = run(spec, args.seq_len, args.steps, args.threads, checkpointing)
            mode = "on" if checkpointing else "off"
            print(f"| {name} | {mode} | {r['tokens_per_s']:.1f} | {r['peak_bytes'] / 2**20:,.0f} MiB |", flush=True)
    for checkpointing in (True, False):
        h, p = results[("hearth", checkpointing)], results[("PyTorch + PEFT (f32)", checkpointing)]
        print(
            f"checkpointing {'on' if checkpointing else 'off'}: hearth / PyTorch tokens/s "
            f"{h['tokens_per_s'] / p['tokens_per_s']:.2f}×, peak RSS {h['peak_bytes'] / p['peak_bytes']:.2f}×"
        )


if __name__ == "__main__":
    main()
