#!/usr/bin/env bash
# TLS checks, lvsmon against HAProxy (bench/README.md, "TLS checks"): one nginx on loopback
# serves N TLS endpoints (127.6.X.Y:8443, one ECDSA P-256 certificate, sessions resumable by
# cache and tickets); each checker in turn checks all of them every I seconds with an HTTPS
# request (GET /health, 200 expected), for D seconds after a warm-up:
#
#   1. lvsmon `check https` (TLS in its helper process), sessions resumed (the default);
#   2. lvsmon `check https --no-resume` (a full handshake every time);
#   3. HAProxy `check check-ssl verify none` with `option httpchk` (the same request).
#
# Per checker: checks asked for (N x D / I), checks started (requests nginx logged inside the
# window, told apart by User-Agent), and CPU per check started (utime + stime from
# /proc/PID/stat over the window, lvsmon's daemon and helper together).
#
#   bench/tls.sh                           # N=1000, I=1 s, D=30 s (the lead's run)
#   bench/tls.sh --n 50 --duration 10      # a quick look
#   LVSMON_BIN=target/debug/lvsmon bench/tls.sh --n 50 --duration 10   # no release build
#
# Needs nginx (Debian nginx-light), haproxy, openssl; run as root (nginx binds 127.6.0.0/16
# addresses, fine as any user on Linux, but the farm's open files need a raised limit).
# Not part of CI. All traffic stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

n=1000 interval=1 duration=30 warmup=5 keep=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --n) n=$2; shift 2 ;;
        --interval) interval=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        *) echo "usage: bench/tls.sh [--n N] [--interval S] [--duration D] [--warmup W] [--keep]" >&2; exit 2 ;;
    esac
done

if [ -z "${LVSMON_BIN:-}" ]; then
    cargo build --release --quiet --bin lvsmon
    LVSMON_BIN="${CARGO_TARGET_DIR:-target}/release/lvsmon"
fi
for b in nginx haproxy openssl; do
    command -v "$b" >/dev/null || { echo "bench/tls.sh: $b not found (apt-get install nginx-light haproxy openssl)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d "${TMPDIR:-/tmp}/tls-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$keep" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

addr() { echo "127.6.$(($1 / 250)).$(($1 % 250 + 1))"; }
tck=$(getconf CLK_TCK)
# utime + stime of a process, in clock ticks.
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
now() { date +%s.%N; }
# Requests nginx logged between two times with a User-Agent starting with $3.
requests() {
    awk -v a="$1" -v b="$2" -v ua="$3" '$1 >= a && $1 < b && index($2, ua) == 1 { n++ } END { print n + 0 }' "$work/access.log"
}

# The farm: one certificate, N listeners.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=bench -addext subjectAltName=DNS:bench 2>/dev/null
{
    echo "pid $work/nginx.pid; error_log $work/nginx.err; worker_processes auto;"
    echo "worker_rlimit_nofile 16384; events { worker_connections 8192; }"
    echo "http { default_type text/plain; log_format ua '\$msec \$http_user_agent';"
    echo "  access_log $work/access.log ua buffer=256k flush=1s;"
    echo "  ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;"
    echo "  ssl_session_cache shared:bench:20m; ssl_session_tickets on; keepalive_timeout 0;"
    echo "  client_body_temp_path $work/body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fcgi;"
    echo "  uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;"
    echo "  server {"
    for ((i = 0; i < n; i++)); do echo "    listen $(addr "$i"):8443 ssl;"; done
    echo "    location = /health { return 200 \"OK\\n\"; }"
    echo "  }"
    echo "}"
} >"$work/nginx.conf"
nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' 2>>"$work/nginx.err" &
pids+=($!)
sleep 1

# One window of checker $2 (pid $1, user agent $3, helper pid $4 or 0): prints one table row.
measure() {
    local pid=$1 name=$2 ua=$3 helper=$4
    sleep "$warmup"
    local t0 c0 h0 t1 c1 h1
    t0=$(now); c0=$(cpu "$pid"); h0=$( [ "$helper" -gt 0 ] && cpu "$helper" || echo 0 )
    sleep "$duration"
    t1=$(now); c1=$(cpu "$pid"); h1=$( [ "$helper" -gt 0 ] && cpu "$helper" || echo 0 )
    sleep 1.5 # nginx flushes its log each second
    local started asked
    started=$(requests "$t0" "$t1" "$ua")
    asked=$(awk -v n="$n" -v d="$t1" -v s="$t0" -v i="$interval" 'BEGIN { printf "%d", n * (d - s) / i }')
    awk -v name="$name" -v asked="$asked" -v started="$started" -v ticks=$((c1 - c0 + h1 - h0)) \
        -v helper=$((h1 - h0)) -v tck="$tck" -v window="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" 'BEGIN {
        us = 0; hs = 0; share = 0
        if (started > 0) { us = ticks * 1e6 / tck / started; hs = helper * 1e6 / tck / started }
        if (asked > 0) share = 100 * started / asked
        printf "| %s | %d | %d (%.1f %%) | %.0f | %.0f | %.1f %% |\n", name, asked, started, share, us, hs, 100 * ticks / tck / window
    }'
}

