#!/usr/bin/env bash
# benches/scan-bench.sh [N] - wall and CPU time of `preentry scan`, per process and for
# `--all`, over N live Wine lab processes (default 8), and per minidump sample.
#
# Starts N copies of the lab's victim-tls.exe in the lab prefix (each blocks in main until
# released, 120 s at most), holding lab/build/lab.lock so no lab test runs meanwhile, then
# times the release binary with GNU time. Needs `bash lab/setup.sh` first.
# Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
N=${1:-8}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BUILD="$ROOT/lab/build"
[ -f "$BUILD/lab.env" ] || { echo "lab not set up: bash lab/setup.sh" >&2; exit 2; }
# shellcheck disable=SC1091
. <(sed 's/^/LAB_/' "$BUILD/lab.env")
cargo build --release -p preentry >&2
BIN="$ROOT/target/release/preentry"
TIME=/usr/bin/time
[ -x "$TIME" ] || { apt-get install -y -qq time >/dev/null; }

CTL=$(mktemp -d /tmp/scan-bench.XXXXXX)
PIDS=()
cleanup() {
    for d in "$CTL"/*/; do touch "$d/release-callback" "$d/release-main"; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill "$p" 2>/dev/null || true
    done
    rm -rf "$CTL"
}
trap cleanup EXIT

exec 9>"$BUILD/lab.lock"
flock 9
export WINEPREFIX="$LAB_prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
# One control directory per victim: the markers are exclusive-write files.
for i in $(seq 1 "$N"); do
    mkdir -p "$CTL/$i"
    touch "$CTL/$i/release-callback" # let the victim's own TLS callback through
    LABCTL="Z:${CTL//\//\\}\\$i" "$LAB_wine" "$LAB_bin/victim-tls.exe" >/dev/null 2>&1 &
    PIDS+=($!)
done
# Wait (bounded) until N victim processes exist and the count has been stable for 2 s.
stable=0; last=-1
for _ in $(seq 1 600); do
    n=$(pgrep -x victim-tls.exe | wc -l || true)
    if [ "$n" = "$last" ] && [ "$n" -ge "$N" ]; then stable=$((stable + 1)); else stable=0; fi
    last=$n
    [ "$stable" -ge 20 ] && break
    sleep 0.1
done
mapfile -t VICTIMS < <(pgrep -x victim-tls.exe)
echo "victims: ${#VICTIMS[@]} (Linux PIDs ${VICTIMS[*]})" >&2

REPS=${REPS:-10}
measure() { # label, command... -> "| label | wall | user | sys |" per run, mean of REPS runs
    local label=$1; shift
    "$@" >/dev/null 2>&1 || true # warm the page cache
    local out
    out=$( { $TIME -f '%e %U %S' bash -c 'for _ in $(seq 1 '"$REPS"'); do "$@" >/dev/null 2>&1 || true; done' _ "$@"; } 2>&1 | tail -1 )
    read -r wall user sys <<<"$out"
    awk -v l="$label" -v w="$wall" -v u="$user" -v s="$sys" -v n="$REPS" \
        'BEGIN { printf "| %s | %.4f | %.4f | %.4f |\n", l, w / n, u / n, s / n }'
}

echo "| what (mean of $REPS runs) | wall s | user CPU s | sys CPU s |"
echo "|---|---|---|---|"
measure "one live process (\`--pid\`, victim-tls.exe at main)" "$BIN" scan --pid "${VICTIMS[0]}" --json
measure "\`--pid\` × ${#VICTIMS[@]} lab victims in one run" "$BIN" scan --pid "${VICTIMS[@]}" --json
ALL=$("$BIN" scan --all --json | grep -c '"windows_pid":' || true)
measure "\`--all\` ($ALL Wine processes: ${#VICTIMS[@]} victims + Wine services)" "$BIN" scan --all --json
for s in samples/*; do
    d="$s/victim.dmp.gz"
    [ -f "$d" ] || continue
    measure "minidump \`$d\` (gzip, ~7 MB raw)" "$BIN" scan --dump "$d" --disk-root "$s" --json
done
