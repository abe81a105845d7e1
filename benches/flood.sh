#!/usr/bin/env bash
# Flood survival at full size: tests/e2e/flood.sh with 1M spoofed REGISTERs (130k distinct
# sources) sent as fast as the sender manages, plus the brute force and the phones. As root.
#
#   sudo benches/flood.sh [PACKETS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bins
exec bash tests/e2e/flood.sh target/release/sipwall "${1:-1000000}" "${2:-200000}"
