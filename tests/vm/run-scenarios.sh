#!/usr/bin/env bash
# Builds lvsmon and the allocation-counting test, boots the IPVS VM (tests/vm/run.sh) and runs
# tests/vm/scenarios.sh in it: lvsmon against a real kernel's IPVS table. Prints one verdict
# line per scenario and exits non-zero if any failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never

# Binaries for the guest: no target-cpu=native (the guest CPU is qemu64).
cargo build --release --quiet --bin lvsmon
no_alloc=$(cargo test --release --quiet --test no_alloc --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "no_alloc":
        print(m["executable"])')
bin_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import sys, json; print(json.load(sys.stdin)["target_directory"])')/release

start=$(date +%s)
tests/vm/run.sh -t 900 \
    -i "$bin_dir/lvsmon" \
    -i "$no_alloc:no_alloc" \
    -i tests/vm/scenarios.sh \
    -i tests/vm/scenario.conf \
    -i tests/vm/pairs.sh \
    -i /usr/sbin/keepalived \
    -i tests/vm/keepalived-roundtrip.conf \
    -- bash /work/scenarios.sh
echo "vm scenarios: $(( $(date +%s) - start )) s"
