#!/usr/bin/env bash
# Test the lvsmon munin plugin (contrib/munin/lvsmon_) against a hand-written
# scrape (contrib/munin/sample.metrics) served on a free 127.0.0.1 port.
#
#   contrib/munin/test.sh            # from anywhere; needs bash, perl, python3
#
# Runs the plugin through lvsmon_<graph> symlinks for every graph with config,
# fetch, autoconf and suggest; checks field names, values and labels; then, if
# munin-run is installed, runs it the way munin-node would, with a plugin-conf
# pointing at the server. Finally checks the error paths (unparsable scrape,
# HTTP 404, a server that never answers, the server stopped).
#
# Prints one line per check and "N passed, M failed"; exits 1 on any failure.
# Touches only a temporary directory and 127.0.0.1; every wait is bounded.

set -u

here=$(cd "$(dirname "$0")" && pwd)
plugin_src="$here/lvsmon_"
fixture="$here/sample.metrics"
graphs=(reals checks ipvs transitions latency lost upkeep weights tls)

passed=0
failed=0
pids=()
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lvsmon-munin-test.XXXXXX")

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { passed=$((passed + 1)); echo "ok   - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }
# check DESCRIPTION COMMAND...: pass if COMMAND succeeds.
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }

# Bounded wait for a file to be non-empty: wait_file PATH TENTHS.
wait_file() {
    local i
    for ((i = 0; i < $2; i++)); do
        [[ -s $1 ]] && return 0
        sleep 0.1
    done
    return 1
}

# --- the HTTP server ------------------------------------------------------
# Serves $tmp/www: /metrics is the fixture, /garbage an HTML page, /empty a
# scrape with no lvsmon metric. Binds port 0 and writes the port it got.
mkdir -p "$tmp/www" "$tmp/plugins"
cp "$fixture" "$tmp/www/metrics"
printf '<html><head><title>It works</title></head>\n<body>hello</body></html>\n' >"$tmp/www/garbage"
printf '# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 8\n' >"$tmp/www/empty"
# The fixture as lvsmon serves it without TLS checks (no lvsmon_tls_* series).
grep -v '^\(# [A-Z]* \)\?lvsmon_tls_' "$fixture" >"$tmp/www/notls"

start_server() { # start_server PORTFILE: serve $tmp/www
    python3 -u -c '
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
handler.func.log_message = lambda *a: None
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os; os.rename(sys.argv[2] + ".tmp", sys.argv[2])
srv.serve_forever()
' "$tmp/www" "$1" 2>>"$tmp/server.log" &
    server_pid=$!
    pids+=("$server_pid")
}

start_server "$tmp/port"
if ! wait_file "$tmp/port" 100; then
    fail "python3 HTTP server did not start within 10 s: $(cat "$tmp/server.log")"
    echo "$passed passed, $failed failed"
    exit 1
fi
port=$(cat "$tmp/port")
base="http://127.0.0.1:$port"
pass "fixture served at $base/metrics"

# The plugin as munin installs it: one file, one symlink per graph. The
# directory is world-readable so munin-run can run it as nobody.
cp "$plugin_src" "$tmp/plugins/.lvsmon_"
chmod 755 "$tmp" "$tmp/plugins" "$tmp/plugins/.lvsmon_"
for g in "${graphs[@]}"; do
    ln -s .lvsmon_ "$tmp/plugins/lvsmon_$g"
done

# run GRAPH [ARG]: run the plugin, set $out, $err, $rc.
run() {
    local g=$1; shift
    out=$(url="$base/metrics" timeout=3 "$tmp/plugins/lvsmon_$g" "$@" 2>"$tmp/stderr")
    rc=$?
    err=$(cat "$tmp/stderr")
}

# --- static checks ---------------------------------------------------------
check "plugin compiles (perl -c)" perl -c "$plugin_src" 2>/dev/null
check "plugin uses only core modules" bash -c \
    "! grep -E '^\s*use [A-Z]' '$plugin_src' | grep -vE 'use (File::Basename|HTTP::Tiny)\b'"
