#!/usr/bin/env python3
"""Generate reference fixtures for the `radit-models` crate (crates/models/tests/fixtures/).

The Rust tests compare radit's burn implementations of the Llama-family decoder
(SmolLM2-135M-Instruct, GGUF Q4_1) and the BERT-family encoder (all-MiniLM-L6-v2)
against values produced here with an independent implementation: PyTorch + Hugging
Face transformers, float32, eager attention, on the same real weights.

This is run once by a developer (not by CI); its outputs are committed.

Setup (any Python >= 3.10):

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install numpy gguf safetensors tokenizers transformers torch \
        sentencepiece protobuf accelerate
    # optional, only for an extra cross-check of the MiniLM embeddings:
    /tmp/refenv/bin/pip install sentence-transformers
    scripts/fetch-assets.sh          # downloads the real weights into the asset cache

Run (from the repository root):

    HF_HUB_OFFLINE=1 /tmp/refenv/bin/python scripts/make_model_fixtures.py

Assets are read from $RADIT_ASSETS (default ~/.cache/radit/assets), the same place
scripts/fetch-assets.sh writes them. Nothing is downloaded: models load from local files.

Files written (each records a "reference" field with library versions and this command):
  minilm_embeddings.json  BERT: input ids, mean-pooled + L2-normalised embeddings, CLS
                          vectors, and the same embeddings computed in one padded batch.
  smollm2_logits.json     Llama: input ids, last-position logits at a fixed set of vocab
                          indices, argmax, and per-position max logits for one prompt.
  smollm2_greedy.json     Llama: 32 greedy tokens (plain argmax, no EOS stop) for 2 prompts.
  smollm2_dequant.json    only with --with-dequant: GGUF dequantisation spot values (Q8_0,
                          Q4_1) in GGUF's own layout. The checks behind it always run: an
                          independent numpy Q8_0/Q4_1 decoder == gguf-py == the weights
                          transformers loaded, and transformers' q/k un-permutation is the
                          inverse of llama.cpp's rope permutation.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "crates" / "models" / "tests" / "fixtures"
ASSETS = Path(
    os.environ.get("RADIT_ASSETS")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "radit" / "assets"
).expanduser()

MINILM_DIR = ASSETS / "all-MiniLM-L6-v2"
SMOL_DIR = ASSETS / "SmolLM2-135M-Instruct-GGUF"
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

MINILM_MAX_LEN = 256  # sentence_bert_config.json max_seq_length

MINILM_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "Rust's ownership model guarantees memory safety without a garbage collector, "
    "which makes it attractive for systems programming where predictable performance "
    "matters; however, the borrow checker can feel strict to newcomers, and learning "
    "to structure programs around lifetimes, traits and explicit error handling takes "
    "practice before it becomes second nature to most developers.",
    "Café prices rose 12.5% in 2023 — naïve estimates said €3.40; see https://example.com/q?id=42 (!)",
    "What is the capital of France?",
    "SENTENCE EMBEDDINGS map text to dense vectors",
]

SMOL_PLAIN = "The capital of France is"
SMOL_QUESTION = "What is 12 + 35? The answer is"
SMOL_CHAT_USER = "What is the tallest mountain in the world?"
SMOL_LONG = (
    "Once upon a time, in a small village nestled between rolling green hills and a "
    "wide, slow river, there lived an old clockmaker named Elias. Every morning he "
    "opened the wooden shutters of his shop, wound the dozens of clocks that lined the "
    "walls, and listened carefully to their ticking. The villagers said he could tell "
    "the weather, the season, and even the mood of his neighbours just from the sound "
    "of the pendulums. One winter evening, a stranger arrived at his door carrying a"
)

N_GREEDY = 32
DEQUANT_VALUES = 96  # leading values of each spot-checked dequantised row (3 blocks of 32)


def fmt_float(x: float) -> float:
    """Round-trippable float32 value as a Python float (json writes repr)."""
    x = float(np.float32(x))
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x}")
    return x


def floats(t) -> list[float]:
    return [fmt_float(v) for v in np.asarray(t, dtype=np.float32).reshape(-1).tolist()]


def reference(extra: dict | None = None) -> dict:
    import gguf
    import tokenizers

    try:
        from importlib.metadata import version

        gguf_version = version("gguf")
    except Exception:  # pragma: no cover
        gguf_version = getattr(gguf, "__version__", "unknown")
    ref = {
        "implementation": "PyTorch + Hugging Face transformers, float32, eager attention, no_grad, CPU",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "gguf": gguf_version,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "command": "HF_HUB_OFFLINE=1 python scripts/make_model_fixtures.py"
        + ("" if len(sys.argv) == 1 else " " + shlex.join(sys.argv[1:])),
        "script": "scripts/make_model_fixtures.py",
    }
    if extra:
        ref.update(extra)
    return ref


def write_json(name: str, obj: dict) -> Path:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / name
    # one top-level key per line keeps diffs readable without blowing up the size
    dump = lambda v: json.dumps(v, ensure_ascii=False, allow_nan=False, separators=(",", ":"))  # noqa: E731
    text = "{\n" + ",\n".join(f"{dump(k)}:{dump(v)}" for k, v in obj.items()) + "\n}\n"
    json.loads(text)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size / 1024:.1f} KiB)")
    return path


# --------------------------------------------------------------------------- MiniLM


def mean_pool_normalize(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * m).sum(dim=1)
    counts = m.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed / counts, p=2, dim=1)


def make_minilm() -> None:
    print(f"MiniLM from {MINILM_DIR}")
    tok = AutoTokenizer.from_pretrained(MINILM_DIR)
    model = AutoModel.from_pretrained(MINILM_DIR, dtype=torch.float32, attn_implementation="eager")
    model.eval()

    input_ids, mean_norm, cls = [], [], []
    with torch.no_grad():
        for s in MINILM_SENTENCES:
            enc = tok(s, add_special_tokens=True, truncation=True, max_length=MINILM_MAX_LEN,
                      return_tensors="pt")
            ids = enc["input_ids"]
            assert ids.shape[1] < MINILM_MAX_LEN, "sentence was truncated"
            out = model(**enc).last_hidden_state
            input_ids.append(ids[0].tolist())
            mean_norm.append(mean_pool_normalize(out, enc["attention_mask"])[0])
            cls.append(out[0, 0])

        # One right-padded batch with an attention mask.
        tok.padding_side = "right"
        benc = tok(MINILM_SENTENCES, add_special_tokens=True, truncation=True,
                   max_length=MINILM_MAX_LEN, padding=True, return_tensors="pt")
        for i, ids in enumerate(input_ids):
            assert benc["input_ids"][i, : len(ids)].tolist() == ids
            assert benc["attention_mask"][i].sum().item() == len(ids)
        bout = model(**benc).last_hidden_state
        batch_mean_norm = mean_pool_normalize(bout, benc["attention_mask"])

    single = torch.stack(mean_norm)
    d_batch = (single - batch_mean_norm).abs().max().item()
    print(f"  max |single - padded batch| = {d_batch:.3e}")
    assert d_batch < 1e-5, d_batch
    norms = single.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)

    cross = {"sentence_transformers": None}
    try:
        from sentence_transformers import SentenceTransformer  # optional

        st = SentenceTransformer(str(MINILM_DIR), device="cpu")
        st_emb = torch.from_numpy(st.encode(MINILM_SENTENCES, convert_to_numpy=True,
                                            normalize_embeddings=False))
        d_st = (st_emb - single).abs().max().item()
        import sentence_transformers

        print(f"  sentence-transformers {sentence_transformers.__version__}: max |Δ| = {d_st:.3e}")
        assert d_st < 1e-5, f"sentence-transformers disagrees: {d_st}"
        cross = {"sentence_transformers": sentence_transformers.__version__,
                 "sentence_transformers_max_abs_diff": d_st}
    except ImportError:
        print("  sentence-transformers not importable: cross-check skipped")

    write_json("minilm_embeddings.json", {
        "model": "all-MiniLM-L6-v2",
        "description": "BertModel last_hidden_state; mean_normalized = mean pooling over the "
                       "attention mask then L2 normalisation (the sentence-transformers "
                       "embedding); cls = last_hidden_state[:, 0] unnormalised; "
                       "batch_padded_mean_normalized = same as mean_normalized, but all "
                       "sentences in one right-padded batch with an attention mask. "
                       "token_type_ids are all 0.",
        "max_seq_length": MINILM_MAX_LEN,
        "hidden_size": model.config.hidden_size,
        "sentences": MINILM_SENTENCES,
        "input_ids": input_ids,
        "mean_normalized": [floats(v) for v in mean_norm],
        "cls": [floats(v) for v in cls],
        "batch_padded_mean_normalized": [floats(v) for v in batch_mean_norm],
        "max_abs_diff_single_vs_batch": d_batch,
        "reference": reference(cross),
    })


# --------------------------------------------------------------------------- SmolLM2


def load_smol():
    print(f"SmolLM2 from {SMOL_DIR / SMOL_FILE}")
    tok = AutoTokenizer.from_pretrained(SMOL_DIR, gguf_file=SMOL_FILE)
    model = AutoModelForCausalLM.from_pretrained(SMOL_DIR, gguf_file=SMOL_FILE, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    assert model.config.vocab_size == 49152
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr() or torch.equal(
        model.lm_head.weight, model.model.embed_tokens.weight), "expected tied embeddings"
    return tok, model


def encode(tok, text: str) -> list[int]:
    # transformers' default: add_special_tokens=True. For this GGUF tokenizer that adds
    # nothing (tokenizer.ggml.add_bos_token = false); recorded in the fixture.
    return tok(text)["input_ids"]


def make_smol_logits(tok, model, chat_rendered: str) -> dict:
    prompts = [SMOL_PLAIN, SMOL_QUESTION, chat_rendered, SMOL_LONG]
    kinds = ["plain", "question_with_digits", "chatml_rendered", "long"]
    input_ids = [encode(tok, p) for p in prompts]
    without_special = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    added = [len(a) - len(b) for a, b in zip(input_ids, without_special)]
    print("  prompt lengths:", [len(x) for x in input_ids], "special tokens added:", added)

    all_logits = []
    with torch.no_grad():
        for ids in input_ids:
            all_logits.append(model(torch.tensor([ids])).logits[0].float())
    vocab = all_logits[0].shape[-1]
    assert vocab == 49152, vocab
    for lg in all_logits:
        assert torch.isfinite(lg).all()

    idx = set(range(0, vocab, 97))
    for lg in all_logits:
        idx.update(torch.topk(lg[-1], 64).indices.tolist())
    indices = sorted(idx)
    index_t = torch.tensor(indices)

    last = [lg[-1][index_t] for lg in all_logits]
    argmax = [int(lg[-1].argmax()) for lg in all_logits]
    for p, a in zip(kinds, argmax):
        print(f"  {p}: argmax {a} -> {tok.decode([a])!r}")

    bos_added = any(ids[:1] == [tok.bos_token_id] and w[:1] != [tok.bos_token_id]
                    for ids, w in zip(input_ids, without_special))
    return {
        "model": SMOL_FILE,
        "description": "LlamaForCausalLM loaded by transformers from the GGUF (dequantised to "
                       "float32 with gguf-py, q/k un-permuted to HF layout). last_logits[p][j] "
                       "= logits of prompt p at its last position for vocab id indices[j]. "
                       "all_positions_check.position_logits_max[t] = max over the vocabulary of "
                       "the logits at position t of prompt prompt_index.",
        "prompt_kinds": kinds,
        "prompts": prompts,
        "chat_user_message": SMOL_CHAT_USER,
        "chat_rendered": chat_rendered,
        "chat_rendered_prompt_index": 2,
        "tokenizer": {
            "add_special_tokens": True,
            "special_tokens_added_per_prompt": added,
            "bos_token_added": bos_added,
            "bos_token": tok.bos_token, "bos_token_id": tok.bos_token_id,
            "eos_token": tok.eos_token, "eos_token_id": tok.eos_token_id,
            "gguf_add_bos_token": False,
        },
        "input_ids": input_ids,
        "vocab_size": vocab,
        "indices": indices,
        "last_logits": [floats(v) for v in last],
        "argmax": argmax,
        "argmax_text": [tok.decode([a]) for a in argmax],
        "all_positions_check": {
            "prompt_index": 0,
            "position_logits_max": floats(all_logits[0].max(dim=-1).values),
            "position_argmax": all_logits[0].argmax(dim=-1).tolist(),
        },
    }


def greedy_manual(model, ids: list[int], n: int) -> list[int]:
    """Plain argmax decoding, full recompute each step, no logits processors, no EOS stop."""
    seq = list(ids)
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            out.append(nxt)
            seq.append(nxt)
    return out


def greedy_generate(model, ids: list[int], n: int) -> list[int]:
    """Same via generate() with the KV cache; EOS disabled so nothing is suppressed or stopped.

    generate() fills every None in the passed GenerationConfig from model.generation_config
    (which has eos_token_id=2), so EOS must be unset on the model's own config too.
    """
    import copy

    saved = model.generation_config
    gc = copy.deepcopy(saved)
    gc.eos_token_id = None
    gc.do_sample = False
    gc.max_new_tokens = n
    gc.min_new_tokens = None
    model.generation_config = gc
    try:
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 generation_config=copy.deepcopy(gc))
    finally:
        model.generation_config = saved
    return out[0, len(ids):].tolist()


def make_smol_greedy(tok, model, chat_rendered: str) -> dict:
    runs = []
    for kind, prompt in [("plain", SMOL_PLAIN), ("chatml_rendered", chat_rendered)]:
        ids = encode(tok, prompt)
        g = greedy_manual(model, ids, N_GREEDY)
        g2 = greedy_generate(model, ids, N_GREEDY)
        assert len(g) == N_GREEDY
        if g != g2:
            print(f"  WARNING {kind}: generate() with KV cache differs from full-recompute argmax:\n"
                  f"    manual   {g}\n    generate {g2}")
        text = tok.decode(g)
        print(f"  greedy {kind}: {text!r}")
        runs.append({
            "kind": kind,
            "prompt": prompt,
            "prompt_ids": ids,
            "greedy_ids": g,
            "text": text,
            "eos_in_greedy_ids": tok.eos_token_id in g,
            "kv_cache_generate_agrees": g == g2,
        })
    return {
        "model": SMOL_FILE,
        "description": f"{N_GREEDY} new tokens by plain argmax over the full vocabulary at each step "
                       "(no logits processors, no EOS stopping: decoding continues past "
                       "<|im_end|> if it is chosen). Computed by full recompute per step and "
                       "cross-checked against generate(do_sample=False) with the KV cache.",
        "eos_token_id": tok.eos_token_id,
        "new_tokens": N_GREEDY,
        "runs": runs,
    }


# ------------------------------------------------------------- GGUF dequant spot checks


def _q8_0(raw: np.ndarray, n: int) -> np.ndarray:
    # block: f16 d, 32 x i8 q; x = d * q
    b = raw.reshape(-1, 34)
    d = b[:, :2].copy().view(np.float16).astype(np.float32)
    q = b[:, 2:].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)[:n]


def _q4_1(raw: np.ndarray, n: int) -> np.ndarray:
    # block: f16 d, f16 m, 16 bytes; element j<16 = low nibble of byte j, j>=16 = high nibble of byte j-16
    b = raw.reshape(-1, 20)
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = b[:, 2:4].copy().view(np.float16).astype(np.float32)
    qs = b[:, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    return (d * q + m).reshape(-1)[:n]


def make_dequant(model) -> dict:
    import gguf

    reader = gguf.GGUFReader(str(SMOL_DIR / SMOL_FILE))
    tensors = {t.name: t for t in reader.tensors}
    out = []
    hf_params = dict(model.named_parameters())
    for name, hf_name, rows in [
        ("token_embd.weight", "model.embed_tokens.weight", [0, 1, 504, 49151]),
        ("blk.0.attn_q.weight", None, [0, 1, 575]),
        ("blk.0.attn_k.weight", None, [0, 191]),
        ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight", [0, 191]),
        ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight", [0, 575]),
        ("blk.29.ffn_gate.weight", "model.layers.29.mlp.gate_proj.weight", [0, 1535]),
    ]:
        t = tensors[name]
        ne0 = int(t.shape[0])  # GGUF: ne0 is the contiguous (input-features) dimension
        ne1 = int(np.prod(t.shape[1:]))
        raw = np.asarray(t.data).view(np.uint8).reshape(-1)
        kind = t.tensor_type.name
        mine = {"Q8_0": _q8_0, "Q4_1": _q4_1}[kind](raw, ne0 * ne1).reshape(ne1, ne0)
        ref = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(ne1, ne0)
        assert np.array_equal(mine, ref), f"numpy decoder disagrees with gguf-py on {name}"
        if hf_name is not None:
            # tensors without q/k permutation must equal transformers' loaded weights exactly
            hp = hf_params[hf_name].detach().numpy()
            assert np.array_equal(hp, mine), f"transformers weights differ from GGUF for {name}"
        out.append({
            "name": name,
            "type": kind,
            "gguf_shape_ne": [int(s) for s in t.shape],
            "rows": rows,
            "values_first": DEQUANT_VALUES,
            "values": [floats(mine[r, :DEQUANT_VALUES]) for r in rows],
            "row_sums_f64": [float(mine[r].astype(np.float64).sum()) for r in rows],
        })
    # q/k: transformers reverses llama.cpp's rope permutation; check the permutation relation
    n_head, n_kv = model.config.num_attention_heads, model.config.num_key_value_heads
    for name, hf_name, heads in [("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", n_head),
                                 ("blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight", n_kv)]:
        t = tensors[name]
        g = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(int(t.shape[1]), int(t.shape[0]))
        hf = hf_params[hf_name].detach().numpy()
        # llama.cpp convert: w.reshape(heads, 2, dim/heads/2, in).swapaxes(1, 2)
        permuted = hf.reshape(heads, 2, hf.shape[0] // heads // 2, hf.shape[1]).swapaxes(1, 2).reshape(hf.shape)
        assert np.array_equal(permuted, g), f"q/k permutation relation fails for {name}"
    print("  dequant: numpy Q8_0/Q4_1 decoders == gguf-py == transformers weights; q/k permutation verified")
    return {
        "model": SMOL_FILE,
        "description": "Dequantised GGUF tensor rows in GGUF's own layout (row r = the r-th run of "
                       "ne0 contiguous values; for weights, row = output feature): the first "
                       "values_first values of each row, and the float64 sum of the whole row. attn_q/attn_k "
                       "are as stored in the GGUF, i.e. still in llama.cpp's rope-permuted row "
                       "order: HF q_proj = unpermute(attn_q) with w.reshape(heads, dim/heads/2, 2, "
                       "in).swapaxes(1, 2) (heads=9 for q, 3 for k).",
        "tensors": out,
    }


def main() -> None:
    torch.manual_seed(0)
    print(f"assets: {ASSETS}\nfixtures: {FIXTURES}")
    make_minilm()

    tok, model = load_smol()
    chat_rendered = tok.apply_chat_template([{"role": "user", "content": SMOL_CHAT_USER}],
                                            tokenize=False, add_generation_prompt=True)
    print(f"  chat rendered: {chat_rendered!r}")

    logits = make_smol_logits(tok, model, chat_rendered)
    logits["reference"] = reference()
    write_json("smollm2_logits.json", logits)

    greedy = make_smol_greedy(tok, model, chat_rendered)
    greedy["reference"] = reference()
    write_json("smollm2_greedy.json", greedy)

    # Always verify the dequantisation / q-k un-permutation the logits rest on; only write the
    # spot values when asked (smollm2_real_tensors.json from another script covers similar ground).
    dq = make_dequant(model)
    if "--with-dequant" in sys.argv[1:]:
        dq["reference"] = reference()
        write_json("smollm2_dequant.json", dq)


if __name__ == "__main__":
    main()
