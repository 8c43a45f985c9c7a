#!/usr/bin/env python3
"""W2 R-ft peer (DESIGN.md, "Benchmarks"): one retriever fine-tuning step in PyTorch with
transformers' BertModel (MiniLM-L6 config), randomly initialized, float32, AdamW.

Per step: 16 queries x 64 random token ids (attention mask all ones) -> mean pooling over the
mask -> L2 normalization -> q [16, 384]; 10 frozen document embeddings per query (random unit
vectors [16, 10, 384], no grad); s = q.d / tau_r; p_R = log_softmax(s); a fixed target
distribution t = softmax(random logits / 0.01); loss = KL(t || p_R) = sum t (log t - log p_R),
averaged over queries; backward; AdamW(lr 1e-5, weight decay 0.01) step.

queries/s = queries / step time, steady state (warmup steps skipped), best and median.
Run with the reference venv: /tmp/refenv/bin/python scripts/bench_rft_peer.py
"""
import argparse
import json
import statistics
import time

import torch
from transformers import BertConfig, BertModel


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--queries", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--docs", type=int, default=10, help="documents per query")
    p.add_argument("--tau-r", type=float, default=0.1, help="retriever temperature")
    p.add_argument("--target-tau", type=float, default=0.01,
                   help="temperature of the fixed target distribution's random logits")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="BERT hidden/attention dropout (radit's encoder has none)")
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--ffn", type=int, default=1536)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--max-positions", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--breakdown", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.steps < 1:
        p.error("--steps must be at least 1")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    config = BertConfig(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        intermediate_size=a.ffn,
        hidden_act="gelu",
        max_position_embeddings=a.max_positions,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        hidden_dropout_prob=a.dropout,
        attention_probs_dropout_prob=a.dropout,
    )
    config._attn_implementation = "eager"  # plain matmul attention, like radit's
    model = BertModel(config, add_pooling_layer=False).float().train()
    optim = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)

    g = torch.Generator().manual_seed(a.seed)
    ids = torch.randint(1, a.vocab, (a.queries, a.seq), generator=g)
    mask = torch.ones(a.queries, a.seq, dtype=torch.long)
    docs = torch.nn.functional.normalize(
        torch.randn(a.queries, a.docs, a.hidden, generator=g), dim=-1)  # frozen, no grad
    target = torch.softmax(torch.randn(a.queries, a.docs, generator=g) / a.target_tau, dim=-1)
    log_target = torch.log(target.clamp_min(1e-30))

    def kl_loss():
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state  # [Q, T, H]
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        q = torch.nn.functional.normalize(pooled, dim=-1)  # [Q, H]
        s = torch.einsum("qh,qdh->qd", q, docs) / a.tau_r  # [Q, D]
        log_p = torch.log_softmax(s, dim=-1)
        return (target * (log_target - log_p)).sum(-1).mean()

    times, phases, losses = [], [], []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = kl_loss()
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
                kl_loss().item()
                runs.append(time.perf_counter() - t0)
            nograd = min(runs)
    if a.json:
        print(json.dumps({
            "bench": "r-ft", "impl": "pytorch", "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "hidden": a.hidden, "layers": a.layers, "heads": a.heads, "ffn": a.ffn,
            "vocab": a.vocab, "queries": a.queries, "seq": a.seq, "docs": a.docs,
            "tau_r": a.tau_r, "seed": a.seed,
            "warmup": a.warmup, "steps": a.steps, "step_s": times,
            "step_min_s": best, "step_median_s": median,
            "queries_per_s_best": a.queries / best, "queries_per_s_median": a.queries / median,
            "loss_last": losses[-1],
            "forward_s": fwd, "backward_s": bwd, "optim_s": opt, "nograd_forward_s": nograd,
            "phases_s": [list(x) for x in phases] if a.breakdown else None,
        }))
    else:
        print(f"W2 r-ft (PyTorch {torch.__version__}, CPU, threads {torch.get_num_threads()})")
        print(f"  config   hidden {a.hidden} layers {a.layers} heads {a.heads} ffn {a.ffn} "
              f"vocab {a.vocab}; {a.queries} queries x seq {a.seq}, {a.docs} docs/query, "
              f"tau_r {a.tau_r}")
        print(f"  steps    {a.warmup} warmup, {a.steps} measured: "
              + " ".join(f"{t:.3f}" for t in times))
        print(f"  step     min {best:.3f} s   median {median:.3f} s")
        print(f"  queries/s best {a.queries / best:.1f}   median {a.queries / median:.1f}")
        if a.breakdown:
            print(f"  phases   forward {fwd:.3f} s   backward {bwd:.3f} s   "
                  f"optimizer {opt:.3f} s   (medians)")
            print(f"  no-grad forward (same loss): {nograd:.3f} s")


if __name__ == "__main__":
    main()
