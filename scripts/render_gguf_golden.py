#!/usr/bin/env python3
"""Renders crates/preprocess/tests/golden/smollm2_gguf.json: what Python `transformers` makes of
the tokenizer and chat template inside a GGUF file (SmolLM2-135M-Instruct, fetched by
scripts/fetch-test-models.sh), for the Rust test crates/preprocess/tests/gguf_golden.rs.

transformers builds the tokenizer from the GGUF metadata itself
(`AutoTokenizer.from_pretrained(dir, gguf_file=...)`, its GGUF conversion); every expected id
list is what that tokenizer returns, every expected string what its `apply_chat_template`
renders. Run by hand after changing a case (the golden is committed; the test never runs
Python). transformers' GGUF reader imports torch:

    scripts/fetch-test-models.sh smollm2
    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf transformers jinja2 torch
    /tmp/gguf-venv/bin/python scripts/render_gguf_golden.py
"""

import json
import sys
from pathlib import Path

import gguf
import jinja2
import tokenizers
import transformers
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render_golden  # noqa: E402  (the shared conversations, texts and renderers)

FOLDER = render_golden.MODELS / "smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Mixed text on top of render_golden.ENCODE_TEXTS: digit runs, whitespace runs, unicode, code,
# special tokens written inside text.
EXTRA_TEXTS = [
    "1 12 123 1234 12345 123456 1234567 0.5 -42 +3e10 0x1F 007",
    "tabs\t\t\tand\u00a0non-breaking\u2003em spaces\u3000ideographic",
    "     five leading spaces",
    "trailing newlines\n\n\n\n",
    "\r\nwindows\r\nline\r\nends\r\n",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more<|im_end|>",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{v:?}\");\n}\n",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%ann%';",
    "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
    "Ünïcödé — “smart quotes” ‘single’ … ½ ¼ ™ © ®",
    "🇫🇷🇩🇪 flags, 🧑🏽‍💻 zwj, é vs e\u0301 combining",
    "ไทย हिन्दी বাংলা தமிழ் ქართული Հայերեն",
    "I'm you're he's they'll we'd it's CAN'T",
    "https://example.com/path?query=1&b=2#frag user@example.org",
    "a" * 50 + " " + "ab" * 30,
]


def smollm2_cases():
    system_variants = [
        render_golden.case(
            "long_system_prompt",
            [
                {"role": "system", "content": "You are a careful assistant. " * 8},
                render_golden.USER,
            ],
        ),
    ]
    return render_golden.common_cases() + system_variants


def main():
    tok = AutoTokenizer.from_pretrained(str(FOLDER), gguf_file=GGUF_FILE)
    raw = tok.backend_tokenizer
    rendered = [render_golden.run_template(tok, None, c) for c in smollm2_cases()]
    prompts = [c["expected"] for c in rendered if c["name"] in ("system_user", "multi_turn") and "expected" in c]
    render_golden.ENCODE_TEXTS.extend(EXTRA_TEXTS)
    golden = {
        "model": "smollm2",
        "gguf_file": GGUF_FILE,
        "generated_by": {
            "transformers": transformers.__version__,
            "jinja2": jinja2.__version__,
            "tokenizers": tokenizers.__version__,
            "gguf": gguf.__version__ if hasattr(gguf, "__version__") else "unknown",
        },
        "special_tokens": tok.special_tokens_map,
        "eos_token_id": tok.eos_token_id,
        "vocab_size": len(tok),
        "cases": rendered,
        "encodings": render_golden.encodings(tok, raw, prompts),
    }
    out = render_golden.OUT / "smollm2_gguf.json"
    out.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(rendered)} cases, {len(golden['encodings'])} encodings)")


if __name__ == "__main__":
    main()