check "POD is valid (podchecker; munindoc shows it)" podchecker "$plugin_src" 2>/dev/null
check "POD renders with NAME and env.url" bash -c \
    "pod2text '$plugin_src' | grep -q '^NAME' && pod2text '$plugin_src' | grep -q 'env.url'"
check "magic marker family=auto" grep -q '^ *#%# family=auto$' "$plugin_src"
check "magic marker capabilities=autoconf suggest" grep -q '^ *#%# capabilities=autoconf suggest$' "$plugin_src"

# --- autoconf, suggest ------------------------------------------------------
run reals autoconf
check "autoconf answers yes (exit 0)" test "$rc" = 0 -a "$out" = yes
run reals suggest
check "suggest lists the graphs" test "$rc" = 0 -a "$out" = "$(printf '%s\n' "${graphs[@]}")"
# Without TLS checks there is no tls graph to suggest.
no_tls=$(printf '%s\n' "${graphs[@]}" | grep -vx tls)
out=$(url="$base/notls" "$tmp/plugins/lvsmon_reals" suggest 2>/dev/null); rc=$?
check "suggest without lvsmon_tls_ series leaves out tls" test "$rc" = 0 -a "$out" = "$no_tls"

# --- config and fetch, every graph --------------------------------------------
# Expected fetch values from sample.metrics (each line must be in the fetch).
declare -A expect
expect[reals]='fwmark_42.value 1
tcp_10_0_0_1_80.value 2
udp__2001_db8__1__53.value 1
total.value 4
tcp_10_0_0_1_80.extinfo not up: 192.168.1.12:80
udp__2001_db8__1__53.extinfo not up: [2001:db8::11]:53'
expect[checks]='checks.value 12345
fail_connect_refused.value 4
fail_connect_timeout.value 2
fail_http_status.value 12
fail_dns_rcode.value 3
fail_reset.value 0
fail_dns_invalid.value 0
fail_script__exit_3___x_y__tmp_second.value 5'
expect[ipvs]='add_service_ok.value 3
add_dest_ok.value 6
edit_dest_ok.value 3
edit_dest_error.value 1
del_dest_dry_run.value 2
del_service_ok.value 0'
expect[transitions]='transitions.value 7
local_errors.value 1'
expect[latency]='duration.value 61728125
duration_count.value 12345
lateness.value 987600
lateness_count.value 12345'
expect[lost]='log_dropped.value 23
notify_command.value 4
notify_fifo.value 31
state_save_failures.value 3
loop_stalls.value 2
missed_starts.value 17
tls_helper_restarts.value 6'
expect[upkeep]='resyncs.value 41
drift_repaired.value 5'
expect[weights]='weight_changes.value 96
slow.value 9
fast.value 8'
# The days left depend on the clock: checked below; the series at 0 (no
# certificate seen yet) is not the soonest.
expect[tls]='days.extinfo soonest: 192.168.1.11:443 (mail.example.com)'

# Expected config lines (labels keep the original identifiers, unescaped).
declare -A expect_config
expect_config[reals]='tcp_10_0_0_1_80.label tcp:10.0.0.1:80
udp__2001_db8__1__53.label udp:[2001:db8::1]:53
fwmark_42.label fwmark:42
total.label total
tcp_10_0_0_1_80.critical 1:'
expect_config[checks]='checks.type DERIVE
checks.min 0
fail_http_status.label failed: http-status
fail_script__exit_3___x_y__tmp_second.label failed: script "exit 3",{x=y}\tmp\nsecond'
expect_config[ipvs]='edit_dest_error.label edit-dest error
del_dest_dry_run.type DERIVE'
expect_config[transitions]='local_errors.type DERIVE'
expect_config[latency]='duration.cdef duration,duration_count,/,1000000,/
duration_count.graph no
lateness.cdef lateness,lateness_count,/,1000000,/'
expect_config[lost]='notify_fifo.label events dropped (notify-fifo)
tls_helper_restarts.type DERIVE
log_dropped.min 0'
expect_config[upkeep]='drift_repaired.type DERIVE
resyncs.label resyncs'
expect_config[weights]='slow.type DERIVE
fast.label fast again'
expect_config[tls]='days.type GAUGE
days.warning 14:
days.critical 3:'

