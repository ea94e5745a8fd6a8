#!/usr/bin/env bash
# Times bulk provisioning through the real commands (issue 11, section 3): N synthetic boxes
# (bench/synthetic_box_file.cc) imported with `usher entitlement device import`, then a package of
# three services granted to all of them with `usher entitlement grant --all`, then both again (all
# skipped: what resuming costs). Prints rows per second for each.
# Usage: [HEADEND_RSS=1] scripts/time-provisioning.sh BUILD_DIR [N]   (default N = 100000; the store goes in a
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
# With HEADEND_RSS=1: the headend's peak RSS following this store's EMM feed (every box's key EMM
# and the package's member grants) over 10 s of stream, against the same with no box at all.
if [ "${HEADEND_RSS:-0}" = 1 ]; then
  "$usher" streams generate --out "$work/clear.ts" --seconds 10 > /dev/null
  "$usher" entitlement init --home "$work/empty" > /dev/null
  "$usher" entitlement service add --home "$work/empty" --id 1 --name "Service 1" > /dev/null
  headend_rss() {  # engine home, port
    rm -rf "$work/head"
    "$usher" headend init --home "$work/head" --id 1 --operator "$1/operator.pub" > /dev/null
    "$usher" entitlement headend add --home "$1" --file "$work/head/headend.pub" > /dev/null
    "$usher" entitlement serve --home "$1" --bind "tcp://127.0.0.1:$2" > /dev/null 2>&1 &
    local engine=$!
    sleep 2
    /usr/bin/time -f "%M" -o "$work/rss" "$usher" headend run --engine "tcp://127.0.0.1:$2" --home "$work/head" \
      --in "$work/clear.ts" --out "$work/out.ts" --services 1 > "$work/headend.out" 2> "$work/headend.log" || tail -5 "$work/headend.log" >&2
    kill "$engine"; wait "$engine" 2> /dev/null || true
    cat "$work/rss"
  }
  with=$(headend_rss "$work/ent" 7791)
  grep -o "EMM carousel: .*" "$work/headend.log" | tail -1 || true
  without=$(headend_rss "$work/empty" 7792)
  awk -v a="$with" -v b="$without" -v n="$n" 'BEGIN { printf "headend peak RSS: %.0f MB with %d boxes, %.0f MB with none (%.2f x)\n", a / 1024, n, b / 1024, a / b }'
fi
