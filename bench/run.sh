#!/usr/bin/env bash
# lvsmon's load benchmark (bench/README.md): builds the release binaries, then runs the
# standard set, or one `bench_run` command given as arguments:
#
#     bench/run.sh                       # the standard set (about 10 minutes)
#     bench/run.sh load --n 10000 --interval 1 --duration 30
#     bench/run.sh rss --sizes 10000,100000 --interval 10
#     bench/run.sh plan --n 100000
#
# Needs root for 100,000 endpoints (the farm raises its RLIMIT_NOFILE hard limit) and for
# the farm's SCHED_FIFO threads (`--no-rt` without root). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --bin lvsmon \
    --example bench_farm --example bench_floor --example bench_run
run="$target/release/examples/bench_run"

if [ "$#" -gt 0 ]; then
    exec "$run" "$@"
fi

# nice -10 for lvsmon, floor and farm alike: other work on the machine yields to them.
"$run" plan --n 100000 --repeat 5
"$run" load --n 10000 --interval 1 --duration 30 --history off --nice -10
"$run" load --n 10000 --interval 1 --duration 30 --history default --nice -10
"$run" load --n 100000 --interval 10 --duration 60 --history off --nice -10 --mode apart
"$run" rss --sizes 10000,100000 --interval 10 --history off,default --nice -10
