#!/usr/bin/env bash
# Run one command in a throw-away VM with Debian's kernel and IPVS (qemu TCG; tests/vm/README.md).
#
#   tests/vm/run.sh [-i FILE[:DEST]]... [-e NAME=VALUE]... [-o OUTDIR] [-t SECS] [-M MODULES] -- COMMAND...
#
#   -i FILE[:DEST]  put FILE (or a directory) into the guest: /work/BASENAME, or DEST (relative
#                   DEST: under /work; DEST ending in /: DEST/BASENAME). ELF files bring the
#                   shared libraries ldd names, at the same paths.
#   -e NAME=VALUE   set an environment variable for COMMAND
#   -o OUTDIR       copy the guest's /out into OUTDIR after the run
#   -t SECS         time limit for the whole VM (default 300)
#   -M MODULES      modules to modprobe before COMMAND (space or comma separated; default
#                   "ip_vs ip_vs_rr ip_vs_wrr ip_vs_wlc ip_vs_sh"; "" for none)
#
# COMMAND is an argv (no shell; use `sh -c '...'`), run as root in /work with stdin /dev/null;
# its stdout and stderr stream to this script's stdout as the guest writes them.
# Exit status: COMMAND's, 124 on time-out, 125 if the VM or the harness failed (console tail on
# stderr). Parallel runs are independent; every temp file and the qemu process are removed on
# exit, Ctrl-C or time-out.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${LVSMON_VM_CACHE:-/var/tmp/lvsmon-vm}

die() {
    echo "vm run: $*" >&2
    exit 125
}
usage() { die "usage: run.sh [-i FILE[:DEST]]... [-e NAME=VALUE]... [-o OUTDIR] [-t SECS] [-M MODULES] -- COMMAND..."; }

