#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR/fuzz for SECONDS each, seeded by fuzz_seeds.
# Usage: scripts/run-fuzzers.sh BUILD_DIR SECONDS
set -euo pipefail
build=${1:?build dir}
seconds=${2:-30}
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
"$build/fuzz/fuzz_seeds" "$seeds"
status=0
for target in fuzz_packet_sync fuzz_locator fuzz_rtp fuzz_sections fuzz_messages fuzz_descrambler fuzz_scrambler fuzz_engine fuzz_local_link fuzz_billing fuzz_pms fuzz_cli fuzz_stb_store fuzz_metrics fuzz_postgres_url fuzz_provisioning; do
  corpus="fuzz-corpus/$target"
  mkdir -p "$corpus" "$seeds/$target"
  echo "--- $target (${seconds}s)"
  if ! USHER_LOG=off "$build/fuzz/$target" -max_total_time="$seconds" -max_len=20000 -print_final_stats=1 \
      "$corpus" "$seeds/$target" 2>"$build/$target.log"; then
    echo "$target FAILED:"; tail -40 "$build/$target.log"; status=1
  else
    grep -E 'stat::number_of_executed_units|stat::new_units_added' "$build/$target.log" | tr '\n' ' '; echo
  fi
done
exit $status
