#!/usr/bin/env bash
# The README's test command. Lab tests skip loudly when the Wine lab is not built
# (run `bash lab/setup.sh` first) and fail instead when PREENTRY_REQUIRE_LAB=1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --no-fail-fast
