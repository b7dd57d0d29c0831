#!/usr/bin/env bash
# HTTP ingest of two `tocsin` builds, run in interleaved pairs (the order alternates), each on a
# fresh data directory with 1,000 alerts and 16 connections for 10 s. Prints one line per run.
#
#   tests/bench/paired-ingest.sh BASELINE_TOCSIN CANDIDATE_TOCSIN [PAIRS]
#
# Build each tree with `cargo build --release -p tocsin --bin tocsin --example loadgen`; the
# load generator is this tree's. With CANDIDATE_AUTH=1 the candidate runs with auth on (an admin
# token made with `tocsin token create`, sent by the load generator): the same binary twice
# then measures what auth costs.
set -euo pipefail
cd "$(dirname "$0")/../.."
base=$1 cand=$2 pairs=${3:-6}
lg=target/release/examples/loadgen
port=18181
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
run() {
  local name=$1 bin=$2 auth=${3:-0} token=""
  rm -rf "$data/d"
  if [ "$auth" = 1 ]; then
    token=$("$bin" token create --data-dir "$data/d" --role admin --project '*' --name bench)
  fi
  TOCSIN_AUTH__ENABLED=$([ "$auth" = 1 ] && echo true || echo false) \
    "$bin" serve --listen 127.0.0.1:$port --data-dir "$data/d" >"$data/serve.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:$port/api/v1/healthz 2>/dev/null && break; sleep 0.1; done
  printf '%s ' "$name"
  TOCSIN_TOKEN=$token "$lg" --server http://127.0.0.1:$port --alerts 1000 --connections 16 --seconds 10 2>&1 | tail -1
  kill "$pid" 2>/dev/null || echo "($name: the server had already exited; see $data/serve.log)"; wait "$pid" 2>/dev/null || true
}
for i in $(seq "$pairs"); do
  if [ $((i % 2)) -eq 1 ]; then run baseline "$base"; run candidate "$cand" "${CANDIDATE_AUTH:-0}"
  else run candidate "$cand" "${CANDIDATE_AUTH:-0}"; run baseline "$base"; fi
done
