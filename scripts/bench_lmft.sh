#!/usr/bin/env bash
# W1 LM-ft benchmark: radit and the PyTorch peer back to back (see scripts/bench.sh).
# Extra arguments go to both (e.g. --steps 5 --warmup 2 --breakdown).
exec "$(dirname "$0")/bench.sh" lm-ft "$@"
