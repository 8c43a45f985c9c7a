#!/usr/bin/env bash
# Long mutation-fuzzing runs of radit's untrusted parsers (crates/fuzz): builds radit-fuzz,
# runs PARSER (or every parser, `all`) for MINUTES minutes each and prints one summary line per
# parser (cases, ok, err, failures with seed, case and mutation). Exit status non-zero on any
# failure. A failing case is reproduced with
#   target/release/radit-fuzz PARSER --seed S --case I --save case.bin
#   scripts/fuzz.sh PARSER MINUTES [--seed S]       PARSER: gguf config-json safetensors
#       tokenizer recipe jsonl tsv corpus manifest, or all; `list` describes them.
# The binary runs under `ulimit -v` (FUZZ_VMEM_KB, default 8 GiB) so a multi-GB allocation
# fails and aborts instead of being lazily overcommitted; an abort (signal exit) is reported
# with the last progress line. Env: CARGO_TARGET_DIR (default target), FUZZ_VMEM_KB,
# RADIT_FUZZ (a radit-fuzz binary to run instead of building one).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/fuzz.sh PARSER|all|list MINUTES [--seed S]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
parser=$1
shift
target_dir=${CARGO_TARGET_DIR:-target}
if [ -n "${RADIT_FUZZ:-}" ]; then
  bin=$RADIT_FUZZ
else
  bin="$target_dir/release/radit-fuzz"
  CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0} cargo build --release -p radit-fuzz >&2
fi
if [ "$parser" = list ]; then exec "$bin" list; fi
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
minutes=$1
shift

vmem_kb=${FUZZ_VMEM_KB:-8388608}
log=$(mktemp "${TMPDIR:-/tmp}/radit-fuzz-XXXXXX.log")
echo "fuzzing $parser for $minutes min each (ulimit -v $vmem_kb KB); progress in $log" >&2
status=0
# stdout (the summaries) passes through; stderr (progress, refusals, panics) goes to the log.
( ulimit -v "$vmem_kb"; exec "$bin" "$parser" --minutes "$minutes" "$@" ) 2>"$log" || status=$?
if [ "$status" -gt 128 ]; then
  echo "radit-fuzz ABORTED by signal $((status - 128)) while fuzzing $parser" >&2
  echo "last progress line: $(grep '^progress ' "$log" | tail -n 1 || echo '(none yet)')" >&2
  echo "last lines of stderr:" >&2
  tail -n 5 "$log" >&2
elif [ "$status" -ne 0 ]; then
  echo "radit-fuzz found failures in $parser (exit $status); stderr in $log" >&2
else
  rm -f "$log"
fi
exit "$status"
