#!/usr/bin/env bash
# Cross-builds the Windows build of preentry (preentry.exe, x86_64-pc-windows-gnu) so that
# crates/cli/tests/windows_lab.rs can run it under Wine.
#
#   bash scripts/cross-build-windows.sh            # debug build (what the tests pick up)
#   bash scripts/cross-build-windows.sh --release  # release build (preferred by the tests)
#
# Needs the rustup target and the mingw-w64 linker:
#   rustup target add x86_64-pc-windows-gnu
#   apt-get install gcc-mingw-w64-x86-64
# When either is missing this prints a loud warning and exits 3 (CI turns that into a
# warning and the Windows lab tests skip loudly, or fail under PREENTRY_REQUIRE_LAB=1).
# Any other failure (a compile error) exits with cargo's status.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
warn() {
    echo "==================================================================" >&2
    echo "  WARNING: Windows build of preentry NOT built: $*" >&2
    echo "==================================================================" >&2
    exit 3
}

if ! command -v rustup >/dev/null 2>&1; then
    warn "rustup not found (cannot add the $TARGET target)"
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    if ! rustup target add "$TARGET" >&2; then
        warn "rustup target $TARGET cannot be installed on this machine"
    fi
fi
if ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
    warn "x86_64-w64-mingw32-gcc (package gcc-mingw-w64-x86-64) is not installed"
fi

cargo build --target "$TARGET" -p preentry "$@"
cargo build --target "$TARGET" -p preentry-memory-windows --example describe "$@"
profile=debug
for a in "$@"; do [ "$a" = "--release" ] && profile=release; done
exe="${CARGO_TARGET_DIR:-target}/$TARGET/$profile/preentry.exe"
echo "built $exe ($(stat -c %s "$exe") bytes)"
