#!/bin/bash
# Runs inside the VM (sourced by tests/vm/scenarios.sh, or on its own): a pair of directors
# with live traffic (lvsmon(8), DIRECTOR PAIRS), and the IPVS attributes lvsmon must keep.
#
# Topology: network namespaces joined by a bridge (10.9.0.0/24): directors d1 (.11) and d2
# (.12), a client (.100), real servers r1..r3 (.21-.23). Direct routing: the VIP 10.9.0.50 is
# on the reals' loopback (ARP for it ignored there), so replies go straight from the real to
# the client and a takeover only has to move the VIP and find the connection in the new
# master's table; with NAT the reals would also need their gateway moved. keepalived runs
# VRRP only (advert_int 1), d1 at priority 150, d2 at 100; lvsmon runs on both with the same
# lvsmon.conf (its track file is /etc/lvsmon/track, which `ip netns exec` gives each
# director from /etc/netns/NAME/lvsmon), each running the sync daemon as master and backup.
#
# Scenarios: pair-takeover (keepalived stopped on the master), pair-track-file (the master
# loses its reals), keep-attributes (ipvsadm's settings survive), keep-attributes-fresh (they
# survive an edit made before any resync could learn them), sync-daemon (reload restarts
# it, stop leaves it).
set -u
cd /work
if ! declare -f ok >/dev/null; then
    pass=0 fail=0
    ok() { pass=$((pass + 1)); echo "scenario $1: ok"; }
    bad() { fail=$((fail + 1)); echo "scenario $1: FAIL: $2"; }
    standalone=1
fi
LVSMON=${LVSMON:-/work/lvsmon}
KEEPALIVED=${KEEPALIVED:-/work/keepalived}
VIP=10.9.0.50
P=/work/pairs
mkdir -p $P /www
[ -f /www/index.html ] || echo OK > /www/index.html
now() { echo "${EPOCHREALTIME/./}"; } # microseconds
ms() { echo $(( ($2 - $1) / 1000 )); }

