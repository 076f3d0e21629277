"""Makes testdata/peft/smollm2/: a LoRA adapter trained-looking by Hugging Face PEFT on SmolLM2-135M, and the logits
PyTorch + PEFT compute with and without it, for runtime/tests/peft.rs.

    python3 -m venv /tmp/peftenv && /tmp/peftenv/bin/pip install torch transformers peft gguf safetensors
    hearth quantize smollm2-135m-instruct /tmp/smollm2-135m-instruct.f16.gguf -t f16 --allow-requantize
    /tmp/peftenv/bin/python testdata/peft/make_fixture.py /tmp/smollm2-135m-instruct.f16.gguf

transformers reads the same GGUF file hearth does (dequantized to float32, with the llama Q/K rows put back into
Hugging Face's order), so both sides start from identical weights; F16, so that hearth does not quantize
activations as it does for quantized weights (see the test). The adapter exercises what an import must get
right: all seven projections, a rank and an alpha that differ per module (rank_pattern, alpha_pattern), rsLoRA
scaling, and Q/K rows on an architecture whose GGUF RoPE layout differs from Hugging Face's.
"""

import json
import pathlib
import sys

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPT = '''def fibonacci(n: int) -> list[int]:
    """The first n Fibonacci numbers."""
    numbers = [0, 1]
    while len(numbers) < n:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers[:n]
'''
# Positions at the end of the prompt whose logits are recorded, and how many token ids per position.
LAST_POSITIONS = 3
TOP = 8
RANDOM = 8


def main() -> None:
    gguf = pathlib.Path(sys.argv[1]).resolve()
    out = pathlib.Path(__file__).resolve().parent / "smollm2"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LoraConfig(
        r=2,
        lora_alpha=6,
        use_rslora=True,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        layers_to_transform=[1, 29],
        rank_pattern={"down_proj": 3},
        alpha_pattern={"v_proj": 2},
        # Random A and B (PEFT's default starts B at zero, which would make the adapter a no-op).
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config).eval()
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                # nn.Linear's initialisation of B is large for a rank this small; a trained adapter moves less.
                parameter.mul_(0.1)
    ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    batch = torch.tensor([ids])
    with torch.no_grad():
        adapted = peft_model(batch).logits[0, -LAST_POSITIONS:]
        with peft_model.disable_adapter():
            base = peft_model(batch).logits[0, -LAST_POSITIONS:]
    generator = torch.Generator().manual_seed(1)
    positions = []
    for row in range(LAST_POSITIONS):
        chosen = set(adapted[row].topk(TOP).indices.tolist()) | set(base[row].topk(TOP).indices.tolist())
        chosen |= set(torch.randint(0, adapted.shape[1], (RANDOM,), generator=generator).tolist())
        positions.append(
            [{"id": i, "base": round(base[row, i].item(), 5), "adapted": round(adapted[row, i].item(), 5)} for i in sorted(chosen)]
        )
    # PEFT records the directory the model came from; name the file instead, not this machine's path.
    peft_model.peft_config["default"].base_model_name_or_path = gguf.name
    peft_model.save_pretrained(out)
    (out / "README.md").unlink(missing_ok=True)
    reference = {
        "made_by": "testdata/peft/make_fixture.py with torch %s, transformers %s, peft %s"
        % (torch.__version__, __import__("transformers").__version__, __import__("peft").__version__),
        "model": gguf.name,
        "ids": ids,
        "positions": positions,
    }
    (out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
