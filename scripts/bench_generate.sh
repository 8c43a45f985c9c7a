#!/usr/bin/env bash
# W5 generation benchmark: radit and the PyTorch peer back to back (see scripts/bench.sh).
exec "$(dirname "$0")/bench.sh" generate "$@"
