#!/usr/bin/env python3
"""Regenerate the GGUF reference fixtures under crates/models/tests/fixtures/.

The Rust GGUF reader (crates/models/src/gguf.rs) is tested against independent references:

  gguf_dequant.json
      Seeded random blocks of every dequantized ggml type (with finite f16 scales written into
      the scale fields) and gguf-py's `gguf.quants.dequantize` of them.
  smollm2_real_tensors.json
      Values at fixed positions (plus float64 sums over every element) of tensors of the real
      SmolLM2-135M-Instruct Q4_1 GGUF, dequantized by gguf-py.
  smollm2_tokenizer_ids.json
      Token ids that transformers (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`) gives
      for a set of strings with the tokenizer built from the same GGUF.
  spm_tiny.gguf, spm_tiny_ids.json
      A small SentencePiece BPE model (byte fallback) trained here, written as a GGUF the way
      llama.cpp's converter writes Llama 2 vocabularies (written by gguf-py's GGUFWriter, no
      tensors), and the ids sentencepiece itself gives for a set of strings.

Needs numpy, gguf, sentencepiece and transformers (the last only for the real-file fixtures):

    python -m venv /tmp/refenv && /tmp/refenv/bin/pip install numpy gguf sentencepiece transformers
    /tmp/refenv/bin/python scripts/make_gguf_fixtures.py

The real file is looked up like scripts/fetch-assets.sh puts it: $RADIT_ASSETS, else
${XDG_CACHE_HOME:-~/.cache}/radit/assets. Pass --synthetic-only to skip it.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.quants import dequantize

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates" / "models" / "tests" / "fixtures"
GGUF_NAME = "SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf"

# (type, number of blocks, block bytes, [(byte offset of an f16 scale field, kind)])
# Kinds choose the value range: "d" a signed scale, "pos" a positive one, "min" an offset.
QUANT_CASES = [
    (T.Q4_0, 6, 18, [(0, "d")]),
    (T.Q4_1, 6, 20, [(0, "pos"), (2, "min")]),
    (T.Q8_0, 6, 34, [(0, "d")]),
    (T.Q4_K, 3, 144, [(0, "pos"), (2, "pos")]),
    (T.Q6_K, 3, 210, [(208, "d")]),
]

# Values that exercise the f16 conversion: zero, negative zero, the smallest subnormal, the
# largest subnormal, the smallest normal, and the largest finite value.
EDGE_F16 = np.array([0.0, -0.0, 2.0**-24, 6.097555e-05, 2.0**-14, 65504.0], dtype=np.float16)


def f16_scale(rng, kind):
    if kind == "d":
        v = rng.uniform(-0.05, 0.05)
    elif kind == "pos":
        v = rng.uniform(0.0, 0.05)
    else:
        v = rng.uniform(-0.5, 0.5)
    return np.float16(v)


def quant_case(rng, qtype, n_blocks, block_bytes, scales):
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for b in range(n_blocks):
        for offset, kind in scales:
            # The first blocks get edge-case scales: the conversion of a subnormal or zero
            # scale is where a hand-written f16 decoder goes wrong.
            if b % 2 == 1 and kind != "min":
                v = EDGE_F16[[2, 3, 5, 4, 1][(b // 2) % 5]]
            else:
                v = f16_scale(rng, kind)
            raw[b, offset : offset + 2] = np.frombuffer(np.float16(v).tobytes(), dtype=np.uint8)
    expected = dequantize(raw, qtype).astype(np.float32).reshape(-1)
    assert expected.size == n_blocks * {T.Q4_K: 256, T.Q6_K: 256}.get(qtype, 32)
    assert np.all(np.isfinite(expected))
    return raw.reshape(-1), expected


def float_case(rng, qtype, n):
    values = rng.normal(0.0, 2.0, size=n).astype(np.float32)
    if qtype == T.F16:
        values = np.concatenate([EDGE_F16, values.astype(np.float16)])
        raw = values.view(np.uint8)
    elif qtype == T.BF16:
        # bf16 is the top half of an f32: take random f32s and keep their high 16 bits.
        edge = np.array([0.0, -0.0, 1e-40, 3.0e38, -1.5], dtype=np.float32)
        bits = (np.concatenate([edge, values]).view(np.uint32) >> 16).astype(np.uint16)
        raw = bits.view(np.uint8)
    else:
        raw = values.view(np.uint8)
    expected = dequantize(raw, qtype).astype(np.float32).reshape(-1)
    assert np.all(np.isfinite(expected))
    return raw, expected


def floats(a):
    # float32 -> Python float is exact and repr round-trips, so Rust parses back the same f32.
    return [float(x) for x in np.asarray(a, dtype=np.float32)]


def make_dequant_fixture():
    rng = np.random.default_rng(20240607)
    cases = []
    for qtype, n_blocks, block_bytes, scales in QUANT_CASES:
        raw, expected = quant_case(rng, qtype, n_blocks, block_bytes, scales)
        cases.append((qtype, raw, expected))
    for qtype in (T.F32, T.F16, T.BF16):
        raw, expected = float_case(rng, qtype, 64)
        cases.append((qtype, raw, expected))
    out = {
        "generator": "scripts/make_gguf_fixtures.py (gguf-py gguf.quants.dequantize)",
        "cases": [
            {
                "type": q.name,
                "type_id": int(q.value),
                "n_elements": int(e.size),
                "hex": bytes(np.ascontiguousarray(r)).hex(),
                "expected": floats(e),
            }
            for q, r, e in cases
        ],
    }
    write(FIXTURES / "gguf_dequant.json", out)


def assets_dir():
    if os.environ.get("RADIT_ASSETS"):
        return Path(os.environ["RADIT_ASSETS"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "radit" / "assets"


def make_real_tensor_fixture(path):
    reader = GGUFReader(str(path))
    by_name = {t.name: t for t in reader.tensors}
    rng = np.random.default_rng(7)
    out = {"file": GGUF_NAME, "tensors": []}
    for name in ["token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight", "output_norm.weight"]:
        t = by_name[name]
        values = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        n = values.size
        picks = sorted(set(range(16)) | set(range(n - 16, n)) | set(int(i) for i in rng.integers(0, n, size=200)))
        out["tensors"].append(
            {
                "name": name,
                "type": t.tensor_type.name,
                # gguf-py lists GGUF's dims (fastest first); PyTorch order is the reverse.
                "shape": [int(d) for d in reversed(t.shape.tolist())],
                "indices": picks,
                "values": floats(values[picks]),
                "sum": float(values.astype(np.float64).sum()),
                "abs_sum": float(np.abs(values.astype(np.float64)).sum()),
            }
        )
    write(FIXTURES / "smollm2_real_tensors.json", out)


TOKENIZER_STRINGS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "12345 apples and 678 oranges cost $9.99 (in 2024).",
    "naïve café 東京 — Ünïcödé, emoji 🙂 and Ελληνικά",
    "line one\nline two\n\n\tindented\r\nwindows",
    "   leading and trailing spaces   ",
    "It's, we're, they'll, I'd, you've -- contractions?!",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "def f(x):\n    return x**2 + 3.14159  # comment",
    "https://example.com/path?query=1&b=2",
    "",
]


def make_tokenizer_fixture(path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    reader = GGUFReader(str(path))
    pre = reader.fields["tokenizer.ggml.pre"].contents()
    cases = []
    for text in TOKENIZER_STRINGS:
        ids = tok.encode(text, add_special_tokens=False)
        # The file sets add_bos_token false, so encode adds nothing either way; record both to
        # catch a change.
        with_specials = tok.encode(text, add_special_tokens=True)
        cases.append({"text": text, "ids": ids, "ids_with_special_tokens": with_specials})
    import transformers

    out = {
        "file": GGUF_NAME,
        "generator": f"transformers {transformers.__version__} AutoTokenizer(gguf_file=...)",
        "tokenizer_ggml_pre": pre,
        "cases": cases,
    }
    write(FIXTURES / "smollm2_tokenizer_ids.json", out)


SPM_STRINGS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "12345 apples cost $9.99",
    "naïve café 東京 🙂",
    "  two leading spaces, and  two inside",
    "line one\nline two\ttab",
    "zzzz qqqq xylophone",
]


def make_spm_fixture():
    import io

    import sentencepiece as spm
    from gguf import GGUFWriter, TokenType

    # Train on this script's own text: deterministic and needs no download.
    corpus = Path(__file__).read_text(encoding="utf-8").splitlines()
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=proto,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        # Llama 2's settings: no normalization, whitespace kept, digits split.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        # As llama.cpp's convert_hf_to_gguf.py (_create_vocab_sentencepiece).
        if sp.is_unknown(i):
            types.append(TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(TokenType.CONTROL)
        elif sp.is_unused(i):
            types.append(TokenType.UNUSED)
        elif sp.is_byte(i):
            types.append(TokenType.BYTE)
        else:
            types.append(TokenType.NORMAL)
    path = FIXTURES / "spm_tiny.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")
    cases = [{"text": t, "ids": sp.encode(t), "pieces": sp.encode(t, out_type=str)} for t in SPM_STRINGS]
    write(FIXTURES / "spm_tiny_ids.json", {"generator": f"sentencepiece {spm.__version__}", "cases": cases})


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, ensure_ascii=False, indent=None, separators=(",", ":"))
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({len(text.encode()) // 1024} KiB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthetic-only", action="store_true", help="skip the real-file fixtures")
    args = ap.parse_args()
    make_dequant_fixture()
    make_spm_fixture()
    if args.synthetic_only:
        return
    path = assets_dir() / GGUF_NAME
    if not path.exists():
        sys.exit(f"{path} not found: run scripts/fetch-assets.sh, or pass --synthetic-only")
    make_real_tensor_fixture(path)
    make_tokenizer_fixture(path)


if __name__ == "__main__":
    main()
