#!/usr/bin/env bash
# W2 R-ft benchmark: radit and the PyTorch peer back to back (see scripts/bench.sh).
exec "$(dirname "$0")/bench.sh" r-ft "$@"
