#!/usr/bin/env bash
# W1 LM-ft benchmark (DESIGN.md, "Benchmarks"): radit (flex CPU) and the PyTorch peer, back to
# back, then the throughput ratio. Extra arguments go to both (e.g. --steps 5 --warmup 2).
# Env: RADIT (binary, default target/release/radit), PEER_PY (default /tmp/refenv/bin/python),
#      THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
RADIT=${RADIT:-target/release/radit}
PEER_PY=${PEER_PY:-/tmp/refenv/bin/python}
THREADS=${THREADS:-2}
[ -x "$RADIT" ] || { echo "build first: CARGO_INCREMENTAL=0 cargo build --release -p radit" >&2; exit 1; }

echo "load before: $(uptime)"
ours=$("$RADIT" --device cpu bench lm-ft --threads "$THREADS" --json "$@")
echo "radit:   $ours"
echo "load between: $(uptime)"
peer=$(OMP_NUM_THREADS="$THREADS" "$PEER_PY" scripts/bench_lmft_peer.py --threads "$THREADS" --json "$@" 2>/dev/null | tail -1)
echo "pytorch: $peer"
echo "load after: $(uptime)"

python3 - "$ours" "$peer" <<'PY'
import json, sys
o, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'':10}{'step min s':>12}{'step med s':>12}{'tok/s best':>12}{'tok/s med':>12}")
for name, r in (("radit", o), ("pytorch", p)):
    print(f"{name:10}{r['step_min_s']:12.3f}{r['step_median_s']:12.3f}"
          f"{r['tokens_per_s_best']:12.1f}{r['tokens_per_s_median']:12.1f}")
print(f"ratio radit/pytorch tokens/s: best {o['tokens_per_s_best'] / p['tokens_per_s_best']:.2f}"
      f"  median {o['tokens_per_s_median'] / p['tokens_per_s_median']:.2f}")
for r, name in ((o, "radit"), (p, "pytorch")):
    if r.get("phases_s"):
        print(f"{name:10}forward {r['forward_s']:.3f}  backward {r['backward_s']:.3f}  "
              f"optimizer {r['optim_s']:.3f}  no-grad forward {r['nograd_forward_s']:.3f}")
        i = r["step_s"].index(r["step_min_s"])
        f, b, u = r["phases_s"][i]
        print(f"{'':10}fastest step: forward {f:.3f}  backward {b:.3f}  optimizer {u:.3f}")
PY
