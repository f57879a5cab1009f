#!/usr/bin/env bash
# lab/make-samples.sh - regenerates samples/ from the Wine lab (lab/setup.sh first).
# One attack and one benign control, each: wineserver.trace.gz, victim.dmp.gz,
# the victim exe (and payload), meta.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash lab/setup.sh
cargo build -q -p preentry-lab --example make-sample
BIN="$ROOT/target/debug/examples/make-sample"
sample() { # scenario checkpoint
    local out="samples/$1"
    rm -rf "$out"
    "$BIN" "$1" "$2" "$out"
    gzip -9n "$out/victim.dmp" "$out/wineserver.trace"
}
sample tls-array-swap suspended
sample benign-suspend-resume suspended
du -sh samples/*
