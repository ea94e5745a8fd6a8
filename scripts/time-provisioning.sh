#!/usr/bin/env bash
# Times bulk provisioning through the real commands (issue 11, section 3): N synthetic boxes
# (bench/synthetic_box_file.cc) imported with `usher entitlement device import`, then a package of
# three services granted to all of them with `usher entitlement grant --all`, then both again (all
# skipped: what resuming costs). Prints rows per second for each.
# Usage: scripts/time-provisioning.sh BUILD_DIR [N]   (default N = 100000; the store goes in a
# temporary directory, removed at the end)
set -euo pipefail
build=${1:?build dir}
n=${2:-100000}
usher="$build/app/usher"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$build/bench/usher_synthetic_boxes" "$n" > "$work/boxes.csv"
"$usher" entitlement init --home "$work/ent" > /dev/null
for s in 1 2 3; do "$usher" entitlement service add --home "$work/ent" --id "$s" --name "Service $s" > /dev/null; done
"$usher" entitlement package add --home "$work/ent" --id 1 --name Basic --services 1,2,3 > /dev/null
timed() {
  local what=$1; shift
  local start end
  start=$(date +%s.%N)
  "$@" 2> /dev/null | tail -1
  end=$(date +%s.%N)
  awk -v w="$what" -v n="$n" -v s="$start" -v e="$end" 'BEGIN { printf "%s: %.1f s, %.0f rows/s\n", w, e - s, n / (e - s) }'
}
timed "import" "$usher" entitlement device import --home "$work/ent" --file "$work/boxes.csv"
timed "grant (3 services, one EMM each)" "$usher" entitlement grant --home "$work/ent" --package 1 --all --days 30
timed "import again (all skipped)" "$usher" entitlement device import --home "$work/ent" --file "$work/boxes.csv"
echo "store: $(du -sh "$work/ent" | cut -f1)"