# lines_in WANTED HAYSTACK: every line of WANTED is a line of HAYSTACK.
lines_in() {
    local line
    while IFS= read -r line; do
        grep -qxF -- "$line" <<<"$2" || { echo "    missing: $line"; return 1; }
    done <<<"$1"
}

# config_ok CONFIG: every line is "graph_x ..." or "field.attr ...", field valid.
config_ok() {
    local bad
    bad=$(grep -vE '^(graph_[a-z_]+ .+|[A-Za-z_][A-Za-z0-9_]*\.[a-z_]+ .*)$' <<<"$1")
    [[ -z $bad ]] || { echo "    bad line: $bad"; return 1; }
}

# fetch_ok FETCH: every line is "field.value N|U" or "field.extinfo ...".
fetch_ok() {
    local bad
    bad=$(grep -vE '^[A-Za-z_][A-Za-z0-9_]*\.(value (-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?|U)|extinfo .+)$' <<<"$1")
    [[ -z $bad ]] || { echo "    bad line: $bad"; return 1; }
}

# fields_match CONFIG FETCH: the fields with a .label in config are exactly
# those with a .value in fetch, and graph_order names each of them.
fields_match() {
    local labels values order
    labels=$(sed -n 's/^\([A-Za-z0-9_]*\)\.label .*/\1/p' <<<"$1" | sort)
    values=$(sed -n 's/^\([A-Za-z0-9_]*\)\.value .*/\1/p' <<<"$2" | sort)
    order=$(sed -n 's/^graph_order //p' <<<"$1" | tr ' ' '\n' | sort)
    [[ $labels == "$values" ]] || { echo "    labels/values differ:"; diff <(echo "$labels") <(echo "$values") | sed 's/^/    /'; return 1; }
    [[ $labels == "$order" ]] || { echo "    graph_order differs from the fields"; return 1; }
    [[ -z $(uniq -d <<<"$labels") ]] || { echo "    duplicate field"; return 1; }
}

for g in "${graphs[@]}"; do
    run "$g" config
    config=$out
    check "$g: config exits 0, quiet on stderr" test "$rc" = 0 -a -z "$err"
    check "$g: config has graph_title and graph_category" \
        bash -c 'grep -q "^graph_title ." <<<"$1" && grep -q "^graph_category loadbalancer$" <<<"$1"' _ "$config"
    check "$g: config lines and field names valid" config_ok "$config"
    check "$g: config has the expected lines" lines_in "${expect_config[$g]}" "$config"

    run "$g"
    fetch=$out
    check "$g: fetch exits 0, quiet on stderr" test "$rc" = 0 -a -z "$err"
    check "$g: fetch lines valid" fetch_ok "$fetch"
    check "$g: fetch values match the fixture" lines_in "${expect[$g]}" "$fetch"
    check "$g: every fetched field has a .label (and vice versa)" fields_match "$config" "$fetch"

    # dirtyconfig: config followed by the values.
    out=$(MUNIN_CAP_DIRTYCONFIG=1 url="$base/metrics" "$tmp/plugins/lvsmon_$g" config 2>/dev/null)
    check "$g: dirtyconfig config = config + fetch" test "$out" = "$config"$'\n'"$fetch"
done

# tls: the fewest days left, from the fixture's earliest notAfter that is not
# 0 (2099-01-01), within the clock's reading before and after the fetch.
before=$(date +%s)
run tls
after=$(date +%s)
days=$(sed -n 's/^days\.value //p' <<<"$out")
check "tls: days left ($days) = (4070908800 - now) / 86400" perl -e '
    my ($d, $before, $after) = @ARGV;
    exit !($d =~ /\A-?[0-9]+\.[0-9]{2}\z/
        && $d <= (4070908800 - $before) / 86400 + 0.01
        && $d >= (4070908800 - $after) / 86400 - 0.01)' "$days" "$before" "$after"
