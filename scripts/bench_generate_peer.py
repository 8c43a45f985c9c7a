#!/usr/bin/env python3
"""W5 generation peer (DESIGN.md, "Benchmarks"): greedy decoding with a KV cache in PyTorch with
transformers' LlamaForCausalLM (the W1 config), randomly initialized, float32.

A prompt of 128 random tokens per row, 64 new tokens, greedy (`model.generate` with
do_sample=False, min_new_tokens = max_new_tokens = 64, no EOS), at each batch size in --batches
(default 1 and 8). Each batch size runs --warmup unmeasured and --repeats measured generations.

new tokens/s = batch * new tokens / generation time (prefill included), best and median.
Run with the reference venv: /tmp/refenv/bin/python scripts/bench_generate_peer.py
"""
import argparse
import json
import statistics
import time

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3, help="measured generations per batch size")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured generations per batch size")
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ffn", type=int, default=1376)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.repeats < 1:
        p.error("--repeats must be at least 1")
    batches = [int(x) for x in a.batches.split(",") if x.strip()]

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    config = LlamaConfig(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        intermediate_size=a.ffn,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.heads,
        max_position_embeddings=max(a.prompt + a.new_tokens, 2048),
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        attention_bias=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
        torch_dtype=torch.float32,
    )
    config._attn_implementation = "eager"  # plain matmul attention, like radit's
    model = LlamaForCausalLM(config).float().eval()
    gen = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=a.new_tokens,
        min_new_tokens=a.new_tokens,
        eos_token_id=None,
        bos_token_id=None,
        pad_token_id=0,
        use_cache=True,
    )
    model.generation_config = gen

    g = torch.Generator().manual_seed(a.seed)
    results = []
    for b in batches:
        ids = torch.randint(1, a.vocab, (b, a.prompt), generator=g)
        mask = torch.ones_like(ids)
        times = []
        for rep in range(a.warmup + a.repeats):
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
            total = time.perf_counter() - t0
            new = out.shape[1] - a.prompt
            if new != a.new_tokens:
                raise SystemExit(f"batch {b}: generated {new} tokens, expected {a.new_tokens}")
            if rep >= a.warmup:
                times.append(total)
            if not a.json:
                kind = "warmup" if rep < a.warmup else "measured"
                print(f"batch {b} {kind} run {rep}: {total:.3f} s  "
                      f"({b * new / total:.1f} new tok/s)", flush=True)
        best, median = min(times), statistics.median(times)
        tokens = b * a.new_tokens
        results.append({
            "batch": b, "run_s": times, "run_min_s": best, "run_median_s": median,
            "new_tokens_per_s_best": tokens / best, "new_tokens_per_s_median": tokens / median,
            "first_new_tokens": out[0, a.prompt:a.prompt + 8].tolist(),
        })

    if a.json:
        print(json.dumps({
            "bench": "generate", "impl": "pytorch", "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "hidden": a.hidden, "layers": a.layers, "heads": a.heads, "ffn": a.ffn,
            "vocab": a.vocab, "prompt": a.prompt, "new_tokens": a.new_tokens, "seed": a.seed,
            "warmup": a.warmup, "repeats": a.repeats, "results": results,
        }))
    else:
        print(f"W5 generate (PyTorch {torch.__version__}, CPU, threads {torch.get_num_threads()})")
        print(f"  config   hidden {a.hidden} layers {a.layers} heads {a.heads} ffn {a.ffn} "
              f"vocab {a.vocab}; prompt {a.prompt}, {a.new_tokens} new tokens, greedy, KV cache")
        for r in results:
            print(f"  batch {r['batch']:<3} {a.warmup} warmup, {a.repeats} measured: "
                  + " ".join(f"{t:.3f}" for t in r["run_s"]))
            print(f"            min {r['run_min_s']:.3f} s   median {r['run_median_s']:.3f} s   "
                  f"new tok/s best {r['new_tokens_per_s_best']:.1f}   "
                  f"median {r['new_tokens_per_s_median']:.1f}")


if __name__ == "__main__":
    main()
