#!/usr/bin/env bash
# radit vs PyTorch on one benchmark workload (DESIGN.md, "Benchmarks"), same machine, back to
# back, then a table and the throughput ratio radit/pytorch.
#   scripts/bench.sh lm-ft|r-ft|lsr|generate [ARGS...]
# ARGS go to both `radit bench WORKLOAD` and its peer scripts/bench_*_peer.py (same flag names),
# e.g. `scripts/bench.sh r-ft --steps 3 --warmup 1 --breakdown`; `--breakdown` is not passed to
# peers that have no breakdown (lsr, generate).
# Env: RADIT (binary, default target/release/radit), PEER_PY (default /tmp/refenv/bin/python),
#      THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/bench.sh lm-ft|r-ft|lsr|generate [ARGS...]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
workload=$1
shift
case "$workload" in
  lm-ft) peer_script=scripts/bench_lmft_peer.py; peer_breakdown=1 ;;
  r-ft) peer_script=scripts/bench_rft_peer.py; peer_breakdown=1 ;;
  lsr) peer_script=scripts/bench_lsr_peer.py; peer_breakdown=0 ;;
  generate) peer_script=scripts/bench_generate_peer.py; peer_breakdown=0 ;;
  *) echo "unknown workload '$workload'; $usage" >&2; exit 2 ;;
esac
RADIT=${RADIT:-${CARGO_TARGET_DIR:-target}/release/radit}
PEER_PY=${PEER_PY:-/tmp/refenv/bin/python}
THREADS=${THREADS:-2}
[ -x "$RADIT" ] || { echo "build first: CARGO_INCREMENTAL=0 cargo build --release -p radit" >&2; exit 1; }

peer_args=()
for arg in "$@"; do
  if [ "$arg" = --breakdown ] && [ "$peer_breakdown" = 0 ]; then continue; fi
  peer_args+=("$arg")
done
peer_log=$(mktemp)
trap 'rm -f "$peer_log"' EXIT

echo "load before: $(uptime)"
ours=$("$RADIT" --device cpu bench "$workload" --threads "$THREADS" --json "$@")
echo "radit:   $ours"
echo "load between: $(uptime)"
if ! peer=$(OMP_NUM_THREADS="$THREADS" "$PEER_PY" "$peer_script" --threads "$THREADS" --json \
    ${peer_args[@]+"${peer_args[@]}"} 2>"$peer_log" | tail -1); then
  echo "the PyTorch peer failed:" >&2
  cat "$peer_log" >&2
  exit 1
fi
echo "pytorch: $peer"
echo "load after: $(uptime)"

python3 - "$workload" "$ours" "$peer" <<'PY'
import json, sys
workload, o, p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])

def table(rows, time_key, rate_key, time_label, rate_label):
    print(f"{'':10}{time_label + ' min s':>14}{time_label + ' med s':>14}"
          f"{rate_label + ' best':>14}{rate_label + ' med':>14}")
    for name, r in rows:
        print(f"{name:10}{r[time_key + '_min_s']:14.3f}{r[time_key + '_median_s']:14.3f}"
              f"{r[rate_key + '_per_s_best']:14.1f}{r[rate_key + '_per_s_median']:14.1f}")

def ratio(label, a, b, rate_key):
    best = a[rate_key + "_per_s_best"] / b[rate_key + "_per_s_best"]
    median = a[rate_key + "_per_s_median"] / b[rate_key + "_per_s_median"]
    print(f"ratio radit/pytorch {label}: best {best:.2f}  median {median:.2f}")

def phases(r, name):
    if r.get("phases_s"):
        print(f"{name:10}forward {r['forward_s']:.3f}  backward {r['backward_s']:.3f}  "
              f"optimizer {r['optim_s']:.3f}  no-grad forward {r['nograd_forward_s']:.3f}")
        i = r["step_s"].index(r["step_min_s"])
        f, b, u = r["phases_s"][i]
        print(f"{'':10}fastest step: forward {f:.3f}  backward {b:.3f}  optimizer {u:.3f}")

if workload in ("lm-ft", "r-ft"):
    rate = "tokens" if workload == "lm-ft" else "queries"
    label = "tok/s" if workload == "lm-ft" else "q/s"
    table((("radit", o), ("pytorch", p)), "step", rate, "step", label)
    ratio(f"{rate}/s", o, p, rate)
    phases(o, "radit")
    phases(p, "pytorch")
elif workload == "lsr":
    table((("radit", o), ("pytorch", p)), "pass", "sequences", "pass", "seq/s")
    ratio("sequences/s", o, p, "sequences")
else:
    peer_by_batch = {r["batch"]: r for r in p["results"]}
    for r in o["results"]:
        q = peer_by_batch.get(r["batch"])
        if q is None:
            continue
        print(f"batch {r['batch']}")
        table((("radit", r), ("pytorch", q)), "run", "new_tokens", "run", "tok/s")
        ratio(f"new tokens/s, batch {r['batch']}", r, q, "new_tokens")
        if "prefill_s" in r:
            print(f"{'radit':10}prefill {r['prefill_s']:.3f} s  "
                  f"decode step {r['decode_step_s'] * 1000:.1f} ms (best run)")
PY
