#!/usr/bin/env bash
# HTTP ingest of two `tocsin` builds, run in interleaved pairs (the order alternates), each on a
# fresh data directory with 1,000 alerts and 16 connections for 10 s. Prints one line per run.
#
#   tests/bench/paired-ingest.sh BASELINE_TOCSIN CANDIDATE_TOCSIN [PAIRS]
#
# Build each tree with `cargo build --release -p tocsin --bin tocsin --example loadgen`; the
# load generator is this tree's.
set -euo pipefail
cd "$(dirname "$0")/../.."
base=$1 cand=$2 pairs=${3:-6}
lg=target/release/examples/loadgen
port=18181
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
run() {
  local name=$1 bin=$2
  rm -rf "$data/d"
  "$bin" serve --listen 127.0.0.1:$port --data-dir "$data/d" >"$data/serve.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:$port/api/v1/healthz 2>/dev/null && break; sleep 0.1; done
  printf '%s ' "$name"
  "$lg" --server http://127.0.0.1:$port --alerts 1000 --connections 16 --seconds 10 2>&1 | tail -1
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
for i in $(seq "$pairs"); do
  if [ $((i % 2)) -eq 1 ]; then run baseline "$base"; run candidate "$cand"
  else run candidate "$cand"; run baseline "$base"; fi
done
