#!/bin/bash
# Runs inside the VM (tests/vm/run.sh): lvsmon against a real kernel's IPVS table, checked
# with ipvsadm. Each scenario prints one verdict line; the last line counts them.
#   scenario NAME: ok | FAIL: why
set -u
cd /work
pass=0 fail=0
LVSMON=/work/lvsmon
CONF=/work/scenario.conf
LOG=/work/lvsmon.log

ok() { pass=$((pass + 1)); echo "scenario $1: ok"; }
bad() { fail=$((fail + 1)); echo "scenario $1: FAIL: $2"; ipvsadm -Ln | sed 's/^/    | /'; tail -n 15 "$LOG" 2>/dev/null | sed 's/^/    log| /'; }

# The weight of REAL under the service named by ipvsadm's options ("-t 10.0.0.1:80"), or
# "absent".
weight() {
    local w
    # shellcheck disable=SC2086
    w=$(ipvsadm -Ln $1 2>/dev/null | awk -v r="$2" '$1 == "->" && $2 == r { print $4 }')
    echo "${w:-absent}"
}

# Waits up to SECS for every "SVC REAL WEIGHT" triple to hold (WEIGHT may be "absent").
expect() {
    local secs=$1; shift
    local end=$(( $(date +%s) + secs )) all t
    local triples=("$@")
    while :; do
        all=1
        for t in "${triples[@]}"; do
            # shellcheck disable=SC2086
            set -- $t
            [ "$(weight "$1 $2" "$3")" = "$4" ] || { all=0; break; }
        done
        [ $all = 1 ] && return 0
        [ "$(date +%s)" -ge $end ] && return 1
        sleep 0.2
    done
}

start_http() { busybox httpd -f -p "$1" -h /www & echo $! > "/run/http.$2"; }
stop_http() { kill "$(cat "/run/http.$1")" 2>/dev/null; wait "$(cat "/run/http.$1")" 2>/dev/null; }

mkdir -p /www && echo OK > /www/index.html
ip -6 addr add fd00::2/128 dev lo
for a in 2 3 4 5; do start_http "127.0.0.$a:8080" "$a"; done
start_http "[fd00::2]:8080" v6
sleep 0.3

start_lvsmon() { "$LVSMON" -f "$CONF" -v >>"$LOG" 2>&1 & echo $! > /run/lvsmon.pid; }
start_lvsmon

ALL=(
    "-t 10.0.0.1:80 127.0.0.2:8080 5" "-t 10.0.0.1:80 127.0.0.3:8080 3"
    "-t 10.0.0.2:80 127.0.0.2:8080 2" "-t 10.0.0.2:80 127.0.0.3:8080 4"
    "-u 10.0.0.3:53 127.0.0.4:53 1" "-u 10.0.0.3:53 127.0.0.9:8080 absent"
    "--sctp-service 10.0.0.4:3868 127.0.0.2:3868 1"
    "-t [fd00::1]:80 [fd00::2]:8080 6" "-f 42 127.0.0.5:8080 9"
)

# 1. The configured services appear, every healthy real at its weight.
if expect 15 "${ALL[@]}" && ipvsadm -Ln -t 10.0.0.2:80 | grep -q "rr persistent 300" \
    && ipvsadm -Ln -t 10.0.0.1:80 | grep -q " wrr"; then
    ok services-created
else
    bad services-created "table not as configured"
fi

# 2. A backend stops: weight 0 where on-down is quiesce, gone where it is remove.
stop_http 3
if expect 10 "-t 10.0.0.1:80 127.0.0.3:8080 0" "-t 10.0.0.2:80 127.0.0.3:8080 absent" \
    "-t 10.0.0.1:80 127.0.0.2:8080 5"; then ok backend-stops; else bad backend-stops "no quiesce/remove"; fi

# 3. It comes back: its weights return.
start_http 127.0.0.3:8080 3
if expect 10 "-t 10.0.0.1:80 127.0.0.3:8080 3" "-t 10.0.0.2:80 127.0.0.3:8080 4"; then
    ok backend-returns
else
    bad backend-returns "weights did not return"
fi

