#!/usr/bin/env python3
"""Check a model directory exported by radit against the reference fixtures.

DIR must hold config.json + model.safetensors + tokenizer.json in Hugging Face layout
(Llama decoder or BERT encoder). The model is loaded with transformers (AutoModelForCausalLM
or AutoModel, chosen from config.json "architectures"/"model_type"), float32, eager attention,
and run on the fixture inputs:

  Llama: the prompts of crates/models/tests/fixtures/smollm2_logits.json. Prints max |Δ| of
         the last-position logits at the fixture's vocab indices, per prompt, plus the
         per-position max-logit check and argmax agreement.
  BERT:  the sentences of crates/models/tests/fixtures/minilm_embeddings.json. Prints max |Δ|
         of the mean-pooled L2-normalised embeddings, the CLS vectors and the padded-batch
         embeddings.

The model is fed the fixture's input_ids, so a tokenizer problem cannot hide a model problem;
the exported tokenizer.json is checked separately by re-encoding the fixture texts and comparing
the ids. Exit status 1 if any max |Δ| exceeds --tol (default 1e-3) or any token ids differ
(--ignore-tokenizer to only report the latter), 2 on usage/loading errors.

Setup and environment are as for scripts/make_model_fixtures.py (same venv):

    HF_HUB_OFFLINE=1 /tmp/refenv/bin/python scripts/check_export.py DIR [--tol 1e-3]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModel, AutoModelForCausalLM  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = REPO / "crates" / "models" / "tests" / "fixtures"

ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "electra"}


def model_kind(config: dict) -> str:
    archs = config.get("architectures") or []
    mtype = (config.get("model_type") or "").lower()
    if any(a.endswith("ForCausalLM") for a in archs):
        return "causal"
    if mtype in ENCODER_TYPES or any(a.startswith(("Bert", "Roberta", "XLMRoberta", "DistilBert")) for a in archs):
        return "encoder"
    if mtype in {"llama", "mistral", "qwen2", "gemma", "phi3"}:
        return "causal"
    raise SystemExit(f"cannot tell model kind from architectures={archs} model_type={mtype!r}")


def safetensors_dtypes(path: Path) -> Counter:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return Counter(v["dtype"] for k, v in header.items() if k != "__metadata__")


def load_tokenizer(d: Path):
    """AutoTokenizer if the directory carries enough for it, else the bare tokenizer.json."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(d)
    except Exception as e:  # noqa: BLE001
        print(f"  AutoTokenizer failed ({type(e).__name__}: {e}); using tokenizer.json directly")
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"))


def check_ids(tok, texts, expected, what) -> int:
    bad = 0
    for i, (t, exp) in enumerate(zip(texts, expected)):
        got = tok(t)["input_ids"]
        if got != exp:
            bad += 1
            print(f"  tokenizer MISMATCH {what}[{i}]:\n    expected {exp}\n    got      {got}")
    print(f"  tokenizer: {len(texts) - bad}/{len(texts)} {what} encode to the fixture ids")
    return bad


