#!/usr/bin/env bash
# lab/setup.sh - sets up the Wine attack lab. Idempotent; run by .ci/run.
#   1. installs wine, wine64 and gcc-mingw-w64-x86-64 with apt when missing
#   2. builds the lab programs (lab/src/*.c) into lab/build/bin
#   3. creates the private WINEPREFIX lab/build/prefix
#   4. puts the bcryptprimitives.dll shim into the prefix's system32
#   5. writes lab/build/lab.env, which the Rust runner (preentry-lab) reads
# A re-run with nothing changed only hashes the sources and exits.
set -euo pipefail

LAB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="$LAB/build"
BIN="$BUILD/bin"
PREFIX="$BUILD/prefix"
STAMP="$BUILD/stamp"
SRC="$LAB/src"
export WINEPREFIX="$PREFIX" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="

log() { echo "lab/setup.sh: $*" >&2; }

# --- 1. packages -----------------------------------------------------------
WINE64=/usr/lib/wine/wine64
need=()
command -v wine >/dev/null 2>&1 || need+=(wine)
[ -x "$WINE64" ] || need+=(wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        wine wine64 gcc-mingw-w64-x86-64 >/dev/null
fi
WINESERVER="$(command -v wineserver)"
# Rust windows-gnu target (for preentry.exe under Wine and the shim test); not fatal
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
    log "adding Rust target x86_64-pc-windows-gnu"
    rustup target add x86_64-pc-windows-gnu >/dev/null 2>&1 || log "warning: rustup target add x86_64-pc-windows-gnu failed"
fi

# --- stamp: sources + this script + tool versions ----------------------------
hash="$( (cat "$0" "$SRC"/*; x86_64-w64-mingw32-gcc --version | head -1; wine --version) | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$hash" ] && [ -f "$PREFIX/system.reg" ] && [ -f "$BUILD/lab.env" ] \
    && [ -f "$BIN/minidump.exe" ] && [ -f "$PREFIX/drive_c/windows/system32/bcryptprimitives.dll" ]; then
    log "up to date"
    exit 0
fi
rm -f "$STAMP"
mkdir -p "$BIN"

# --- 2. lab programs -------------------------------------------------------
CC=x86_64-w64-mingw32-gcc
CFLAGS=(-O2 -Wall -Wextra -Werror -s)
cc() { log "cc -> $1"; out="$1"; shift; $CC "${CFLAGS[@]}" -o "$BIN/$out" "$@"; }

# victims
cc victim-tls.exe   "$SRC/victim.c" -DVICTIM_NAME='"victim-tls"' -DVICTIM_OWN_TLS
cc victim-crt.exe   "$SRC/victim.c" -DVICTIM_NAME='"victim-crt"'
cc victim-notls.exe "$SRC/victim.c" -DVICTIM_NAME='"victim-notls"' -DVICTIM_NO_CRT \
    -ffreestanding -fno-builtin -nostdlib -nostartfiles -e lab_entry -lkernel32 -lgcc
cc jit.exe          "$SRC/jit.c"
cc selfunpack.exe   "$SRC/selfunpack.c"
cc payload.exe      "$SRC/payload.c"

# injected code: position independent, see inject.c
$CC -O2 -Wall -Wextra -Werror -c -o "$BUILD/inject.o" "$SRC/inject.c" \
    -ffreestanding -fno-builtin -fno-jump-tables -fno-stack-protector -mcmodel=small \
    -fno-toplevel-reorder -fno-reorder-blocks-and-partition -fno-tree-loop-distribute-patterns

# attacks
for a in tls-array-swap tls-slot-overwrite tls-directory-redirect early-bird-apc; do
    cc "$a.exe" "$SRC/$a.c" "$BUILD/inject.o" -lntdll
done
cc hollow-runpe.exe     "$SRC/hollow-runpe.c" -lntdll
cc hollow-relocated.exe "$SRC/hollow-relocated.c" -lntdll

# benign controls
cc benign-suspend-resume.exe "$SRC/launch.c" -DLAUNCH_CHILD='"victim-tls.exe"' -lntdll
cc benign-jit.exe            "$SRC/launch.c" -DLAUNCH_CHILD='"jit.exe"' -lntdll
cc benign-self-unpack.exe    "$SRC/launch.c" -DLAUNCH_CHILD='"selfunpack.exe"' -lntdll
cc benign-debugger.exe       "$SRC/benign-debugger.c" -lntdll

# evidence writer and the Rust shim
cc minidump.exe "$SRC/minidump.c" -ldbghelp
cc bcryptprimitives.dll -shared "$SRC/bcryptprimitives.c" "$SRC/bcryptprimitives.def" -ladvapi32

# --- 3. prefix -------------------------------------------------------------
if [ ! -f "$PREFIX/system.reg" ]; then
    log "creating WINEPREFIX $PREFIX"
    mkdir -p "$PREFIX"
    wine wineboot --init >/dev/null 2>&1
    "$WINESERVER" -w
fi

# --- 4. shim ---------------------------------------------------------------
cp "$BIN/bcryptprimitives.dll" "$PREFIX/drive_c/windows/system32/bcryptprimitives.dll"

# --- 5. runner environment ---------------------------------------------------
cat >"$BUILD/lab.env" <<ENV
wine=$WINE64
wineserver=$WINESERVER
prefix=$PREFIX
bin=$BIN
ENV
echo "$hash" >"$STAMP"
log "ready"