inputs=() envs=() outdir='' timeout=300 modules="ip_vs ip_vs_rr ip_vs_wrr ip_vs_wlc ip_vs_sh"
while getopts ':i:e:o:t:M:h' opt; do
    case $opt in
        i) inputs+=("$OPTARG") ;;
        e) [[ $OPTARG == [A-Za-z_]*=* ]] || die "-e wants NAME=VALUE, not '$OPTARG'"; envs+=("$OPTARG") ;;
        o) outdir=$OPTARG ;;
        t) [[ $OPTARG =~ ^[0-9]+$ && $OPTARG -gt 0 ]] || die "-t wants whole seconds"; timeout=$OPTARG ;;
        M) modules=${OPTARG//,/ } ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || usage

# The base initramfs must exist and be built from the present setup.sh and guest-init.sh.
want_scripts=$(cat "$here/setup.sh" "$here/guest-init.sh" | sha256sum | cut -c1-16)
if ! grep -qs "^scripts=$want_scripts " "$cache/current/base.stamp"; then
    "$here/setup.sh" -q >&2 || die "setup.sh failed"
fi
kdir=$(readlink -f "$cache/current")
for f in vmlinuz base.cpio base.list; do [ -f "$kdir/$f" ] || die "missing $kdir/$f"; done
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not installed (run tests/vm/setup.sh)"

tmp=
qemu_pid=
cat_pid=
alive() { # PID: the process exists and is not a zombie
    local st
    read -r st 2>/dev/null <"/proc/$1/stat" || return 1
    st=${st##*) }
    [ "${st%% *}" != Z ]
}
stop() { # PID: TERM, up to 2 s, then KILL; reap it
    local _
    alive "$1" || { wait "$1" 2>/dev/null || true; return 0; }
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 40); do alive "$1" || break; sleep 0.05; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
# shellcheck disable=SC2317 # called from the traps
cleanup() {
    trap - EXIT INT TERM HUP
    if [ -n "$qemu_pid" ]; then stop "$qemu_pid"; fi
    if [ -n "$cat_pid" ]; then stop "$cat_pid"; fi
    if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 129' HUP

# A run killed by SIGKILL cannot clean up (its qemu dies with it, through setpriv): drop the
# temp dirs whose owner is gone.
for d in "${TMPDIR:-/tmp}"/lvsmon-vm.*; do
    owner=
    [ -f "$d/owner" ] && read -r owner <"$d/owner"
    if [ -n "$owner" ] && [ ! -d "/proc/$owner" ]; then rm -rf "$d"; fi
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lvsmon-vm.XXXXXX")
echo $$ >"$tmp/owner"
stage=$tmp/stage
mkdir -p "$stage/lvsmon-run" "$stage/work"

# --- the per-run archive -------------------------------------------------------------------
declare -A in_base=()
while IFS= read -r f; do in_base[$f]=1; done <"$kdir/base.list"

add_libs() { # ELF: copy the libraries ldd names, unless the base archive has them
    local line lib
    while read -r line; do
        case $line in
            *"=> /"*) lib=${line#*=> }; lib=${lib%% (*} ;;
            /*) lib=${line%% (*} ;;
            *) continue ;;
        esac
        [ -n "${in_base[$lib]:-}" ] || [ -e "$stage$lib" ] && continue
        mkdir -p "$stage${lib%/*}"
        cp -L "$lib" "$stage$lib"
    done < <(ldd "$1" 2>/dev/null || true)
}
is_elf() { [ -f "$1" ] && [ "$(head -c4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; }

for spec in "${inputs[@]}"; do
    src=${spec%%:*}
    if [ "$src" != "$spec" ]; then dest=${spec#*:}; else dest=; fi
    [ -e "$src" ] || die "-i $src: no such file"
    name=$(basename "$src")
    case $dest in
        "") dest=/work/$name ;;
        */) dest=$dest$name ;;
    esac
    [[ $dest == /* ]] || dest=/work/$dest
    mkdir -p "$stage$(dirname "$dest")"
    cp -RL --preserve=mode "$src" "$stage$dest"
    if [ -d "$src" ]; then
        while IFS= read -r -d '' f; do is_elf "$f" && add_libs "$f"; done < <(find "$stage$dest" -type f -print0)
    elif is_elf "$src"; then
        add_libs "$src"
    fi
done

{
    printf 'argv=('
    printf ' %q' "$@"
    printf ' )\n'
} >"$stage/lvsmon-run/argv"
: >"$stage/lvsmon-run/env"
for e in "${envs[@]}"; do
    printf 'export %s=%q\n' "${e%%=*}" "${e#*=}" >>"$stage/lvsmon-run/env"
done
echo "$modules" >"$stage/lvsmon-run/modules"
if [ -n "$outdir" ]; then : >"$stage/lvsmon-run/want-out"; fi

(cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    busybox cpio -o -0 -H newc -R 0:0 --renumber-inodes --ignore-devno 2>/dev/null) >"$tmp/run.cpio" ||
    die "building the per-run archive failed"
cat "$kdir/base.cpio" "$tmp/run.cpio" >"$tmp/initrd.cpio"
rm -rf "$stage" "$tmp/run.cpio"

# --- boot --------------------------------------------------------------------------------
# ttyS1 goes to a FIFO read by cat (a qemu "pipe" chardev would also read from it as input and
# lose output); the others are plain files. setpriv kills qemu if this script dies by SIGKILL.
mkfifo "$tmp/out.fifo"
cat "$tmp/out.fifo" &
cat_pid=$!
pdeath=()
if [[ $(setpriv --help 2>&1) == *pdeathsig* ]]; then pdeath=(setpriv --pdeathsig KILL --); fi
"${pdeath[@]}" qemu-system-x86_64 -accel tcg -cpu qemu64 -M pc -m 1024 -nodefaults -display none \
    -no-reboot -monitor none \
    -kernel "$kdir/vmlinuz" -initrd "$tmp/initrd.cpio" \
    -append "console=ttyS0 quiet panic=-1 mitigations=off cryptomgr.notests" \
    -serial "file:$tmp/console.log" -serial "file:$tmp/out.fifo" \
    -serial "file:$tmp/rc" -serial "file:$tmp/out.tar" \
    </dev/null >"$tmp/qemu.log" 2>&1 &
qemu_pid=$!

timed_out=0
deadline=$((SECONDS + timeout))
while alive "$qemu_pid"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        timed_out=1
        break
    fi
    sleep 0.05
done
if [ "$timed_out" = 1 ]; then
    kill -KILL "$qemu_pid" 2>/dev/null || true
fi
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=
# qemu closed the FIFO, so cat ends once it has copied what is left. If qemu never opened
# it, cat is still waiting in open(): stop it.
for _ in $(seq 1 100); do alive "$cat_pid" || break; sleep 0.02; done
stop "$cat_pid"
cat_pid=

console_tail() {
    {
        echo "--- VM console (last 40 lines) ---"
        tail -n 40 "$tmp/console.log" 2>/dev/null | tr -d '\r'
        if [ -s "$tmp/qemu.log" ]; then echo "--- qemu ---"; cat "$tmp/qemu.log"; fi
        echo "---"
    } >&2
}

if [ "$timed_out" = 1 ]; then
    echo "vm run: timed out after $timeout s" >&2
    console_tail
    exit 124
fi
rc=$(grep -ao 'rc=[0-9a-z-]*' "$tmp/rc" 2>/dev/null | head -n1 || true)
rc=${rc#rc=}
if ! [[ $rc =~ ^[0-9]+$ ]]; then
    echo "vm run: the VM ended without reporting a status${rc:+ ($rc)}" >&2
    console_tail
    exit 125
fi
if [ -n "$outdir" ]; then
    mkdir -p "$outdir"
    tar -xf "$tmp/out.tar" -C "$outdir" || die "cannot unpack the guest's /out"
fi
exit "$rc"