# 4. Every real of a virtual down: the sorry server comes in, and leaves when one is back.
stop_http 4
if expect 10 "-u 10.0.0.3:53 127.0.0.9:8080 1" "-u 10.0.0.3:53 127.0.0.4:53 0"; then
    start_http 127.0.0.4:8080 4
    if expect 10 "-u 10.0.0.3:53 127.0.0.9:8080 absent" "-u 10.0.0.3:53 127.0.0.4:53 1"; then
        ok sorry-server
    else
        bad sorry-server "sorry server did not leave"
    fi
else
    bad sorry-server "sorry server did not come"
    start_http 127.0.0.4:8080 4
fi

# 5. IPv6 and fwmark services behave the same way.
stop_http v6; stop_http 5
if expect 10 "-t [fd00::1]:80 [fd00::2]:8080 0" "-f 42 127.0.0.5:8080 0"; then
    start_http "[fd00::2]:8080" v6; start_http 127.0.0.5:8080 5
    if expect 10 "-t [fd00::1]:80 [fd00::2]:8080 6" "-f 42 127.0.0.5:8080 9"; then
        ok ipv6-and-fwmark
    else
        bad ipv6-and-fwmark "weights did not return"
    fi
else
    bad ipv6-and-fwmark "not quiesced"
    start_http "[fd00::2]:8080" v6; start_http 127.0.0.5:8080 5
fi

# 6. Changes made by hand are repaired within one resync (2 s): a destination deleted, a
#    weight edited, a whole service deleted.
ipvsadm -d -t 10.0.0.1:80 -r 127.0.0.2:8080
ipvsadm -e -t 10.0.0.1:80 -r 127.0.0.3:8080 -m -w 7
ipvsadm -D -f 42
t0=$(date +%s)
if expect 8 "-t 10.0.0.1:80 127.0.0.2:8080 5" "-t 10.0.0.1:80 127.0.0.3:8080 3" "-f 42 127.0.0.5:8080 9"; then
    ok "drift-repaired ($(( $(date +%s) - t0 )) s)"
else
    bad drift-repaired "hand-made changes not repaired"
fi

# 6b. The whole table flushed (ipvsadm -C): everything comes back.
ipvsadm -C
t0=$(date +%s)
if expect 8 "${ALL[@]}"; then
    ok "table-flush-repaired ($(( $(date +%s) - t0 )) s)"
else
    bad table-flush-repaired "flushed table not rebuilt"
fi

# 7. A restart leaves healthy destinations untouched: no weight ever changes, and the new
#    lvsmon makes no change at all (it adopts the table).
kill -TERM "$(cat /run/lvsmon.pid)"
wait "$(cat /run/lvsmon.pid)"; rc=$?
before=$(ipvsadm -Ln)
: >"$LOG"
start_lvsmon
flap=0
for _ in $(seq 1 20); do
    [ "$(ipvsadm -Ln)" = "$before" ] || flap=1
    sleep 0.2
done
changes=$(grep -c "ipvs op=" "$LOG")
checks=$(grep -c "result=pass" "$LOG")
if [ $rc = 0 ] && [ $flap = 0 ] && [ "$changes" = 0 ] && [ "$checks" -gt 10 ]; then
    ok "restart-no-flap ($checks checks, 0 changes)"
else
    bad restart-no-flap "exit $rc, table changed: $flap, ipvs ops after restart: $changes, checks: $checks"
fi

# 8. A kernel error is logged with its errno and retried, and never stops the daemon.
cat >/work/bad-sched.conf <<CONF
resync 1s
virtual tcp 10.9.9.9:80 {
    scheduler nosuchsched
    real 127.0.0.2:8080
}
CONF
kill -TERM "$(cat /run/lvsmon.pid)"; wait "$(cat /run/lvsmon.pid)"
"$LVSMON" -f /work/bad-sched.conf >/work/bad.log 2>&1 & bp=$!
sleep 3
errors=$(grep -c "ipvs op=add-service virtual=tcp:10.9.9.9:80 scheduler=nosuchsched result=error errno=" /work/bad.log)
if kill -0 $bp 2>/dev/null && [ "$errors" -ge 2 ]; then
    ok "kernel-error-logged-and-retried ($errors attempts)"
else
    bad kernel-error-logged-and-retried "errors=$errors alive=$(kill -0 $bp 2>/dev/null && echo yes || echo no)"
    sed 's/^/    bad| /' /work/bad.log | tail -n 10
fi
kill -TERM $bp 2>/dev/null; wait $bp 2>/dev/null

