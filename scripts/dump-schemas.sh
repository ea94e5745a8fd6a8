#!/usr/bin/env bash
# Writes the schema of every SQLite store, as the given `usher` binary makes it, into one SQL file
# per store and version: DIR/engine-vN.sql, billing-vN.sql, wallet-vN.sql, stb-vN.sql,
# stb-link-vN.sql, headend-vN.sql (N is the file's PRAGMA user_version; a store written before
# versions were kept has 0 and is schema 1). The tests build "a database of the previous schema"
# from these files, and tests/stores/schema_versions_test.cc checks that today's code still writes the
# newest one. Run it after adding a migration step (docs/architecture.md, "Schema versions"); files
# already there are kept as they are:
#
#   scripts/dump-schemas.sh build/app/usher tests/data/schema
#
# Needs the sqlite3 command-line shell. Uses a temporary directory and two loopback ports.
set -euo pipefail

usher=$(realpath "${1:?usage: dump-schemas.sh USHER_BINARY OUT_DIR}")
out=$(realpath -m "${2:?usage: dump-schemas.sh USHER_BINARY OUT_DIR}")
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

base=$((20000 + $$ % 20000))
engine="tcp://127.0.0.1:$base"
link="tcp://127.0.0.1:$((base + 1))"

# Waits until a file exists (a service has started).
wait_for() {
  for _ in $(seq 100); do
    [ -e "$1" ] && return 0
    sleep 0.1
  done
  echo "dump-schemas: $1 did not appear" >&2
  return 1
}

# dump NAME FILE: the CREATE statements in the order they were made, then the version.
dump() {
  local name=$1 file=$2 version
  version=$(sqlite3 "$file" "PRAGMA user_version")
  local n=$((version > 0 ? version : 1))
  # A shipped version's dump is what the tests make "the previous schema" from: never rewritten.
  if [ -e "$out/$name-v$n.sql" ]; then
    echo "$out/$name-v$n.sql (kept: already dumped)"
    return
  fi
  {
    echo "-- The schema of Usher's $name store (schema $n), as scripts/dump-schemas.sh dumped it from a"
    echo "-- store made by \`usher\`. Test data: do not edit by hand."
    sqlite3 "$file" "SELECT sql || ';' FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
    echo "PRAGMA user_version = $version;"
  } >"$out/$name-v$n.sql"
  echo "$out/$name-v$n.sql"
}

"$usher" entitlement init --home ops --ca-system-id 0x4aff >/dev/null
"$usher" stb init --home box --id 1001 --operator ops/operator.pub >/dev/null
"$usher" entitlement device add --home ops --stb-file box/stb.pub --account alice >/dev/null
"$usher" headend init --home head --id 1 --operator ops/operator.pub >/dev/null
"$usher" billing init --home bill --operator ops/operator.pub >/dev/null
"$usher" entitlement billing add --home ops --public-file bill/billing.pub --out bill.cert >/dev/null
"$usher" billing certify --home bill --certificate bill.cert >/dev/null
"$usher" entitlement serve --home ops --bind "$engine" >/dev/null 2>&1 &
pids+=($!)
"$usher" stb link --home box --bind "$link" >/dev/null 2>&1 &
pids+=($!)
wait_for box/link.db
sleep 0.5
"$usher" wallet init --home phone --account alice --currency EUR --operator ops/operator.pub --engine "$engine" >/dev/null

dump engine ops/entitlement.db
dump billing bill/billing.db
dump wallet phone/wallet.db
dump stb box/stb.db
dump stb-link box/link.db
dump headend head/headend.db
