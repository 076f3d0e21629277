#!/usr/bin/env python3
"""Writes testdata/tokenizer/corpus.json: 240 strings that stress tokenizers — code in several languages, Unicode,
whitespace runs, digits, special tokens, chat-formatted text. Deterministic (fixed seed); standard library only.

    python3 testdata/tokenizer/make_corpus.py
"""
import json
import os
import random

SNIPPETS = [
    "def reverse(s: str) -> str:\n    return s[::-1]\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}\n",
    "const add = (a, b) => a + b;\nconsole.log(`sum=${add(2, 3)}`);\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hello, 世界\")\n}\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }\n",
    "public class Hello {\n  public static void main(String[] args) { System.out.println(\"hi\"); }\n}\n",
    "SELECT id, name FROM users WHERE age >= 21 ORDER BY name DESC LIMIT 10;",
    "<div class=\"app\"><p>Hello &amp; welcome</p></div>",
    "for f in *.txt; do echo \"$f\"; done 2>/dev/null | sort -u",
    "    if (x != nullptr && x->next) { x = x->next; }\r\n",
    "import numpy as np\nA = np.zeros((3, 3), dtype=np.float32)\nA[1, :] += 1e-3\n",
    "let mut map: HashMap<&str, i64> = HashMap::new(); map.insert(\"k\", -9_223_372_036_854_775_808);",
    "class Foo(Base):\n    '''Docstring with 'quotes' and \"double\".'''\n    x: int = 0\n",
    "// TODO(alice): handle the edge-case where n == 0\n/* block\n   comment */",
    "{\"name\": \"hearth\", \"version\": \"0.1.0\", \"tags\": [\"ai\", \"local\"]}",
    "x = [i**2 for i in range(100) if i % 3 == 0]  # squares",
    "template <typename T> T max(T a, T b) { return a > b ? a : b; }",
    "$ cargo test --workspace -- --nocapture",
    "@decorator(arg=1)\nasync def fetch(url):\n    async with session.get(url) as r:\n        return await r.text()\n",
    "match x { Some(v) if v > 0 => v, _ => 0 }",
]
UNICODE = [
    "héllo wörld", "naïve café résumé", "Ελληνικά κείμενα", "Русский текст", "中文文本，包括标点。", "日本語のテキスト",
    "한국어 텍스트", "العربية نص", "עברית", "हिन्दी पाठ", "😀🚀👍🏽 emoji", "e\u0301 combining", "zero\u200bwidth",
    "ﬁ ligature", "Ⅻ roman", "½ ¾ ⅞", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "tab\tand\u00a0nbsp", "ß ẞ İ ı", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
            "<|file_sep|>", "<|repo_name|>", "<s>", "</s>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"]
WORDS = ["the", "model", "reads", "files", "quickly", "CPU", "laptop", "token", "café", "x1", "42", "don't", "it's",
         "they're", "I'll", "we've", "HTTP", "JSONParser", "snake_case", "camelCase", "  ", "\n", "\t", "...", "!!", "?"]


def main():
    rng = random.Random(20261123)
    corpus = []
    corpus += SNIPPETS
    corpus += UNICODE
    corpus += [" ", "  ", "\n", "\n\n\n", " \n ", "\t\t", "\r\n", "a  b   c    d", "trailing   ", "   leading",
               "12345678901234567890", "3.14159 2.71828 -0.5e10", "1,000,000 and 1.000.000", "0x1F 0b1010 0o17"]
    corpus += [f"{s}" for s in SPECIALS]
    corpus += [f"text {a} middle {b} end" for a, b in zip(SPECIALS, reversed(SPECIALS))]
    for q, a in [("What is 2+2?", "4"), ("Write a haiku about CPUs.", "Silicon hums low"), ("¿Qué tal?", "Bien.")]:
        corpus.append(f"<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n")
        corpus.append(f"<start_of_turn>user\n{q}<end_of_turn>\n<start_of_turn>model\n{a}<end_of_turn>\n")
    corpus.append("<|fim_prefix|>def f(x):\n    <|fim_suffix|>\n    return y<|fim_middle|>")
    corpus.append("<|repo_name|>hearth\n<|file_sep|>src/main.rs\nfn main() {}\n")
    # Random mixtures up to 240 strings.
    pool = SNIPPETS + UNICODE + SPECIALS + WORDS
    while len(corpus) < 240:
        k = rng.randint(2, 8)
        parts = [rng.choice(pool) for _ in range(k)]
        corpus.append(rng.choice(["", " ", "\n", "  "]).join(parts))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(corpus, f, ensure_ascii=False, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()
