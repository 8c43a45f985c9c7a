#!/usr/bin/env bash
# The main job: RA-DIT end to end on the synthetic knowledge task, on CPU in a few minutes.
# Fetches the real models if missing, indexes the shipped corpus, runs LM-ft then R-ft
# (recipes/quickstart.toml), evaluates the base and the fine-tuned models with the ensemble
# over retrieved chunks on held-out questions, and prints the comparison table.
#
#   scripts/quickstart.sh            (env: OUT=runs/quickstart, N_EVAL=60, K=3)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/quickstart}
N_EVAL=${N_EVAL:-60}
K=${K:-3}
./scripts/fetch-assets.sh
cargo build --release -p radit
# Where cargo put it: CARGO_TARGET_DIR (as .ci/run sets) or ./target.
RADIT=${CARGO_TARGET_DIR:-target}/release/radit
"$RADIT" train recipes/quickstart.toml --output-dir "$OUT" --resume auto
for which in base fine-tuned; do
  flag=$([ "$which" = base ] && echo --base || true)
  [ -f "$OUT/eval-$which.json" ] || "$RADIT" eval --checkpoint "$OUT" $flag --mode ensemble \
    --k "$K" --limit "$N_EVAL" --out "$OUT/eval-$which.json" > /dev/null
done
"$RADIT" report --title "RA-DIT quickstart (synthetic knowledge task)" \
  --command "scripts/quickstart.sh" \
  --eval "RAG, base models=$OUT/eval-base.json" \
  --eval "LM-ft + R-ft=$OUT/eval-fine-tuned.json" \
  --run "quickstart=$OUT" --out "$OUT/report" > /dev/null
sed -n '/^|/p' "$OUT/report/README.md" | head -20
echo "full report: $OUT/report/README.md"