# Without TLS checks: unknown, as is the helper's restart counter.
out=$(url="$base/notls" "$tmp/plugins/lvsmon_tls" 2>"$tmp/stderr"); rc=$?
check "tls without lvsmon_tls_ series: days.value U, no extinfo" test "$rc" = 0 -a "$out" = "days.value U"
out=$(url="$base/notls" "$tmp/plugins/lvsmon_lost" 2>"$tmp/stderr"); rc=$?
check "lost without TLS checks: tls_helper_restarts.value U" \
    bash -c '[[ $1 == 0 ]] && grep -qx "tls_helper_restarts.value U" <<<"$2" && grep -qx "log_dropped.value 23" <<<"$2"' _ "$rc" "$out"
# The thresholds, overridden and removed through env, and a bad one.
out=$(url="$base/metrics" tls_days_warning=30: tls_days_critical= "$tmp/plugins/lvsmon_tls" config 2>"$tmp/stderr"); rc=$?
check "tls: env.tls_days_warning=30: and an empty env.tls_days_critical" \
    bash -c '[[ $1 == 0 ]] && grep -qx "days.warning 30:" <<<"$2" && ! grep -q "^days.critical" <<<"$2"' _ "$rc" "$out"
out=$(url="$base/metrics" tls_days_critical=soon "$tmp/plugins/lvsmon_tls" config 2>"$tmp/stderr"); rc=$?
check "tls: env.tls_days_critical not a threshold: config exits non-zero naming it" \
    bash -c '[[ $1 != 0 ]] && grep -q "env.tls_days_critical" "$2"' _ "$rc" "$tmp/stderr"

# Derived values: sum/count of the fixture's histogram, as munin's cdef computes it.
check "latency: cdef of the fixture gives 0.005 s mean duration" \
    test "$(perl -e 'printf "%.6f", 61728125/12345/1e6')" = 0.005000

run nosuch
check "unknown graph name exits non-zero with a message" test "$rc" != 0 -a -n "$err"

# --- through munin-run ---------------------------------------------------------
if ! command -v munin-run >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "#    munin-run not found; trying apt-get install munin-node (bounded to 300 s)"
    timeout 300 env DEBIAN_FRONTEND=noninteractive apt-get install -y -q munin-node >"$tmp/apt.log" 2>&1 ||
        echo "#    apt-get install munin-node failed: $(tail -1 "$tmp/apt.log")"
fi
if command -v munin-run >/dev/null 2>&1; then
    cat >"$tmp/plugin-conf" <<EOF
[lvsmon_*]
user nobody
env.url $base/metrics
env.timeout 3
EOF
    chmod 644 "$tmp/plugin-conf"
    munin() { # munin PLUGIN [ARG]: set $out, $rc
        out=$(timeout 30 munin-run --servicedir "$tmp/plugins" --sconffile "$tmp/plugin-conf" \
            --ignore-systemd-properties "$@" 2>"$tmp/stderr")
        rc=$?
        err=$(cat "$tmp/stderr")
    }
    for g in "${graphs[@]}"; do
        run "$g" config
        direct_config=$out
        run "$g"
        direct_fetch=$out
        munin "lvsmon_$g" config
        check "munin-run lvsmon_$g config = direct config" test "$rc" = 0 -a "$out" = "$direct_config"
        munin "lvsmon_$g"
        check "munin-run lvsmon_$g (fetch) = direct fetch" test "$rc" = 0 -a "$out" = "$direct_fetch"
        [[ $g == reals ]] && { echo "#    munin-run lvsmon_reals printed:"; sed 's/^/#      /' <<<"$out"; }
    done
    munin lvsmon_reals autoconf
    check "munin-run lvsmon_reals autoconf says yes" test "$rc" = 0 -a "$out" = yes
    munin lvsmon_reals suggest
    check "munin-run suggest lists the graphs" test "$out" = "$(printf '%s\n' "${graphs[@]}")"
else
    echo "#    munin-run not installed: munin-run checks skipped"
fi

# --- error paths ------------------------------------------------------------------
# Unparsable scrape.
out=$(url="$base/garbage" "$tmp/plugins/lvsmon_checks" 2>"$tmp/stderr"); rc=$?
check "unparsable scrape: fetch exits non-zero" test "$rc" != 0
check "unparsable scrape: stderr names the line" grep -q 'unparsable scrape, line 1' "$tmp/stderr"
out=$(url="$base/garbage" "$tmp/plugins/lvsmon_checks" autoconf 2>/dev/null); rc=$?
check "unparsable scrape: autoconf says no (reason), exit 0" \
    bash -c '[[ $2 == 0 && $1 == "no (http://"*"unparsable scrape"*")" ]]' _ "$out" "$rc"
