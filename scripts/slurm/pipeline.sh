#!/usr/bin/env bash
# RA-DIT on a SLURM cluster with its embarrassingly parallel parts spread over array tasks:
#
#   scripts/slurm/pipeline.sh RECIPE SHARDS [--output-dir DIR] [--set KEY=VALUE ...] [--eval-limit N]
#
# submits seven jobs, each starting when the one before has succeeded (afterok):
#   1. index      array 0..N-1  radit index build --recipe RECIPE --shard slurm
#   2. merge                    radit index merge --recipe RECIPE
#   3. lm-ft                    radit train RECIPE --before r_ft --resume auto
#   4. score      array 0..N-1  radit score RECIPE --shard slurm
#   5. train                    radit train RECIPE --resume auto   (R-ft finds every score cached)
#   6. eval       array 0..N-1  radit eval --checkpoint OUTPUT_DIR --shard slurm --out .../eval-sharded.json
#                               (the recipe's data.dev; --eval-limit N: its first N questions)
#   7. eval-merge               radit eval-merge (the N shard reports) --out OUTPUT_DIR/eval-sharded.json
# Every job runs under scripts/slurm/radit.sbatch, so a preempted one requeues and resumes.
# Extra sbatch options (partition, account, time) go in SBATCH_ARGS, e.g.
# SBATCH_ARGS="--partition=gpu --time=2:00:00". Prints the job ids, one per line, as
# `NAME ID`. RADIT names the binary (default: radit on PATH), resolved to a full path here.
set -euo pipefail
usage="usage: pipeline.sh RECIPE SHARDS [--output-dir DIR] [--set KEY=VALUE ...] [--eval-limit N]"
recipe=${1:?$usage}
shards=${2:?$usage}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
export RADIT=$(command -v "${RADIT:-radit}")
recipe=$(realpath "$recipe")
case "$shards" in '' | *[!0-9]* | 0) echo "SHARDS must be a positive number" >&2; exit 2 ;; esac

sets=()
out=
eval_opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --output-dir) out=$(realpath -m "${2:?$usage}"); shift 2 ;;
    --set) sets+=(--set "${2:?$usage}"); shift 2 ;;
    --eval-limit) eval_opts+=(--limit "${2:?$usage}"); shift 2 ;;
    *) echo "pipeline.sh: unknown option $1; $usage" >&2; exit 2 ;;
  esac
done
if [ -z "$out" ]; then
  out=$("$RADIT" recipe show "$recipe" "${sets[@]}" | sed -n 's/^output_dir = "\(.*\)"$/\1/p' | head -1)
fi
[ -n "$out" ] || { echo "pipeline.sh: could not read the recipe's output_dir" >&2; exit 2; }
# What every command that reads the recipe is given: one run folder, absolute.
run_opts=(--output-dir "$out" "${sets[@]}")
# The index commands take the run folder as a key (its index/ is the default index).
index_opts=("${sets[@]}" --set "output_dir=$out")
array="--array=0-$((shards - 1))"
last=
submit() { # NAME [sbatch options] -- radit arguments
  local name=$1; shift
  local opts=()
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  local dep=()
  [ -n "$last" ] && dep=(--dependency="afterok:$last")
  # shellcheck disable=SC2086
  last=$(sbatch --parsable --job-name="radit-$name" "${dep[@]}" "${opts[@]}" ${SBATCH_ARGS:-} \
    "$here/radit.sbatch" "$@")
  last=${last%%;*}
  echo "$name $last"
}
submit index "$array" -- index build --recipe "$recipe" "${index_opts[@]}" --shard slurm
submit merge -- index merge --recipe "$recipe" "${index_opts[@]}"
submit lm-ft -- train "$recipe" "${run_opts[@]}" --before r_ft --resume auto
submit score "$array" -- score "$recipe" "${run_opts[@]}" --shard slurm
submit train -- train "$recipe" "${run_opts[@]}" --resume auto
submit eval "$array" -- eval --checkpoint "$out" "${eval_opts[@]}" --shard slurm \
  --out "$out/eval-sharded.json"
parts=()
for i in $(seq 0 $((shards - 1))); do parts+=("$out/eval-sharded.shard-$i-of-$shards.json"); done
submit eval-merge -- eval-merge "${parts[@]}" --out "$out/eval-sharded.json"
