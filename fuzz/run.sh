#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after another, and prints per
# target the executions, the coverage, the corpus size and whether it found anything. Exits 1 if any target
# crashed, leaked, ran out of memory or hung (its input is then in fuzz/artifacts/TARGET/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (cargo install cargo-fuzz --locked). On a stable toolchain it sets
# RUSTC_BOOTSTRAP=1, which cargo-fuzz needs for -Z flags. Not part of CI (which runs each
# target over its corpus only: fuzz/corpus.sh). Logs go to
# fuzz/logs/TARGET.log. CARGO_TARGET_DIR is honoured (default fuzz/target).
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."

secs=${1:-60}
shift || true
case $secs in
    '' | *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(config http banner script dns netlink state history)
fi

export RUSTC_BOOTSTRAP=1
mkdir -p "$here/logs"

start=$(date +%s)
echo "building the fuzz targets (debug assertions and ASan on)..."
if ! cargo fuzz build >"$here/logs/build.log" 2>&1; then
    tail -30 "$here/logs/build.log" >&2
    echo "build failed (fuzz/logs/build.log)" >&2
    exit 2
fi
built=$(date +%s)
echo "built in $((built - start)) s; fuzzing ${secs} s per target"
echo

failed=0
printf '%-9s %12s %8s %6s %7s %7s  %s\n' TARGET EXECUTIONS EXEC/S COV CORPUS FILES RESULT
for t in "${targets[@]}"; do
    log="$here/logs/$t.log"
    mkdir -p "$here/corpus/$t"
    t0=$(date +%s)
    cargo fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=30 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    # libFuzzer's own count: the final stats line, else the last "#N ... DONE"/status line.
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    if [ -z "$execs" ]; then
        execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    fi
    execs=${execs:-0}
    rate=$(( execs / ( (t1 - t0) > 0 ? (t1 - t0) : 1 ) ))
    # Edges covered and inputs in libFuzzer's corpus (its last status line), and the files in
    # fuzz/corpus/TARGET (more: inputs later replaced by smaller ones stay until a cmin).
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | tr -dc '0-9')
    corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | tr -dc '0-9')
    files=$(find "$here/corpus/$t" -type f | wc -l)
    if [ $rc -eq 0 ]; then
        result="nothing found"
    else
        failed=1
        what=$(grep -m1 -o 'ERROR: libFuzzer: [a-z-]*\|ERROR: AddressSanitizer: [a-z-]*\|panicked at [^:]*:[0-9]*' "$log")
        artifact=$(grep -m1 -o "Test unit written to [^ ]*\|artifact_prefix='[^']*'; Test unit written to [^ ]*" "$log" | sed 's/.*written to //')
        result="FOUND (exit $rc): ${what:-see log}; input: ${artifact:-?}; log: fuzz/logs/$t.log"
    fi
    printf '%-9s %12s %8s %6s %7s %7s  %s\n' "$t" "$execs" "$rate" "${cov:-?}" "${corp:-?}" "$files" "$result"
done
end=$(date +%s)
echo
echo "total $((end - start)) s"
exit $failed
