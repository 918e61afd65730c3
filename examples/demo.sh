#!/usr/bin/env bash
# Builds lvsmon, starts a few loopback backends (examples/demo_backends.rs: healthy, failing,
# flapping), and runs `lvsmon --dry-run -v` on examples/demo.conf for DEMO_SECONDS (default 20).
# Nothing touches IPVS and no traffic leaves 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEMO_SECONDS="${DEMO_SECONDS:-20}"
cargo build --release --quiet --bin lvsmon --example demo_backends
target/release/examples/demo_backends &
backends=$!
trap 'kill "$backends" 2>/dev/null || true; wait "$backends" 2>/dev/null || true' EXIT
sleep 0.5
echo "--- lvsmon --dry-run -v --file examples/demo.conf (for ${DEMO_SECONDS}s; Ctrl-C stops it)"
status=0
run=$(mktemp -d)
trap 'kill "$backends" 2>/dev/null || true; wait "$backends" 2>/dev/null || true; rm -rf "$run"' EXIT
echo "    (control socket $run/lvsmon.sock: try \`target/release/lvsmon status --socket $run/lvsmon.sock\` in another terminal)"
timeout --signal=TERM "$DEMO_SECONDS" target/release/lvsmon --dry-run -v --file examples/demo.conf \
    --socket "$run/lvsmon.sock" --state-dir "$run/state" || status=$?
# timeout(1) says 124 when it had to stop lvsmon; lvsmon itself exits 0 on SIGTERM.
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ]; then exit "$status"; fi
