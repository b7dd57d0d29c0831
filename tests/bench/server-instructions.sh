#!/usr/bin/env bash
# Instructions a `tocsin serve` build spends per event, whole server (HTTP, JSON, engine,
# commit): callgrind on the server under one connection (so group commit batches nothing and
# the count repeats), 2,000 and then 6,000 events, the difference divided by 4,000.
#
#   tests/bench/server-instructions.sh TOCSIN [TOCSIN ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
lg=target/release/examples/loadgen
port=18282
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
one() {
  local bin=$1 n=$2
  rm -rf "$data/d"
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" serve --listen 127.0.0.1:$port \
    --data-dir "$data/d" >"$data/serve.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do curl -fsS -o /dev/null http://127.0.0.1:$port/api/v1/healthz 2>/dev/null && break; sleep 0.2; done
  "$lg" --server http://127.0.0.1:$port --alerts 1000 --connections 1 --seconds 120 --max-requests "$n" >/dev/null 2>&1
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  grep -o "Collected : [0-9]*" "$data/serve.log" | grep -o "[0-9]*"
}
for bin in "$@"; do
  a=$(one "$bin" 2000); b=$(one "$bin" 6000)
  echo "$bin: $(( (b - a) / 4000 )) instructions per event"
done
