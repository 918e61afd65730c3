#!/usr/bin/env bash
# Smoke test of the VM harness: one IPVS service with one masquerading real server, read back
# with ipvsadm -Ln from a real kernel. Prints "smoke: ok" and the wall time, or the output and
# a reason, and exits non-zero.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

start=$(date +%s.%N)
out=$("$here/run.sh" -t 120 -- sh -c '
    set -e
    ipvsadm -A -t 10.0.0.1:80 -s wrr
    ipvsadm -a -t 10.0.0.1:80 -r 127.0.0.2:80 -m -w 3
    ipvsadm -Ln')
rc=$?
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

fail() {
    printf '%s\n' "$out" | sed 's/^/  | /' >&2
    echo "smoke: FAILED: $*" >&2
    exit 1
}
[ "$rc" = 0 ] || fail "run.sh exited $rc"
grep -Eq '^IP Virtual Server version [0-9.]+ \(size=[0-9]+\)$' <<<"$out" || fail "no version line"
grep -Eq '^TCP  10\.0\.0\.1:80 wrr *$' <<<"$out" || fail "no service line 'TCP  10.0.0.1:80 wrr'"
grep -Eq '^  -> 127\.0\.0\.2:80 +Masq +3 +0 +0 *$' <<<"$out" || fail "no real server line '127.0.0.2:80 Masq 3'"
[ "$(grep -c -- '->' <<<"$out")" = 2 ] || fail "expected the header and exactly one real server"
echo "smoke: ok (${secs} s)"
