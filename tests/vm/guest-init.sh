#!/bin/bash
# PID 1 of the lvsmon test VM (copied to /init of the base initramfs by setup.sh; bash is the
# host's, and /bin/sh is bash too). It runs one command and powers the VM off. Serial lines:
#   ttyS0  kernel console and this script's own diagnostics (a log file on the host)
#   ttyS1  the command's stdout+stderr (a FIFO that run.sh copies to its stdout, live)
#   ttyS2  "rc=N" once the command has ended, or "rc=setup-failed"
#   ttyS3  a tar of /out (only when run.sh was given -o)
# run.sh's per-run archive provides /lvsmon-run/{argv,env,modules} and maybe want-out.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LVSMON_VM=1
R=/lvsmon-run

say() { echo "lvsmon-vm init: $*" >/dev/console; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 run /run
mount -t tmpfs -o mode=1777 tmp /tmp

# Raw lines: no \n -> \r\n on output, no echo; ttyS3 carries binary tar data.
for n in 1 2 3; do
    stty -F /dev/ttyS$n raw -echo || say "stty ttyS$n failed"
done

report() { echo "rc=$1" >/dev/ttyS2; }
finish() {
    sync
    poweroff -f
    sleep 5
    echo b >/proc/sysrq-trigger
}

setup_failed() {
    echo "lvsmon-vm: $*" >/dev/ttyS1
    say "$*"
    report setup-failed
    finish
}

ip link set lo up || setup_failed "ip link set lo up failed"

modules=
[ -r $R/modules ] && read -r modules <$R/modules
for m in $modules; do
    modprobe "$m" || setup_failed "modprobe $m failed"
done

[ -r $R/argv ] || setup_failed "no $R/argv in the initramfs"
mkdir -p /work /out
cd /work || setup_failed "no /work"

# The command writes into a FIFO; one cat batches it to the UART (much faster than many
# small writes, and the only process holding ttyS1, so its close drains the line).
mkfifo /run/lvsmon-out
cat /run/lvsmon-out >/dev/ttyS1 &
catpid=$!

(
    set -a
    # shellcheck disable=SC1091 # written by run.sh
    [ -r $R/env ] && . $R/env
    set +a
    argv=()
    # shellcheck disable=SC1091
    . $R/argv # sets the array argv
    exec "${argv[@]}"
) >/run/lvsmon-out 2>&1 </dev/null
rc=$?

# Leftover processes (daemons the command started) keep the FIFO open and would hang the
# run: kill every user-space process but this one and the cat. Kernel threads have no exe.
for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = 1 ] || [ "$pid" = "$catpid" ] || [ "$pid" = "$$" ] && continue
    [ -e "$p/exe" ] && kill -KILL "$pid" 2>/dev/null
done
wait "$catpid"

if [ -e $R/want-out ]; then
    tar -C /out -cf - . >/dev/ttyS3 || say "tar of /out failed"
fi
report "$rc"
finish
