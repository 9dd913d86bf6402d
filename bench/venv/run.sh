#!/usr/bin/env bash
# The venv benchmark: a release build of tiers, uv on PATH, then bench.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/ensure-tools
source scripts/ensure-tools
cargo build --release --quiet --bin tiers
target_dir="${CARGO_TARGET_DIR:-target}"
exec python3 bench/venv/bench.py --tiers "$target_dir/release/tiers" "$@"
