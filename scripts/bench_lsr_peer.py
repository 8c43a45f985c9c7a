#!/usr/bin/env python3
"""W3 LSR scoring peer (DESIGN.md, "Benchmarks"): LM-supervised retrieval scoring in PyTorch
with transformers' LlamaForCausalLM (the W1 config), randomly initialized, float32, no grad.

160 sequences of 192 tokens (chunk 128 + question 32 + answer 32), scored 16 at a time: per
sequence the summed log-probability of its last 32 tokens (the answer), with the LM head run
only on the positions that predict answer tokens (`logits_to_keep`, as the W1 peer does).
One pass = all 160 sequences; the first --warmup passes are not measured.

sequences/s = sequences / pass time, best and median over the measured passes.
Run with the reference venv: /tmp/refenv/bin/python scripts/bench_lsr_peer.py
"""
import argparse
import json
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3, help="measured passes over all sequences")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured passes")
    p.add_argument("--sequences", type=int, default=160)
    p.add_argument("--batch", type=int, default=16, help="sequences scored per forward")
    p.add_argument("--chunk", type=int, default=128)
    p.add_argument("--question", type=int, default=32)
    p.add_argument("--answer", type=int, default=32)
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
    seq = a.chunk + a.question + a.answer

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    config = LlamaConfig(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        intermediate_size=a.ffn,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.heads,
        max_position_embeddings=max(seq, 2048),
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        attention_bias=False,
        torch_dtype=torch.float32,
    )
    config._attn_implementation = "eager"  # plain matmul attention, like radit's
    model = LlamaForCausalLM(config).float().eval()

    g = torch.Generator().manual_seed(a.seed)
    ids = torch.randint(1, a.vocab, (a.sequences, seq), generator=g)

    @torch.inference_mode()
    def score_all():
        out = []
        for i in range(0, a.sequences, a.batch):
            rows = ids[i:i + a.batch]
            # Position p predicts token p + 1: keep the last answer+1 positions, drop the last.
            logits = model(input_ids=rows, logits_to_keep=a.answer + 1).logits[:, :-1, :]
            logp = torch.log_softmax(logits.float(), dim=-1)
            target = rows[:, -a.answer:]
            out.append(logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1))
        return torch.cat(out)

    times, scores = [], None
    for rep in range(a.warmup + a.repeats):
        t0 = time.perf_counter()
        scores = score_all()
        total = time.perf_counter() - t0
        if rep >= a.warmup:
            times.append(total)
        if not a.json:
            kind = "warmup" if rep < a.warmup else "measured"
            print(f"{kind} pass {rep}: {total:.3f} s  ({a.sequences / total:.1f} seq/s)",
                  flush=True)

    best, median = min(times), statistics.median(times)
    n = a.sequences
    if a.json:
        print(json.dumps({
            "bench": "lsr", "impl": "pytorch", "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "hidden": a.hidden, "layers": a.layers, "heads": a.heads, "ffn": a.ffn,
            "vocab": a.vocab, "sequences": n, "batch": a.batch, "seq": seq,
            "chunk": a.chunk, "question": a.question, "answer": a.answer, "seed": a.seed,
            "warmup": a.warmup, "repeats": a.repeats, "pass_s": times,
            "pass_min_s": best, "pass_median_s": median,
            "sequences_per_s_best": n / best, "sequences_per_s_median": n / median,
            "score_mean": scores.mean().item(), "score_first": scores[0].item(),
        }))
    else:
        print(f"W3 lsr (PyTorch {torch.__version__}, CPU, threads {torch.get_num_threads()})")
        print(f"  config   hidden {a.hidden} layers {a.layers} heads {a.heads} ffn {a.ffn} "
              f"vocab {a.vocab}; {n} sequences x {seq} tokens ({a.chunk}+{a.question}+"
              f"{a.answer}), {a.batch} per forward, score on last {a.answer}")
        print(f"  passes   {a.warmup} warmup, {a.repeats} measured: "
              + " ".join(f"{t:.3f}" for t in times))
        print(f"  pass     min {best:.3f} s   median {median:.3f} s")
        print(f"  seq/s    best {n / best:.1f}   median {n / median:.1f}")
        print(f"  scores   mean {scores.mean().item():.3f}  first {scores[0].item():.3f}")


if __name__ == "__main__":
    main()