# 8b. Reload: only the differences reach the table. One weight changes, one real and one
#     virtual go, a virtual comes, and one that an operator made by hand is adopted (its
#     destination keeps weight 2 until its first check, then gets 6): no add-service error.
cp "$CONF" /work/reload.conf
: >"$LOG"
"$LVSMON" -f /work/reload.conf -v >>"$LOG" 2>&1 & rp=$!
if expect 15 "${ALL[@]}"; then
    ipvsadm -A -t 10.0.0.8:80 -s wlc && ipvsadm -a -t 10.0.0.8:80 -r 127.0.0.3:8080 -m -w 2
    sed -i -e 's/real 127.0.0.2:8080 weight 5/real 127.0.0.2:8080 weight 8/' \
        -e '/real 127.0.0.3:8080 weight 3/d' -e '/^virtual tcp 10.0.0.2:80 {/,/^}/d' /work/reload.conf
    cat >>/work/reload.conf <<CONF
virtual tcp 10.0.0.7:80 {
    real 127.0.0.2:8080 weight 4
}
virtual tcp 10.0.0.8:80 {
    real 127.0.0.3:8080 weight 6
}
CONF
    before_v6=$(ipvsadm -Ln -t "[fd00::1]:80"); before_fw=$(ipvsadm -Ln -f 42)
    reply=$("$LVSMON" reload 2>&1); rrc=$?
    if [ $rrc = 0 ] && expect 10 "-t 10.0.0.1:80 127.0.0.2:8080 8" "-t 10.0.0.1:80 127.0.0.3:8080 absent" \
        "-t 10.0.0.7:80 127.0.0.2:8080 4" "-t 10.0.0.8:80 127.0.0.3:8080 6" \
        && ! ipvsadm -Ln -t 10.0.0.2:80 >/dev/null 2>&1 \
        && [ "$(ipvsadm -Ln -t "[fd00::1]:80")" = "$before_v6" ] && [ "$(ipvsadm -Ln -f 42)" = "$before_fw" ]; then
        sleep 1
        ops=$(sed -n '/msg="reloaded"/,$p' "$LOG" | grep "ipvs op=" | sed 's/.*ipvs //')
        nops=$(echo "$ops" | grep -c "result=ok")
        errs=$(echo "$ops" | grep -c "result=error")
        others=$(echo "$ops" | grep -v -e "virtual=tcp:10.0.0.1:80" -e "virtual=tcp:10.0.0.2:80" \
            -e "virtual=tcp:10.0.0.7:80" -e "virtual=tcp:10.0.0.8:80" | grep -c .)
        if [ "$nops" = 7 ] && [ "$errs" = 0 ] && [ "$others" = 0 ] \
            && ! echo "$ops" | grep -q "op=add-service virtual=tcp:10.0.0.8:80"; then
            ok "reload-only-differences ($nops operations: $(echo "$ops" | awk '{print $1}' | sort | uniq -c | tr -s ' ' | paste -sd ','))"
        else
            bad reload-only-differences "ops after reload: ok=$nops errors=$errs elsewhere=$others: $(echo "$ops" | paste -sd ';')"
        fi
    else
        bad reload-only-differences "reload rc=$rrc: $reply"
    fi
    # A file with an error changes nothing.
    snapshot=$(ipvsadm -Ln)
    echo "virtual tpc 10.0.0.9:80 {" >>/work/reload.conf
    reply=$("$LVSMON" reload 2>&1); rrc=$?
    sleep 1
    if [ $rrc = 1 ] && echo "$reply" | grep -q "reload.conf:.*running configuration is kept" \
        && [ "$(ipvsadm -Ln)" = "$snapshot" ] && kill -0 $rp; then
        ok "reload-bad-file-changes-nothing"
    else
        bad reload-bad-file-changes-nothing "rc=$rrc reply=$reply"
    fi
else
    bad reload-only-differences "table not as configured before the reload"
fi
kill -TERM $rp 2>/dev/null; wait $rp 2>/dev/null
ipvsadm -C

