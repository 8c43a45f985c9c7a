#!/usr/bin/env bash
# RA-DIT's ablation (Table 6 of the paper), in miniature, on real models and data:
# SmolLM2-135M-Instruct + all-MiniLM-L6-v2 over the Wikipedia lead sections, fine-tuned on
# Natural Questions dev questions whose answer occurs in the corpus, evaluated on a disjoint
# held-out part: closed book, RAG with the base models (ensemble over k chunks), LM-ft only,
# R-ft only, both. Writes reports/table6/README.md (+ SVG plots).
#
#   scripts/reproduce_table6.sh
#
# Env: RADIT (binary; built if missing), OUT (work dir, default runs/table6), INDEX (reuse an
# index built from the same corpus and encoder), N_EVAL (held-out questions, default 150),
# K (chunks per question at evaluation, default 3), REPORT (default reports/table6).
# Every step resumes: rerunning after an interruption continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
RADIT=${RADIT:-${CARGO_TARGET_DIR:-target}/release/radit}
ASSETS=${RADIT_ASSETS:-$HOME/.cache/radit/assets}
OUT=${OUT:-runs/table6}
INDEX=${INDEX:-$OUT/wiki-index}
N_EVAL=${N_EVAL:-150}
K=${K:-3}
REPORT=${REPORT:-reports/table6}
[ -x "$RADIT" ] || cargo build --release -p radit
RADIT_FETCH_QA=1 ./scripts/fetch-assets.sh
mkdir -p "$OUT"
started=$(date +%s)

if [ ! -f "$INDEX/manifest.json" ]; then
  "$RADIT" index build --corpus "$ASSETS/wikipedia-summaries/summaries_en-us.json" \
    --encoder "$ASSETS/all-MiniLM-L6-v2" --out "$INDEX" --chunk-words 100
fi
if [ ! -f "$OUT/data/heldout.jsonl" ]; then
  "$RADIT" data answerable --index "$INDEX" --data "$ASSETS/qa/topics.nq.dev.txt" \
    --out "$OUT/data" --holdout 0.3 --seed 0
fi

common=(--set "docstore.index=\"$INDEX\"" --set "data.train=\"$OUT/data/train.jsonl\""
        --set "data.dev=\"$OUT/data/heldout.jsonl\"")
# Both stages: LM-ft, then R-ft supervised by the fine-tuned generator.
"$RADIT" train recipes/smollm2-minilm-qa.toml --output-dir "$OUT/both" --resume auto "${common[@]}"
# R-ft only: supervised by the base generator.
"$RADIT" train recipes/smollm2-minilm-qa.toml --output-dir "$OUT/r_ft_only" --resume auto "${common[@]}" \
  --set 'stages.order=["r_ft"]'
# LM-ft only: the first stage of the run above, without its R-ft.
mkdir -p "$OUT/lm_ft_only"
"$RADIT" recipe show "$OUT/both/recipe.toml" --set 'stages.order=["lm_ft"]' > "$OUT/lm_ft_only/recipe.toml"
ln -sfn "$(cd "$OUT/both" && pwd)/lm_ft" "$OUT/lm_ft_only/lm_ft"

evaluate() { # label run mode [extra...]
  local label=$1 run=$2 mode=$3; shift 3
  local out="$OUT/eval/$label.json"
  mkdir -p "$OUT/eval"
  [ -f "$out" ] || "$RADIT" eval --checkpoint "$run" --data "$OUT/data/heldout.jsonl" \
    --limit "$N_EVAL" --mode "$mode" --k "$K" --out "$out" "$@"
}
evaluate closed_book "$OUT/both" closed_book --base
evaluate rag_base "$OUT/both" ensemble --base
evaluate lm_ft_only "$OUT/lm_ft_only" ensemble
evaluate r_ft_only "$OUT/r_ft_only" ensemble
evaluate both "$OUT/both" ensemble

"$RADIT" report --title "RA-DIT ablation in miniature (paper Table 6)" \
  --command "scripts/reproduce_table6.sh  # N_EVAL=$N_EVAL K=$K" \
  --eval "closed book=$OUT/eval/closed_book.json" \
  --eval "RAG, base models=$OUT/eval/rag_base.json" \
  --eval "LM-ft only=$OUT/eval/lm_ft_only.json" \
  --eval "R-ft only=$OUT/eval/r_ft_only.json" \
  --eval "LM-ft + R-ft=$OUT/eval/both.json" \
  --run "both=$OUT/both" --run "R-ft only=$OUT/r_ft_only" \
  --out "$REPORT"
echo "table 6 reproduced in $(( $(date +%s) - started )) s -> $REPORT/README.md"