# A valid scrape without lvsmon metrics, and a 404.
out=$(url="$base/empty" "$tmp/plugins/lvsmon_checks" autoconf 2>/dev/null)
check "scrape without lvsmon_ metrics: autoconf says no" bash -c '[[ $1 == "no ("*"no lvsmon_ metrics"*")" ]]' _ "$out"
out=$(url="$base/nosuch" "$tmp/plugins/lvsmon_reals" 2>"$tmp/stderr"); rc=$?
check "HTTP 404: fetch exits non-zero naming the status" bash -c '[[ $1 != 0 ]] && grep -q "HTTP 404" "$2"' _ "$rc" "$tmp/stderr"
# Bad settings.
out=$(url="ftp://x/" "$tmp/plugins/lvsmon_reals" 2>"$tmp/stderr"); rc=$?
check "env.url not http: fetch exits non-zero" bash -c '[[ $1 != 0 ]] && grep -q "env.url" "$2"' _ "$rc" "$tmp/stderr"
out=$(url="$base/metrics" timeout=soon "$tmp/plugins/lvsmon_reals" 2>"$tmp/stderr"); rc=$?
check "env.timeout not a number: fetch exits non-zero" bash -c '[[ $1 != 0 ]] && grep -q "env.timeout" "$2"' _ "$rc" "$tmp/stderr"

# A server that accepts connections and never answers: env.timeout bounds it.
python3 -u -c '
import os, socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
with open(sys.argv[1] + ".tmp", "w") as f: f.write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
conns = []
end = time.time() + 60
while time.time() < end:
    s.settimeout(1)
    try: conns.append(s.accept()[0])
    except socket.timeout: pass
' "$tmp/hang-port" 2>>"$tmp/server.log" &
pids+=("$!")
if wait_file "$tmp/hang-port" 100; then
    start=$(date +%s)
    out=$(url="http://127.0.0.1:$(cat "$tmp/hang-port")/metrics" timeout=1 \
        timeout 20 "$tmp/plugins/lvsmon_checks" 2>"$tmp/stderr"); rc=$?
    took=$(($(date +%s) - start))
    check "silent server: fetch fails (rc=$rc) within env.timeout (${took} s)" \
        test "$rc" = 1 -a "$took" -le 4
    check "silent server: stderr says why" grep -q "cannot fetch" "$tmp/stderr"
else
    fail "silent test server did not start"
fi

# The server stopped.
kill "$server_pid" && wait "$server_pid" 2>/dev/null
for g in "${graphs[@]}"; do
    run "$g"
    check "server stopped: $g fetch exits non-zero, message on stderr" \
        bash -c '[[ $1 != 0 && $2 == *"cannot fetch"* && -z $3 ]]' _ "$rc" "$err" "$out"
done
run reals suggest
check "server stopped: suggest lists the graphs but tls" test "$rc" = 0 -a "$out" = "$no_tls"
run reals autoconf
check "server stopped: autoconf says no (reason), exit 0" \
    bash -c '[[ $2 == 0 && $1 == "no (cannot fetch"*")" ]]' _ "$out" "$rc"
echo "#    autoconf printed: $out"
run reals config
check "server stopped: reals config exits non-zero" test "$rc" != 0 -a -n "$err"
run checks config
check "server stopped: checks config still printed from known names (exit 0)" \
    bash -c '[[ $1 == 0 ]] && grep -q "^fail_http_status.label " <<<"$2"' _ "$rc" "$out"
out=$(MUNIN_CAP_DIRTYCONFIG=1 url="$base/metrics" "$tmp/plugins/lvsmon_checks" config 2>/dev/null); rc=$?
check "server stopped: dirtyconfig config exits non-zero" test "$rc" != 0
if command -v munin-run >/dev/null 2>&1; then
    munin lvsmon_transitions
    check "server stopped: munin-run lvsmon_transitions exits non-zero" test "$rc" != 0
    echo "#    munin-run stderr: $err"
fi

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