# ---- topology -------------------------------------------------------------------------------
ip link add br9 type bridge && ip link set br9 up
n=0
for ns in d1:11 d2:12 c:100 r1:21 r2:22 r3:23; do
    name=${ns%:*} host=${ns#*:}
    n=$((n + 1))
    ip netns add "$name"
    ip link add "v$name" type veth peer name eth0 netns "$name"
    ip link set "v$name" master br9 up
    ip -n "$name" link set lo up
    ip -n "$name" addr add "10.9.0.$host/24" dev eth0
    ip -n "$name" link set eth0 up
done
for r in r1 r2 r3; do
    ip -n $r addr add $VIP/32 dev lo
    ip netns exec $r sh -c 'echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore; echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce'
    ip netns exec $r busybox httpd -f -p 80 -h /www & echo $! >> $P/pids
    ip netns exec $r busybox nc -ll -p 81 -e cat & echo $! >> $P/pids
done
for d in d1 d2; do
    mkdir -p /etc/netns/$d/lvsmon /var/lib/lvsmon-$d
    ip netns exec $d sh -c 'echo 1 > /proc/sys/net/ipv4/vs/expire_nodest_conn' 2>/dev/null
done
mkdir -p /etc/lvsmon

cat > $P/lvsmon.conf <<EOF
interval 300ms
retry-interval 200ms
fall 2
rise 2
timeout 1s
connect-timeout 300ms
resync 2s
forward route
sync-daemon master eth0 id 51
sync-daemon backup eth0 id 51
track-file /etc/lvsmon/track
virtual tcp $VIP:80 {
    scheduler rr
    quorum 1
    real 10.9.0.21:80
    real 10.9.0.22:80
    real 10.9.0.23:80
}
virtual tcp $VIP:81 {
    scheduler rr
    check tcp --port 80
    real 10.9.0.21:81
    real 10.9.0.22:81
    real 10.9.0.23:81
}
EOF
start_director() {
    ip netns exec "$1" "$LVSMON" -f $P/lvsmon.conf -v --socket "/run/lvsmon-$1.sock" \
        --state-dir "/var/lib/lvsmon-$1" >>"$P/lvsmon-$1.log" 2>&1 &
    echo $! > "$P/lvsmon-$1.pid"
}
keepalived_conf() { # NAME PRIORITY
    cat > "$P/keepalived-$1.conf" <<EOF
global_defs {
    router_id $1
}
track_file lvsmon {
    file /etc/lvsmon/track
    weight 1
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority $2
    advert_int 1
    virtual_ipaddress {
        $VIP/24 dev eth0
    }
    track_file {
        lvsmon
    }
}
EOF
}
start_keepalived() {
    ip netns exec "$1" "$KEEPALIVED" -n -l -P -f "$P/keepalived-$1.conf" \
        -p "/run/keepalived-$1.pid" -r "/run/vrrp-$1.pid" >>"$P/keepalived-$1.log" 2>&1 &
    echo $! > "$P/keepalived-$1.pid"
}
stop_keepalived() {
    kill -TERM "$(cat "$P/keepalived-$1.pid")" 2>/dev/null
    wait "$(cat "$P/keepalived-$1.pid")" 2>/dev/null
}
has_vip() { ip -n "$1" -4 addr show dev eth0 | grep -q "$VIP/"; }
wait_vip() { # NS SECS: prints the wait in ms, fails on time-out
    local t0 end
    t0=$(now) end=$(( $(now) + $2 * 1000000 ))
    while ! has_vip "$1"; do
        [ "$(now)" -ge $end ] && return 1
        sleep 0.02
    done
    ms "$t0" "$(now)"
}
dests_up() { # NS: number of destinations at weight 1 under VIP:80
    ip netns exec "$1" ipvsadm -Ln -t $VIP:80 2>/dev/null | awk '$1 == "->" && $4 == 1' | wc -l
}
wait_for() { # SECS COMMAND...
    local end=$(( $(date +%s) + $1 )); shift
    until "$@"; do [ "$(date +%s)" -ge $end ] && return 1; sleep 0.2; done
}
dump_pair() {
    for d in d1 d2; do
        echo "    $d: $(ip -n $d -4 -br addr show dev eth0) track=$(cat /etc/netns/$d/lvsmon/track 2>/dev/null)"
        ip netns exec $d ipvsadm -Ln | sed "s/^/    $d| /"
        tail -n 6 "$P/lvsmon-$d.log" | sed "s/^/    $d log| /"
        tail -n 6 "$P/keepalived-$d.log" | sed "s/^/    $d vrrp| /"
    done
}

start_director d1
start_director d2
keepalived_conf d1 150
keepalived_conf d2 100
if ! wait_for 15 sh -c "[ \$(ip netns exec d1 ipvsadm -Ln -t $VIP:80 | grep -c '^  ->.* 1 ') = 3 ] && [ \$(ip netns exec d2 ipvsadm -Ln -t $VIP:80 | grep -c '^  ->.* 1 ') = 3 ]"; then
    bad pair-setup "the directors' tables did not reach 3 reals UP each"
    dump_pair
fi
start_keepalived d1
start_keepalived d2
if ! wait_vip d1 15 >/dev/null; then
    bad pair-setup "d1 never took the VIP"
    dump_pair
fi
sleep 1

# ---- the client: one long-lived connection, and a short one every 100 ms ----------------
cat > $P/client.sh <<'EOF'
VIP=$1 OUT=$2
# The long-lived connection: a line every 200 ms, each echoed back by the real server.
(
    exec 5<>/dev/tcp/$VIP/81 || { echo "long connect-failed" >> $OUT/long.log; exit; }
    i=0
    while [ ! -f $OUT/stop ]; do
        i=$((i + 1))
        echo "ping $i" >&5
        if read -t 8 -r line <&5 && [ "$line" = "ping $i" ]; then
            echo "${EPOCHREALTIME/./} ok $i" >> $OUT/long.log
        else
            echo "${EPOCHREALTIME/./} lost $i" >> $OUT/long.log
            break
        fi
        sleep 0.2
    done
) &
# Short connections: one every 100 ms, each its own HTTP request.
while [ ! -f $OUT/stop ]; do
    (
        t0=${EPOCHREALTIME/./}
        if exec 3<>/dev/tcp/$VIP/80 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && read -t 3 -r line <&3; then
            echo "$t0 ok ${EPOCHREALTIME/./}"
        else
            echo "$t0 fail ${EPOCHREALTIME/./}"
        fi
    ) >> $OUT/short.log 2>/dev/null &
    sleep 0.1
done
wait
EOF
rm -f $P/stop $P/long.log $P/short.log
ip netns exec c bash $P/client.sh $VIP $P & client=$!
sleep 3

# ---- pair-takeover --------------------------------------------------------------------------
why=
long_before=$(grep -c ' ok ' $P/long.log 2>/dev/null)
[ "${long_before:-0}" -ge 3 ] || why="the long-lived connection does not work before the failover"
# Its entry reached the backup through the sync daemon.
synced=$(ip netns exec d2 ipvsadm -Lnc | awk -v v="$VIP:81" '$5 == v' | head -n 1)
[ -z "$why" ] && [ -z "$synced" ] && why="d2 has no entry for the long-lived connection (ipvsadm -Lnc)"
t_stop=$(now)
stop_keepalived d1
takeover=$(wait_vip d2 10) || { [ -z "$why" ] && why="d2 did not take the VIP within 10 s"; }
sleep 4
t_end=$(now)
long_after=$(awk -v t="$t_stop" '$1 > t && $2 == "ok"' $P/long.log | wc -l)
[ -z "$why" ] && grep -q lost $P/long.log && why="the long-lived connection broke: $(grep lost $P/long.log | head -n 1)"
[ -z "$why" ] && [ "$long_after" -lt 5 ] && why="the long-lived connection carried only $long_after lines after the failover"
# Short connections started from the stop to the end: failed, or never finished.
read -r short_total short_lost gap <<<"$(awk -v a="$t_stop" -v b="$t_end" '
    $1 >= a && $1 < b - 3000000 { n++; if ($2 != "ok") { lost++; if (!first) first = $1; last = $1 } }
    END { printf "%d %d %d\n", n, lost, (lost ? (last - first) / 1000 : 0) }' $P/short.log)"
if [ -z "$why" ]; then
    ok "pair-takeover (VIP on d2 ${takeover} ms after keepalived stopped on d1; short connections lost: $short_lost of $short_total over ${gap} ms; long-lived connection kept, $long_after lines after; its entry was on d2 before: ${synced// /_})"
else
    bad pair-takeover "$why"
    dump_pair
fi

# ---- pair-track-file: the master loses its reals ---------------------------------------------
why=
start_keepalived d1
wait_vip d1 15 >/dev/null || why="d1 did not take the VIP back (preempt) within 15 s"
sleep 1
[ -z "$why" ] && [ "$(cat /etc/netns/d1/lvsmon/track 2>/dev/null)" != 0 ] && why="d1's track file holds '$(cat /etc/netns/d1/lvsmon/track 2>/dev/null)', not 0"
t0=$(now)
# The reals stop as d1 sees them only: d2 still reaches them.
for h in 21 22 23; do ip -n d1 route add unreachable 10.9.0.$h/32; done
[ -z "$why" ] && { wait_vip d2 15 >/dev/null || why="d2 did not take over within 15 s"; }
t1=$(now)
track1=$(cat /etc/netns/d1/lvsmon/track 2>/dev/null) track2=$(cat /etc/netns/d2/lvsmon/track 2>/dev/null)
[ -z "$why" ] && [ "$track1" != -100 ] && why="d1's track file holds '$track1', not -100"
[ -z "$why" ] && [ "$track2" != 0 ] && why="d2's track file holds '$track2', not 0"
[ -z "$why" ] && ! grep -q 'event=quorum-lost' $P/lvsmon-d1.log && why="no quorum-lost on d1"
sleep 2
t_end=$(now)
read -r short_total short_lost <<<"$(awk -v a="$t0" -v b="$t_end" '
    $1 >= a && $1 < b - 3000000 { n++; if ($2 != "ok") lost++ } END { printf "%d %d\n", n, lost }' $P/short.log)"
if [ -z "$why" ]; then
    ok "pair-track-file (d1 lost its reals: track file -100, VIP on d2 after $(ms "$t0" "$t1") ms; short connections lost: $short_lost of $short_total)"
else
    bad pair-track-file "$why"
    dump_pair
fi
touch $P/stop
sleep 0.5
kill "$client" 2>/dev/null
wait "$client" 2>/dev/null
for d in d1 d2; do
    stop_keepalived $d
    kill -TERM "$(cat "$P/lvsmon-$d.pid")" 2>/dev/null
    wait "$(cat "$P/lvsmon-$d.pid")" 2>/dev/null
done

# ---- keep-attributes: what ipvsadm set survives unless the config owns it ------------------
ip netns add k
ip -n k link set lo up
ip -n k link add s0 type dummy
ip -n k link set s0 multicast on up
ip -n k addr add 10.8.0.1/24 dev s0
for a in 2 3; do
    ip netns exec k busybox httpd -f -p 127.0.0.$a:8080 -h /www & echo $! > "$P/khttp.$a"
done
kconf() { # persistent SECS, extra lines for the virtual, extra global lines
    cat > $P/keep.conf <<EOF
interval 300ms
retry-interval 200ms
fall 1
rise 1
timeout 1s
resync 1s
forward masq
$3
virtual udp 10.0.0.3:53 {
    scheduler sh
    persistent $1
    check tcp --port 8080
$2
    real 127.0.0.2:53 weight 2
    real 127.0.0.3:53 weight 3
}
EOF
}
kipvs() { ip netns exec k ipvsadm "$@"; }
kattrs() { # "flags netmask u l weight" of 127.0.0.2:53
    local svc dest
    svc=$(kipvs -Ln -u 10.0.0.3:53 | awk '/^UDP/ { $1 = $2 = ""; print }' | sed 's/^ *//')
    dest=$(kipvs -Ln --thresholds -u 10.0.0.3:53 | awk '$2 == "127.0.0.2:53" { print $3, $4 }')
    echo "svc:$svc dest-thresholds:$dest weight:$(kipvs -Ln -u 10.0.0.3:53 | awk '$2 == "127.0.0.2:53" { print $4 }')"
}
kconf 60 "" "sync-daemon master s0 id 7"
ip netns exec k "$LVSMON" -f $P/keep.conf -v --socket /run/lvsmon-k.sock --state-dir /var/lib/lvsmon-k >>$P/lvsmon-k.log 2>&1 & kp=$!
why=
wait_for 10 sh -c "ip netns exec k ipvsadm -Ln -u 10.0.0.3:53 2>/dev/null | grep -q '127.0.0.2:53 *Masq *2 '" || why="lvsmon did not set up 10.0.0.3:53"
# By hand, on what the config does not own.
kipvs -E -u 10.0.0.3:53 -s sh -b sh-port -o -p 60 -M 255.255.255.0
kipvs -e -u 10.0.0.3:53 -r 127.0.0.2:53 -m -w 2 -x 100 -y 50
want="svc:sh (sh-port) persistent 60 mask 255.255.255.0 ops dest-thresholds:100 50 weight:2"
sleep 2.5 # a read-back learns them
check_keep() { # WHEN WEIGHT
    local w=${want/weight:2/weight:$2} got
    got=$(kattrs)
    [ -z "$why" ] && [ "$got" != "$w" ] && why="after $1: '$got', expected '$w'"
}
check_keep "the resync" 2
kill "$(cat $P/khttp.2)"; wait "$(cat $P/khttp.2)" 2>/dev/null
wait_for 5 sh -c "ip netns exec k ipvsadm -Ln -u 10.0.0.3:53 | grep -q '127.0.0.2:53 *Masq *0 '"
check_keep quiesce 0
ip netns exec k busybox httpd -f -p 127.0.0.2:8080 -h /www & echo $! > "$P/khttp.2"
wait_for 5 sh -c "ip netns exec k ipvsadm -Ln -u 10.0.0.3:53 | grep -q '127.0.0.2:53 *Masq *2 '"
check_keep restore 2
# A reload whose persistence changed: edit-service, which must keep the flags and the mask.
kconf 120 "" "sync-daemon master s0 id 7"
kill -HUP $kp
want=${want/persistent 60/persistent 120}
wait_for 5 sh -c "ip netns exec k ipvsadm -Ln -u 10.0.0.3:53 | grep -q 'persistent 120'"
check_keep "a reload (edit-service)" 2
kept=$why
# Now the config owns them: its values win.
kconf 120 "    sched-flags sh-fallback
    one-packet no
    persistence-netmask 16
    u-threshold 10
    l-threshold 5" "sync-daemon master s0 id 7"
kill -HUP $kp
want="svc:sh (sh-fallback) persistent 120 mask 255.255.0.0 dest-thresholds:10 5 weight:2"
wait_for 6 sh -c "ip netns exec k ipvsadm -Ln --thresholds -u 10.0.0.3:53 | grep -q '127.0.0.2:53 .* 10 *5 '"
sleep 0.5
check_keep "a reload that owns them" 2
if [ -z "$why" ]; then
    ok "keep-attributes (-x 100 -y 50, --ops, -M 255.255.255.0 and sh-port kept through resync, quiesce, restore and a reload; owned by the config: its values win)"
else
    bad keep-attributes "$why"
    kipvs -Ln --thresholds | sed 's/^/    k| /'
    tail -n 8 $P/lvsmon-k.log | sed 's/^/    k log| /'
fi

# ---- sync-daemon: a reload that changes it restarts it; stopping lvsmon leaves it --------
why=
daemons() { ip netns exec k ipvsadm -L --daemon; }
daemons | grep -q 'master sync daemon (mcast=s0, syncid=7' || why="no master daemon with syncid 7 at start: $(daemons)"
kconf 120 "" "sync-daemon master s0 id 8"
kill -HUP $kp
wait_for 6 sh -c "ip netns exec k ipvsadm -L --daemon | grep -q 'syncid=8'" || { [ -z "$why" ] && why="the reload did not restart the daemon: $(daemons)"; }
# The daemon is restarted off the loop (stopping one waits for its kernel threads); the loop
# logs the outcome when it next collects news, so the kernel may show id 8 a little before.
[ -z "$why" ] && ! wait_for 3 grep -q 'sync-daemon master s0 id 8: restarted' $P/lvsmon-k.log && why="no 'restarted' line in the log"
status=$(ip netns exec k "$LVSMON" --socket /run/lvsmon-k.sock status 2>&1)
[ -z "$why" ] && ! grep -q 'sync-daemon master s0 id 8: restarted' <<<"$status" && why="lvsmon status does not show the daemon: $status"
kill -TERM $kp; wait $kp
[ -z "$why" ] && ! daemons | grep -q 'syncid=8' && why="stopping lvsmon stopped the daemon"
if [ -z "$why" ]; then
    ok "sync-daemon (reload from id 7 to 8 restarted it; shown in status; left running at stop)"
else
    bad sync-daemon "$why"
    tail -n 8 $P/lvsmon-k.log | sed 's/^/    k log| /'
fi
# ---- keep-attributes-fresh: a hand change kept with no resync in between ------------------
# The resync is 10 minutes away: only the read of the service before each edit can learn
# what ipvsadm set, and the quiesce comes at once after it.
why=
cat > $P/fresh.conf <<EOF
interval 300ms
retry-interval 200ms
fall 1
rise 1
timeout 1s
resync 10m
forward masq
virtual udp 10.0.0.4:53 {
    scheduler sh
    check tcp --port 8080
    real 127.0.0.2:53 weight 2
    real 127.0.0.3:53 weight 3
}
EOF
fthr() { # "u l weight" of 127.0.0.2:53 under 10.0.0.4:53
    kipvs -Ln --thresholds -u 10.0.0.4:53 | awk '$2 == "127.0.0.2:53" { printf "%s %s ", $3, $4 }'
    kipvs -Ln -u 10.0.0.4:53 | awk '$2 == "127.0.0.2:53" { print $4 }'
}
ip netns exec k "$LVSMON" -f $P/fresh.conf -v --socket /run/lvsmon-f.sock --state-dir /var/lib/lvsmon-f >>$P/lvsmon-f.log 2>&1 & fp=$!
wait_for 10 sh -c "ip netns exec k ipvsadm -Ln -u 10.0.0.4:53 2>/dev/null | grep -q '127.0.0.2:53 *Masq *2 '" || why="lvsmon did not set up 10.0.0.4:53"
sleep 1.5 # what lvsmon read at startup is no longer fresh
kipvs -e -u 10.0.0.4:53 -r 127.0.0.2:53 -m -w 2 -x 100 -y 50
kill "$(cat $P/khttp.2)"; wait "$(cat $P/khttp.2)" 2>/dev/null
wait_for 5 sh -c "ip netns exec k ipvsadm -Ln -u 10.0.0.4:53 | grep -q '127.0.0.2:53 *Masq *0 '" || { [ -z "$why" ] && why="no quiesce"; }
got=$(fthr)
[ -z "$why" ] && [ "$got" != "100 50 0" ] && why="after the quiesce: '$got', expected '100 50 0'"
# Changed again while quiesced; the restore comes more than a second after the last read.
kipvs -e -u 10.0.0.4:53 -r 127.0.0.2:53 -m -w 0 -x 200 -y 50
sleep 1.2
ip netns exec k busybox httpd -f -p 127.0.0.2:8080 -h /www & echo $! > "$P/khttp.2"
wait_for 5 sh -c "ip netns exec k ipvsadm -Ln -u 10.0.0.4:53 | grep -q '127.0.0.2:53 *Masq *2 '" || { [ -z "$why" ] && why="no restore"; }
got=$(fthr)
[ -z "$why" ] && [ "$got" != "200 50 2" ] && why="after the restore: '$got', expected '200 50 2'"
[ -z "$why" ] && grep -q 'read before edit' $P/lvsmon-f.log && why="a read before an edit failed: $(grep 'read before edit' $P/lvsmon-f.log | head -n 1)"
kill -TERM $fp; wait $fp
if [ -z "$why" ]; then
    ok "keep-attributes-fresh (resync 10m: -x 100 -y 50 set just before a quiesce kept; -x 200 set while quiesced kept by the restore)"
else
    bad keep-attributes-fresh "$why"
    kipvs -Ln --thresholds -u 10.0.0.4:53 | sed 's/^/    f| /'
    tail -n 8 $P/lvsmon-f.log | sed 's/^/    f log| /'
fi

for a in 2 3; do kill "$(cat "$P/khttp.$a")" 2>/dev/null; done
while read -r p; do kill "$p" 2>/dev/null; done < $P/pids
if [ -n "${standalone:-}" ]; then
    echo "$pass passed, $fail failed"
    [ $fail = 0 ]
fi