# 8c. The wall clock jumps an hour forward, then two back: checks keep their pace (every
#     deadline is on the monotonic clock), no event, no table change.
: >"$LOG"
"$LVSMON" -f "$CONF" -v >>"$LOG" 2>&1 & cp=$!
if expect 15 "${ALL[@]}"; then
    sleep 1
    snapshot=$(ipvsadm -Ln); ops0=$(grep -c "ipvs op=" "$LOG"); ev0=$(grep -c "event=" "$LOG")
    base=$(grep -c "result=pass" "$LOG"); sleep 3; n0=$(( $(grep -c "result=pass" "$LOG") - base ))
    w0=$(date +%s)
    date -s "@$(( $(date +%s) + 3600 ))" >/dev/null
    w1=$(date +%s)
    base=$(grep -c "result=pass" "$LOG"); sleep 3; n1=$(( $(grep -c "result=pass" "$LOG") - base ))
    date -s "@$(( $(date +%s) - 7200 ))" >/dev/null
    w2=$(date +%s)
    base=$(grep -c "result=pass" "$LOG"); sleep 3; n2=$(( $(grep -c "result=pass" "$LOG") - base ))
    date -s "@$(( $(date +%s) + 3600 ))" >/dev/null
    events=$(( $(grep -c "event=" "$LOG") - ev0 ))
    ops=$(( $(grep -c "ipvs op=" "$LOG") - ops0 ))
    if [ $(( w1 - w0 )) -ge 3599 ] && [ $(( w1 - w2 )) -ge 7196 ] && [ "$n1" -ge $(( n0 * 8 / 10 )) ] && [ "$n2" -ge $(( n0 * 8 / 10 )) ] && [ "$n1" -le $(( n0 * 12 / 10 + 2 )) ] \
        && [ "$n2" -le $(( n0 * 12 / 10 + 2 )) ] && [ "$events" = 0 ] && [ "$ops" = 0 ] && [ "$(ipvsadm -Ln)" = "$snapshot" ]; then
        ok "wall-clock-jumps-change-nothing (passes per 3 s: $n0, after +1 h: $n1, after -2 h: $n2; 0 events, 0 operations)"
    else
        bad wall-clock-jumps-change-nothing "clock $w0 -> $w1 -> $w2, passes $n0 / $n1 / $n2, events $events, operations $ops, table same: $([ "$(ipvsadm -Ln)" = "$snapshot" ] && echo yes || echo no)"
    fi
else
    bad wall-clock-jumps-change-nothing "table not as configured"
fi
kill -TERM $cp 2>/dev/null; wait $cp 2>/dev/null

# 8d. More destinations than the netlink send queue holds (4096): the daemon keeps the rest
#     in its outbox until there is room, so all 6,000 arrive at startup, and again after the
#     whole table is flushed by hand, without a single error.
{
    echo "interval 60s"; echo "resync 2s"
    for v in $(seq 0 59); do
        echo "virtual tcp 10.1.0.$((v + 1)):80 {"; echo "    check tcp"
        for r in $(seq 0 99); do echo "    real 127.3.$v.$((r + 1)):9"; done
        echo "}"
    done
} >/work/many.conf
: >"$LOG"
"$LVSMON" -f /work/many.conf >>"$LOG" 2>&1 & mp=$!
count_dests() { ipvsadm -Ln | grep -c -- "->.*127\.3\."; }
t0=$(date +%s); n=0
while [ $(( $(date +%s) - t0 )) -lt 30 ]; do n=$(count_dests); [ "$n" = 6000 ] && break; sleep 0.5; done
t1=$(( $(date +%s) - t0 ))
ipvsadm -C
t0=$(date +%s); m=0
while [ $(( $(date +%s) - t0 )) -lt 30 ]; do m=$(count_dests); [ "$m" = 6000 ] && break; sleep 0.5; done
t2=$(( $(date +%s) - t0 ))
errs=$(grep -c "result=error" "$LOG")
if [ "$n" = 6000 ] && [ "$m" = 6000 ] && [ "$errs" = 0 ] && kill -0 $mp; then
    ok "six-thousand-destinations (all in after ${t1} s, again ${t2} s after a flush, 0 errors)"
else
    bad six-thousand-destinations "startup $n, after flush $m, errors $errs"
    grep "result=error" "$LOG" | head -n 3 | sed 's/^/    err| /'
fi
kill -TERM $mp 2>/dev/null; wait $mp 2>/dev/null
ipvsadm -C

