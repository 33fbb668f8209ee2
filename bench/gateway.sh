#!/usr/bin/env bash
# Gateway figures that need real processes: configuration propagation on a three-node cluster
# (write acked by node 1 → served by node 3's proxy) and node memory with 10 005 routes; then
# the route-matching micro-benchmark.
#
#   bench/gateway.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p hermes-node
cargo bench -p hermes-tests --bench gateway 2>/dev/null | grep -E '^(propagation|memory)'
cargo bench -p hermes-gateway --bench routing 2>/dev/null | grep -E '^routing'
