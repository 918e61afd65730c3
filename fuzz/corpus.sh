#!/usr/bin/env bash
# Builds the fuzz targets on a stable toolchain (`cargo build --release`: libFuzzer linked,
# no sanitizer, debug assertions and overflow checks on) and runs each one over its corpus
# and its saved regressions without fuzzing (`-runs=0`): one line per target, exit 1 if any
# input crashes one. .ci/run calls it; no cargo-fuzz needed.
#
#   fuzz/corpus.sh [TARGET...]
#
# CARGO_TARGET_DIR is honoured (default fuzz/target). A crashing input is written to a
# temporary directory, named in the output, never into the repository.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(config http banner script dns netlink state history)
fi

# Milliseconds since the epoch, and "S.SS s" since a given one (bash only: no bc on a fresh
# machine).
ms() { local t=${EPOCHREALTIME//[.,]/}; echo $((t / 1000)); }
since() { local d=$(($(ms) - $1)); printf '%d.%02d s' $((d / 1000)) $((d % 1000 / 10)); }

start=$(ms)
cargo build --release --quiet --bins || exit 1
bin=${CARGO_TARGET_DIR:-$here/target}/release
echo "built in $(since "$start")"

art=$(mktemp -d)
failed=()
for t in "${targets[@]}"; do
    dirs=("corpus/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    inputs=$(find "${dirs[@]}" -type f | wc -l)
    t0=$(ms)
    if out=$("$bin/$t" "${dirs[@]}" -runs=0 -artifact_prefix="$art/$t-" 2>&1); then
        printf '%-8s ok    %4d inputs in %s\n' "$t" "$inputs" "$(since "$t0")"
    else
        printf '%-8s CRASH (%d inputs; output below, input in %s)\n' "$t" "$inputs" "$art"
        # The panic and libFuzzer's summary, without the backtrace's frames.
        echo "$out" | grep -v -e '^ *[0-9]*: ' -e '^ *at ' | tail -n 30
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz targets that crashed on their corpus: ${failed[*]}"
    exit 1
fi
rmdir "$art" 2>/dev/null || true