# 9. The allocation-counting test with the real netlink client (resyncs included).
if [ -x /work/no_alloc ]; then
    if LVSMON_BIN=/work/lvsmon /work/no_alloc >/work/no_alloc.log 2>&1 && grep -q "IPVS side: netlink" /work/no_alloc.log; then
        ok "no-alloc-with-netlink: $(grep -E 'check results|ipvs ops|resyncs|allocations after' /work/no_alloc.log | tr -s ' ' | paste -sd ';')"
    else
        bad no-alloc-with-netlink "$(tail -n 25 /work/no_alloc.log)"
    fi
fi

# 10. --user nobody --chroot DIR: with CAP_NET_ADMIN alone the daemon still changes the table
#     (a backend stops: weight 0; it returns: weight back), reads it back and repairs drift,
#     and saves state; the socket file it leaves behind does not stop the next start.
grep -q '^nobody:' /etc/passwd || echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >>/etc/passwd
grep -q '^nogroup:' /etc/group || echo 'nogroup:x:65534:' >>/etc/group
JAIL=/var/empty-lvsmon
mkdir -p "$JAIL"
: >"$LOG"
"$LVSMON" -f "$CONF" -v --user nobody --chroot "$JAIL" --state-interval 1s >>"$LOG" 2>&1 & dp=$!
why=
expect 15 "${ALL[@]}" || why="table not as configured after the drop"
st() { awk -v k="$1:" '$1 == k { $1 = ""; sub(/^ /, ""); print }' "/proc/$dp/status"; }
caps="CapEff=$(st CapEff) CapPrm=$(st CapPrm) CapBnd=$(st CapBnd) Uid=$(st Uid | tr ' ' ,) root=$(readlink /proc/$dp/root)"
[ -z "$why" ] && ! grep -q 'msg="privileges dropped" user=nobody uid=65534 gid=65534 chroot=/var/empty-lvsmon caps=cap_net_admin' "$LOG" \
    && why="no privileges dropped line"
[ -z "$why" ] && [ "$(st CapEff)" != 0000000000001000 ] && why="capabilities: $caps"
[ -z "$why" ] && [ "$(st CapBnd)" != 0000000000001000 ] && why="capabilities: $caps"
[ -z "$why" ] && [ "$(st Uid | tr -s '\t ' ' ')" != "65534 65534 65534 65534" ] && why="ids: $caps"
if [ -z "$why" ]; then
    stop_http 3
    expect 10 "-t 10.0.0.1:80 127.0.0.3:8080 0" "-t 10.0.0.2:80 127.0.0.3:8080 absent" \
        || why="no quiesce/remove after the drop"
    start_http 127.0.0.3:8080 3
    [ -z "$why" ] && { expect 10 "-t 10.0.0.1:80 127.0.0.3:8080 3" "-t 10.0.0.2:80 127.0.0.3:8080 4" \
        || why="weights did not return after the drop"; }
fi
if [ -z "$why" ]; then
    ipvsadm -e -t 10.0.0.1:80 -r 127.0.0.2:8080 -m -w 7
    expect 8 "-t 10.0.0.1:80 127.0.0.2:8080 5" || why="drift not repaired after the drop (read-back)"
fi
saved_by=$(stat -c %U /var/lib/lvsmon/state 2>/dev/null)
[ -z "$why" ] && [ "$saved_by" != nobody ] && why="state file owned by '$saved_by', not nobody"
ipvs_errors=$(grep -c "result=error" "$LOG")
[ -z "$why" ] && [ "$ipvs_errors" != 0 ] && why="$ipvs_errors IPVS errors after the drop"
kill -TERM $dp; wait $dp; rc=$?
[ -z "$why" ] && [ $rc != 0 ] && why="exit $rc"
[ -z "$why" ] && ! grep -q 'msg="state saved"' "$LOG" && why="no state saved at stop"
[ -z "$why" ] && [ ! -S /run/lvsmon.sock ] && why="the socket file was removed (expected to stay after a chroot)"
if [ -z "$why" ]; then
    # A plain restart: the stale socket is replaced, and the daemon serves.
    "$LVSMON" -f "$CONF" >/work/after-drop.log 2>&1 & ap=$!
    ok_status=
    for _ in $(seq 1 25); do
        "$LVSMON" status >/dev/null 2>&1 && { ok_status=1; break; }
        sleep 0.2
    done
    [ -n "$ok_status" ] || why="restart after the drop: $(head -n 3 /work/after-drop.log)"
    kill -TERM $ap 2>/dev/null; wait $ap 2>/dev/null
