#!/usr/bin/env bash
# W3 LSR scoring benchmark: radit and the PyTorch peer back to back (see scripts/bench.sh).
exec "$(dirname "$0")/bench.sh" lsr "$@"
