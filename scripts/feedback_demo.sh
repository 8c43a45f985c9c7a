#!/usr/bin/env bash
# The human-in-the-loop round on the synthetic task, scripted:
#   fine-tune (the quickstart recipe) -> review 30 dev questions in headless Chromium (the
#   judgments come from the gold answers, standing in for a person) -> export -> fine-tune
#   again on the judgments -> evaluate the reviewed and 30 unreviewed questions before/after.
#
#   scripts/feedback_demo.sh [OUT_DIR]     (default runs/feedback-demo; needs chromium,
#                                           chromium-driver and scripts/fetch-assets.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-runs/feedback-demo}")
mkdir -p "$out"
export CARGO_INCREMENTAL=0
cargo build --release --bin radit
radit=${CARGO_TARGET_DIR:-target}/release/radit

# Round 1: the quickstart run (reused when it is complete).
if [ ! -f "$out/round1/r_ft/final/config.json" ]; then
  $radit train recipes/quickstart.toml --output-dir "$out/round1" --resume auto
fi

# Reviewed: dev questions 61-90; unreviewed: 91-120 (the quickstart evaluates 1-60).
sed -n 61,90p datasets/synthetic/dev.jsonl > "$out/reviewed.jsonl"
sed -n 91,120p datasets/synthetic/dev.jsonl > "$out/unreviewed.jsonl"

# The browser reviewer: every reviewed question, judged from its gold answer.
rm -f "$out"/judgments.sqlite*
RADIT_DEMO_RUN="$out/round1" RADIT_DEMO_QUESTIONS="$out/reviewed.jsonl" \
RADIT_DEMO_DB="$out/judgments.sqlite" RADIT_REVIEW_SCREENSHOT="$out/review.png" \
  cargo test --release -p radit --test cli -- --ignored --exact feedback_demo_reviewer --nocapture
$radit feedback stats --db "$out/judgments.sqlite"
$radit feedback export --db "$out/judgments.sqlite" --out "$out/feedback" --overwrite

# Round 2: LM-ft continues from round 1's generator, one epoch at a lower learning rate over
# the reviewed answers (helpful chunks as background) mixed 1:1 with training questions
# (data.cap = 30 per dataset and epoch: a replay that keeps what round 1 learned); R-ft learns
# with the human labels blended into the LSR target (λ = 0.5). Same index.
rm -rf "$out/round2"
$radit train recipes/quickstart.toml --output-dir "$out/round2" \
  --set generator.model="$out/round1/lm_ft/final" \
  --set docstore.index="$out/round1/index" \
  --set "data.train=[\"$PWD/datasets/synthetic/train.jsonl\", \"$out/feedback/lm_ft.jsonl\"]" \
  --set data.cap=30 \
  --set stages.lm_ft.train.lr=3e-5 \
  --set stages.lm_ft.train.max_steps=45 \
  --set 'stages.lm_ft.train.schedule={ kind = "constant", warmup_steps = 3 }' \
  --set stages.r_ft.feedback.labels="$out/feedback/retrieval.jsonl" \
  --set stages.r_ft.feedback.weight=0.5

for round in round1 round2; do
  for set in reviewed unreviewed; do
    $radit eval --checkpoint "$out/$round" --data "$out/$set.jsonl" \
      --out "$out/eval-$round-$set.json" > /dev/null
  done
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print("| questions | round | EM [95% CI] | recall@1 | MRR |")
print("|---|---|---|---|---|")
for s in ["reviewed", "unreviewed"]:
    for r in ["round1", "round2"]:
        m = json.load(open(f"{out}/eval-{r}-{s}.json"))["metrics"]
        ci, ret = m["em_ci"], m["retrieval"]
        print(f"| {s} ({m['count']}) | {r} | {m['em']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] "
              f"| {ret['recall_at']['1']:.3f} | {ret['mrr']:.3f} |")
PY
