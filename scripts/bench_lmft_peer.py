#!/usr/bin/env python3
"""W1 LM-ft peer (DESIGN.md, "Benchmarks"): the same training step as `radit bench lm-ft`,
in PyTorch with transformers' LlamaForCausalLM, randomly initialized, float32, AdamW.

tokens/s = batch*seq / step time, steady state (warmup steps skipped), best and median.
Run with the reference venv: /tmp/refenv/bin/python scripts/bench_lmft_peer.py
"""
import argparse
import json
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--answer", type=int, default=64)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ffn", type=int, default=1376)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--breakdown", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        intermediate_size=a.ffn,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.heads,
        max_position_embeddings=max(a.seq, 2048),
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        attention_bias=False,
        torch_dtype=torch.float32,
    )
    config._attn_implementation = "eager"  # plain matmul attention, like radit's
    model = LlamaForCausalLM(config).float().train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, a.vocab, (a.batch, a.seq), generator=g)

    def answer_loss():
        # The same work as radit: only the scored positions go through the LM head
        # (`logits_to_keep`); position p predicts token p + 1, so the last kept logit is unused.
        logits = model(input_ids=ids, logits_to_keep=a.answer + 1).logits[:, :-1, :]
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), ids[:, -a.answer:].reshape(-1))

    times, phases, losses = [], [], []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = answer_loss()
        t1 = time.perf_counter()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        optim.step()
        value = loss.item()
        t3 = time.perf_counter()
        total = t3 - t0
        if step >= a.warmup:
            times.append(total)
            phases.append((t1 - t0, t2 - t1, t3 - t2))
            losses.append(value)
        if not a.json:
            kind = "warmup" if step < a.warmup else "measured"
            print(f"{kind} step {step}: {total:.3f} s  loss {value:.4f}", flush=True)

    tokens = a.batch * a.seq
    best, median = min(times), statistics.median(times)
    fwd = statistics.median(x[0] for x in phases)
    bwd = statistics.median(x[1] for x in phases)
    opt = statistics.median(x[2] for x in phases)
    nograd = None
    if a.breakdown:
        with torch.no_grad():
            runs = []
            for _ in range(2):
                t0 = time.perf_counter()
                answer_loss().item()
                runs.append(time.perf_counter() - t0)
            nograd = min(runs)
    if a.json:
        print(json.dumps({
            "bench": "lm-ft", "impl": "pytorch", "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "hidden": a.hidden, "layers": a.layers, "heads": a.heads, "ffn": a.ffn,
            "vocab": a.vocab, "batch": a.batch, "seq": a.seq, "answer": a.answer,
            "warmup": a.warmup, "steps": a.steps, "step_s": times,
            "step_min_s": best, "step_median_s": median,
            "tokens_per_s_best": tokens / best, "tokens_per_s_median": tokens / median,
            "loss_last": losses[-1],
            "forward_s": fwd, "backward_s": bwd, "optim_s": opt, "nograd_forward_s": nograd,
            "phases_s": [list(x) for x in phases] if a.breakdown else None,
        }))
    else:
        print(f"W1 lm-ft (PyTorch {torch.__version__}, CPU, threads {torch.get_num_threads()})")
        print(f"  config   hidden {a.hidden} layers {a.layers} heads {a.heads} ffn {a.ffn} "
              f"vocab {a.vocab}; batch {a.batch} x seq {a.seq}, loss on last {a.answer}")
        print(f"  steps    {a.warmup} warmup, {a.steps} measured: "
              + " ".join(f"{t:.3f}" for t in times))
        print(f"  step     min {best:.3f} s   median {median:.3f} s")
        print(f"  tokens/s best {tokens / best:.1f}   median {tokens / median:.1f}")
        if a.breakdown:
            print(f"  phases   forward {fwd:.3f} s   backward {bwd:.3f} s   "
                  f"optimizer {opt:.3f} s   (medians)")
            print(f"  no-grad forward (same loss): {nograd:.3f} s")


if __name__ == "__main__":
    main()
