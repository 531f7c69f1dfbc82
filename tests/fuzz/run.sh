#!/bin/sh
# Runs a libFuzzer target for a bounded time on a scratch copy of its seed corpus (the seeds stay
# untouched); a crash fails the test and leaves crash-<sha1> in $LVD_FUZZ_ARTIFACTS (default: the
# current folder). Usage: run.sh FUZZER SEED_DIR SECONDS
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=${LVD_FUZZ_ARTIFACTS:-$PWD}
"$1" -max_total_time="$3" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  -artifact_prefix="$out/" "$work" "$2"