def check_causal(d: Path, fixtures: Path, tol: float, tok) -> tuple[float, int]:
    fx = json.loads((fixtures / "smollm2_logits.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    bad_tok = check_ids(tok, fx["prompts"], fx["input_ids"], "prompts") if tok is not None else 0

    idx = torch.tensor(fx["indices"])
    worst = 0.0
    with torch.no_grad():
        for p, (ids, ref, am) in enumerate(zip(fx["input_ids"], fx["last_logits"], fx["argmax"])):
            logits = model(torch.tensor([ids])).logits[0].float()
            if logits.shape[-1] != fx["vocab_size"]:
                print(f"  vocab size {logits.shape[-1]} != fixture {fx['vocab_size']}")
                return float("inf"), bad_tok
            d_last = (logits[-1, idx] - torch.tensor(ref)).abs().max().item()
            got_am = int(logits[-1].argmax())
            worst = max(worst, d_last)
            kind = fx.get("prompt_kinds", [""] * 4)[p]
            print(f"  prompt {p} ({kind}, {len(ids)} tokens): last-position logits max |Δ| = {d_last:.3e}; "
                  f"argmax {got_am} {'==' if got_am == am else '!='} {am}")
            if p == fx["all_positions_check"]["prompt_index"]:
                ref_pos = torch.tensor(fx["all_positions_check"]["position_logits_max"])
                d_pos = (logits.max(dim=-1).values - ref_pos).abs().max().item()
                worst = max(worst, d_pos)
                print(f"  prompt {p}: per-position max-logit max |Δ| = {d_pos:.3e}")
    return worst, bad_tok


def mean_pool_normalize(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), p=2, dim=1)


def check_encoder(d: Path, fixtures: Path, tol: float, tok) -> tuple[float, int]:
    fx = json.loads((fixtures / "minilm_embeddings.json").read_text())
    model = AutoModel.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    bad_tok = check_ids(tok, fx["sentences"], fx["input_ids"], "sentences") if tok is not None else 0

    mean, cls = [], []
    with torch.no_grad():
        for ids in fx["input_ids"]:
            t = torch.tensor([ids])
            mask = torch.ones_like(t)
            h = model(input_ids=t, attention_mask=mask, token_type_ids=torch.zeros_like(t)).last_hidden_state
            mean.append(mean_pool_normalize(h, mask)[0])
            cls.append(h[0, 0])
        n = max(len(x) for x in fx["input_ids"])
        pad = model.config.pad_token_id or 0
        batch = torch.tensor([x + [pad] * (n - len(x)) for x in fx["input_ids"]])
        bmask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in fx["input_ids"]])
        h = model(input_ids=batch, attention_mask=bmask, token_type_ids=torch.zeros_like(batch)).last_hidden_state
        bmean = mean_pool_normalize(h, bmask)

    d_mean = (torch.stack(mean) - torch.tensor(fx["mean_normalized"])).abs().max().item()
    d_cls = (torch.stack(cls) - torch.tensor(fx["cls"])).abs().max().item()
    d_batch = (bmean - torch.tensor(fx["batch_padded_mean_normalized"])).abs().max().item()
    print(f"  mean_normalized max |Δ| = {d_mean:.3e}")
    print(f"  cls max |Δ| = {d_cls:.3e}")
    print(f"  batch_padded_mean_normalized max |Δ| = {d_batch:.3e}")
    return max(d_mean, d_cls, d_batch), bad_tok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="exported model directory")
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--ignore-tokenizer", action="store_true", help="report tokenizer mismatches without failing")
    args = ap.parse_args()

    d = args.dir
    for f in ("config.json", "model.safetensors"):
        if not (d / f).is_file():
            print(f"{d / f} missing", file=sys.stderr)
            return 2
    config = json.loads((d / "config.json").read_text())
    kind = model_kind(config)
    print(f"{d}: {kind} model, architectures={config.get('architectures')} model_type={config.get('model_type')}")
    print(f"  safetensors dtypes: {dict(safetensors_dtypes(d / 'model.safetensors'))}")
    print(f"  transformers {transformers.__version__}, torch {torch.__version__}")

    tok = None
    if (d / "tokenizer.json").is_file():
        tok = load_tokenizer(d)
    else:
        print("  tokenizer.json missing: tokenizer not checked")

    try:
        if kind == "causal":
            worst, bad_tok = check_causal(d, args.fixtures, args.tol, tok)
        else:
            worst, bad_tok = check_encoder(d, args.fixtures, args.tol, tok)
    except OSError as e:
        print(f"loading failed: {e}", file=sys.stderr)
        return 2

    ok = worst <= args.tol and (bad_tok == 0 or args.ignore_tokenizer)
    print(f"max |Δ| = {worst:.3e} (tol {args.tol:g}); tokenizer mismatches: {bad_tok} -> {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
