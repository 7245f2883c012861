#!/usr/bin/env bash
# Soak the gateway binary: mixed traffic (valid, refused, distinct and junk-kid tokens) from 16
# loopback workers, policy reloads every 10 s, key rotations every 60 s; reports RSS and open
# descriptors at start and end, p50/p99 latency and answers by status (bench/soak.rs). Exits 1
# when an answer was lost or unexpected, or a create reached Keycloak other than once.
#
#   bench/soak.sh              # 10 minutes, release build
#   bench/soak.sh 60 debug     # what scripts/test runs (the debug build cargo test made)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-600}
profile=${2:-release}
target=${CARGO_TARGET_DIR:-target}
if [[ $profile == release ]]; then
    cargo build --release --quiet --bin dcr-gateway
    exec cargo bench --quiet --bench soak -- --seconds "$seconds" --bin "$target/release/dcr-gateway"
fi
cargo build --quiet --bin dcr-gateway
exec cargo test --quiet --bench soak -- --seconds "$seconds" --bin "$target/debug/dcr-gateway"