fi
if [ -z "$why" ]; then
    ok "privilege-drop ($caps; ipvs changes $(grep -c 'ipvs op=' "$LOG"), 0 errors)"
else
    bad privilege-drop "$why"
    kill -TERM $dp 2>/dev/null
fi

# 11. Weights (lvsmon.conf(5), WEIGHTS). A real that comes back climbs its slow-start ramp in
#     the kernel's table (4 s over weight 40: 1 10 20 30 40, a step a second). Another's agent
#     (a busybox nc loop answering each connection with the line in /run/agent.reply) says
#     nothing while it is not listening (weight 10 stands), then 50 %: weight 5 in ipvsadm -Ln.
#     `lvsmon set-weight` on top of it sets 3 and reset gives the agent's 5 back; the agent at
#     100 % gives the configured 10.
ipvsadm -C
cat >/work/weights.conf <<CONF
interval 200ms
fall 1
rise 1
forward masq
virtual tcp 10.0.0.20:80 {
    scheduler wlc
    slow-start 4s
    real 127.0.0.2:8080 weight 10 {
        agent 8099 --interval 200ms
    }
    real 127.0.0.3:8080 weight 40
}
CONF
printf '#!/bin/sh\necho "$(cat /run/agent.reply)" 2>/dev/null\n' >/work/agent.sh
chmod +x /work/agent.sh
echo 50% >/run/agent.reply
WSOCK=/run/lvsmon-weights.sock
stop_http 3
: >"$LOG"
"$LVSMON" -f /work/weights.conf -v --socket "$WSOCK" --state-dir /work/weights-state >>"$LOG" 2>&1 & wp=$!
why=
expect 15 "-t 10.0.0.20:80 127.0.0.2:8080 10" "-t 10.0.0.20:80 127.0.0.3:8080 0" || why="table not as configured"
if [ -z "$why" ]; then
    start_http 127.0.0.3:8080 3
    seen=
    end=$(( $(date +%s) + 10 ))
    while [ "$(date +%s)" -lt $end ]; do
        w=$(weight "-t 10.0.0.20:80" 127.0.0.3:8080)
        [ "${seen##* }" = "$w" ] || seen="$seen $w"
        [ "$w" = 40 ] && break
        sleep 0.1
    done
    seen=${seen# }
    # Climbing, in at least three steps between 0 and 40, ending at 40.
    steps=$(echo "$seen" | tr ' ' '\n' | grep -vc -e '^0$' -e '^40$')
    sorted=$(echo "$seen" | tr ' ' '\n' | sort -n | paste -sd ' ')
    if [ "${seen##* }" != 40 ] || [ "$steps" -lt 3 ] || [ "$sorted" != "$seen" ]; then
        why="ramp in ipvsadm -Ln: $seen"
    fi
fi
if [ -z "$why" ]; then
    # Unreachable so far: no change. Then it listens and says 50%.
    [ "$(weight "-t 10.0.0.20:80" 127.0.0.2:8080)" = 10 ] || why="an unreachable agent changed the weight"
    busybox nc -ll -p 8099 -e /work/agent.sh & ap=$!
    [ -z "$why" ] && { expect 5 "-t 10.0.0.20:80 127.0.0.2:8080 5" || why="agent's 50% not applied: $(grep 'agent target' "$LOG" | tail -n 1)"; }
    half=$(weight "-t 10.0.0.20:80" 127.0.0.2:8080)
    [ -z "$why" ] && ! grep -q 'msg="weight".*real=127.0.0.2:8080 weight=5 from="agent 50%"' "$LOG" && why="no weight line from the agent"
    reply=
    [ -z "$why" ] && { reply=$("$LVSMON" set-weight 127.0.0.2:8080 3 --socket "$WSOCK" 2>&1) || why="set-weight: $reply"; }
    [ -z "$why" ] && { expect 5 "-t 10.0.0.20:80 127.0.0.2:8080 3" || why="set-weight 3 not applied: $reply"; }
    [ -z "$why" ] && { "$LVSMON" set-weight 127.0.0.2:8080 reset --socket "$WSOCK" >/dev/null 2>&1 \
        && expect 5 "-t 10.0.0.20:80 127.0.0.2:8080 5" || why="reset did not give the agent's 5 back"; }
    echo 100% >/run/agent.reply
    [ -z "$why" ] && { expect 5 "-t 10.0.0.20:80 127.0.0.2:8080 10" || why="agent's 100% not applied"; }
    kill $ap 2>/dev/null; wait $ap 2>/dev/null
fi
if [ -z "$why" ]; then
    ok "weights (slow start in ipvsadm -Ln: $seen; agent 50%: 10 -> $half; set-weight 3, reset -> 5; agent 100% -> 10)"
else
    bad weights "$why"
fi
kill -TERM $wp 2>/dev/null; wait $wp 2>/dev/null
ipvsadm -C

# Director pairs (tests/vm/pairs.sh): two directors with keepalived and live traffic, and the
# IPVS attributes lvsmon keeps. Its own namespaces; it uses ok/bad above.
if [ -x /work/keepalived ] && [ -f /work/pairs.sh ]; then
    . /work/pairs.sh
else
    bad director-pairs "keepalived or pairs.sh missing from the guest (run-scenarios.sh -i)"
fi

# 12. A direct-routing check through the VIP with --mark: policy routing sends marked checks
#     for the VIP to one real each (ip rule fwmark -> a route via the real). The real that has
#     the VIP on its loopback answers (weight 3); the one without drops them (weight 0).
#     The reals are network namespaces behind veth pairs; the check's port (8080) is not the
#     virtual's, so IPVS itself never takes the director's own connections.
mark_scenario() {
    local why= dp k end
    for k in 1 2; do
        ip netns add "dr$k" || { why="ip netns add dr$k"; break; }
        ip link add "dr$k" type veth peer name eth0 netns "dr$k" || { why="veth dr$k"; break; }
        ip addr add "10.9.$k.1/24" dev "dr$k" && ip link set "dr$k" up
        ip -n "dr$k" addr add "10.9.$k.2/24" dev eth0
        ip -n "dr$k" link set eth0 up && ip -n "dr$k" link set lo up
        ip rule add fwmark "0x1$k" lookup "11$k"
        ip route add 10.0.9.1/32 via "10.9.$k.2" table "11$k"
        ip netns exec "dr$k" busybox httpd -f -p 8080 -h /www & echo $! > "/run/http.dr$k"
    done
    ip -n dr1 addr add 10.0.9.1/32 dev lo      # only dr1 has the VIP
    sleep 0.3
    cat > /work/mark.conf <<'CONF'
interval 500ms
connect-timeout 300ms
timeout 1s
fall 1
rise 1
virtual tcp 10.0.9.1:80 {
    forward route
    real 10.9.1.2:80 weight 3 {
        check http --address 10.0.9.1 --port 8080 --mark 0x11 --expect 200
    }
    real 10.9.2.2:80 weight 4 {
        check http --address 10.0.9.1 --port 8080 --mark 0x12 --expect 200
    }
}
CONF
    if [ -z "$why" ]; then
        "$LVSMON" -f /work/mark.conf -v --socket /run/lvsmon-mark.sock \
            --state-dir /var/lib/lvsmon-mark >/work/mark.log 2>&1 & dp=$!
        expect 10 "-t 10.0.9.1:80 10.9.1.2:80 3" "-t 10.0.9.1:80 10.9.2.2:80 0" \
            || why="weights $(weight "-t 10.0.9.1:80" 10.9.1.2:80)/$(weight "-t 10.0.9.1:80" 10.9.2.2:80), expected 3/0"
        # Its weight is 0 from the start (added at 0): wait for its first check's verdict.
        end=$(( $(date +%s) + 5 ))
        while [ -z "$why" ] && [ "$(date +%s)" -lt $end ] && ! grep -q 'event=down virtual=tcp:10.0.9.1:80 real=10.9.2.2:80' /work/mark.log; do
            sleep 0.2
        done
        [ -z "$why" ] && ! grep -q 'event=down virtual=tcp:10.0.9.1:80 real=10.9.2.2:80 reason=connect-timeout' /work/mark.log \
            && why="no connect-timeout down for the real without the VIP"
        [ -z "$why" ] && grep -q 'event=down virtual=tcp:10.0.9.1:80 real=10.9.1.2:80' /work/mark.log \
            && why="the real with the VIP went down"
        kill -TERM $dp; wait $dp
    fi
    if [ -z "$why" ]; then
        ok "mark-through-the-vip (with the VIP: weight 3; without: 0, connect-timeout)"
    else
        LOG=/work/mark.log bad mark-through-the-vip "$why"
    fi
    for k in 1 2; do
        kill "$(cat "/run/http.dr$k")" 2>/dev/null
        ip rule del fwmark "0x1$k" lookup "11$k" 2>/dev/null
        ip netns del "dr$k" 2>/dev/null
    done
    ipvsadm -D -t 10.0.9.1:80 2>/dev/null
}
mark_scenario

# 13. Migration round trip: keepalived's checker on tests/vm/keepalived-roundtrip.conf builds
#     the table (ipvsadm -Sn saves it); then, with IPVS unloaded and loaded again, lvsmon on
#     what `lvsmon convert keepalived` makes of the same file builds the same lines.
KA=/work/keepalived
KCONF=/work/keepalived-roundtrip.conf
KA_WANT=(
    "-t 10.0.5.1:80 127.0.0.2:8080 5" "-t 10.0.5.1:80 127.0.0.3:8080 3"
    "-t 10.0.5.1:80 127.0.0.7:8080 0" "-t 10.0.5.1:80 127.0.0.8:8080 absent"
    "-t 10.0.6.1:80 127.0.0.4:8080 7" "-t 10.0.6.2:80 127.0.0.4:8080 7" "-f 43 127.0.0.4:8080 7"
    "-u 10.0.7.1:53 127.0.0.5:53 4" "-u 10.0.7.1:53 127.0.0.9:53 absent"
)
ka_round_trip() {
    if [ ! -x "$KA" ] || [ ! -f "$KCONF" ]; then
        bad keepalived-round-trip "keepalived or its configuration is not in the guest (host package keepalived: .ci/install-servers)"
        return
    fi
    ipvsadm -C
    "$KA" -n -C -l -I -f "$KCONF" -i vm -p /run/ka.pid -c /run/ka-checkers.pid >/work/ka.log 2>&1 & local kp=$!
    if ! expect 30 "${KA_WANT[@]}"; then
        bad keepalived-round-trip "keepalived did not build the expected table"
        sed 's/^/    ka| /' /work/ka.log | tail -n 15
        kill -TERM $kp 2>/dev/null; wait $kp 2>/dev/null
        return
    fi
    sleep 2
    ipvsadm -Sn | sort >/work/ka.table
    kill -TERM $kp 2>/dev/null; wait $kp 2>/dev/null
    ipvsadm -C
    modprobe -r ip_vs_wlc ip_vs_wrr ip_vs_rr ip_vs_sh ip_vs 2>/dev/null
    local reloaded=no
    lsmod | grep -q '^ip_vs ' || reloaded=yes
    modprobe ip_vs
    "$LVSMON" convert keepalived "$KCONF" --config-id vm >/work/ka-lvsmon.conf 2>/work/ka-convert.err
    local crc=$?
    : >"$LOG"
    "$LVSMON" -f /work/ka-lvsmon.conf -v >>"$LOG" 2>&1 & local lp=$!
    if [ $crc != 0 ] || ! expect 30 "${KA_WANT[@]}"; then
        bad keepalived-round-trip "convert exit $crc: $(head -c 300 /work/ka-convert.err); or lvsmon did not build the table"
        kill -TERM $lp 2>/dev/null; wait $lp 2>/dev/null
        return
    fi
    sleep 2
    ipvsadm -Sn | sort >/work/lvsmon.table
    kill -TERM $lp 2>/dev/null; wait $lp 2>/dev/null
    ipvsadm -C
    if diff /work/ka.table /work/lvsmon.table >/work/ka.diff; then
        ok "keepalived-round-trip ($(grep -c . /work/ka.table) ipvsadm -Sn lines alike; IPVS reloaded in between: $reloaded)"
    else
        bad keepalived-round-trip "ipvsadm -Sn differs (< keepalived, > lvsmon)"
        sed 's/^/    diff| /' /work/ka.diff
    fi
}
ka_round_trip

for p in /run/http.*; do kill "$(cat "$p")" 2>/dev/null; done
echo "$pass passed, $fail failed"
[ $fail = 0 ]