# lvsmon, with and without resumption.
lvsmon_run() {
    local name=$1 extra=$2
    local dir="$work/$name"
    mkdir -p "$dir"
    {
        echo "interval ${interval}s"
        echo "connect-timeout 1s"
        echo "timeout 2s"
        for ((i = 0; i < n; i++)); do
            if ((i % 100 == 0)); then
                [ "$i" -gt 0 ] && echo "}"
                echo "virtual tcp 10.200.$((i / 100 / 250)).$((i / 100 % 250 + 1)):443 {"
                echo "  check https --url https://bench/health --expect 200 $extra"
            fi
            echo "  real $(addr "$i"):8443"
        done
        echo "}"
    } >"$dir/lvsmon.conf"
    "$LVSMON_BIN" --dry-run -f "$dir/lvsmon.conf" --socket "$dir/sock" --state-dir "$dir/state" 2>"$dir/log" &
    local pid=$!
    pids+=("$pid")
    local helper=0
    for _ in $(seq 50); do
        helper=$(sed -n 's/.*msg="TLS helper started" pid=\([0-9]*\).*/\1/p' "$dir/log" | tail -1)
        [ -n "$helper" ] && break
        sleep 0.1
    done
    measure "$pid" "$name" "lvsmon/" "${helper:-0}"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "TLS checks: N=$n, I=${interval}s, D=${duration}s, nginx $(nginx -v 2>&1 | sed 's/.*\///'), $(haproxy -v | head -1 | awk '{ print $1, $3 }')"
echo
echo "| checker | checks asked | started (at nginx) | CPU µs/check (all) | of which helper | CPU share of one core |"
echo "|---|---|---|---|---|---|"
lvsmon_run "lvsmon-resume" ""
lvsmon_run "lvsmon-no-resume" "--no-resume"

# HAProxy: the same request, sessions reused (its default).
{
    echo "global"
    echo "  maxconn 4096"
    echo "defaults"
    echo "  mode http"
    echo "  timeout connect 1s"
    echo "  timeout check 2s"
    echo "  timeout client 5s"
    echo "  timeout server 5s"
    # A listener HAProxy insists on (nothing connects to it); its servers are the farm.
    echo "listen farm"
    echo "  bind 127.0.0.1:$((20000 + RANDOM % 20000))"
    echo "  option httpchk"
    echo "  http-check send meth GET uri /health ver HTTP/1.1 hdr Host bench hdr User-Agent haproxy-bench"
    echo "  http-check expect status 200"
    echo "  default-server check check-ssl verify none inter ${interval}s"
    for ((i = 0; i < n; i++)); do echo "  server s$i $(addr "$i"):8443"; done
} >"$work/haproxy.cfg"
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
hpid=$!
pids+=("$hpid")
measure "$hpid" "haproxy" "haproxy-bench" 0
