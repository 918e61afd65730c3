#!/usr/bin/env bash
# Prepare the throw-away IPVS test VM (see tests/vm/README.md). Idempotent: a second run only
# checks and prints "up to date".
#   1. host packages: qemu-system-x86 busybox-static ipvsadm strace keepalived (apt, --no-install-recommends)
#   2. Debian's cloud kernel: the linux-image-ABI-cloud-amd64 package that
#      linux-image-cloud-amd64 depends on, downloaded with apt-get download into the cache
#   3. its ip_vs*, veth, dummy and bridge modules plus their depends= closure, busybox depmod
#   4. the base initramfs (busybox, bash as /bin/sh, ipvsadm, ip, strace, libraries, /init)
# Cache: ${LVSMON_VM_CACHE:-/var/tmp/lvsmon-vm}; "current" links to the kernel in use.
# Options: -q  print nothing when already up to date.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${LVSMON_VM_CACHE:-/var/tmp/lvsmon-vm}
quiet=0
[ "${1:-}" = -q ] && quiet=1

start=$(date +%s.%N)
say() { echo "vm setup: $*" >&2; }
elapsed() { awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

host_pkgs=(qemu-system-x86 busybox-static ipvsadm strace keepalived)
# Host programs copied into the guest (their libraries come along through ldd). Besides the
# required ones: coreutils timeout/env and findutils xargs, because busybox's versions exec
# busybox applets (ash instead of bash) before PATH; ss for socket checks.
guest_progs=(/usr/bin/bash /usr/sbin/ipvsadm /usr/sbin/ip /usr/bin/ss /usr/bin/strace
    /usr/bin/timeout /usr/bin/env /usr/bin/xargs)
# Busybox applets not linked because a real program above takes the name.
skip_applets=" sh bash ip ss ipvsadm strace timeout env xargs linuxrc "

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one setup at a time; run.sh readers never take the lock

# --- 1. host packages --------------------------------------------------------------------
apt_updated=0
apt_update() {
    [ "$apt_updated" = 1 ] && return
    say "apt-get update"
    apt-get update -qq
    apt_updated=1
}
missing=()
for p in "${host_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { say "need root to install: ${missing[*]}"; exit 1; }
    apt_update
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
fi

# --- 2. kernel ----------------------------------------------------------------------------
resolve_kpkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-cloud-amd64$/ { print $2; exit }'
}
kpkg=$(resolve_kpkg)
if [ -z "$kpkg" ]; then
    apt_update
    kpkg=$(resolve_kpkg)
fi
[ -n "$kpkg" ] || { say "cannot resolve the package behind linux-image-cloud-amd64"; exit 1; }
kver=${kpkg#linux-image-}
kdir=$cache/$kver

# Everything the base initramfs is made of: when this changes, rebuild it.
scripts_hash=$(cat "$here/setup.sh" "$here/guest-init.sh" | sha256sum | cut -c1-16)
versions=$(dpkg-query -W -f='${Package}=${Version} ' busybox-static ipvsadm iproute2 strace \
    bash coreutils findutils libc6 libnl-3-200 libnl-genl-3-200 2>/dev/null || true)
full_hash=$(printf '%s\n' "$scripts_hash" "$kver" "$versions" | sha256sum | cut -c1-16)
stamp="scripts=$scripts_hash full=$full_hash kernel=$kver"

if [ -f "$kdir/base.cpio" ] && [ "$(cat "$kdir/base.stamp" 2>/dev/null)" = "$stamp" ]; then
    ln -sfn "$kver" "$cache/current.tmp" && mv -T "$cache/current.tmp" "$cache/current"
    [ "$quiet" = 1 ] || say "up to date: kernel $kver, base initramfs $(du -h "$kdir/base.cpio" | cut -f1) ($(elapsed) s)"
    exit 0
fi

mkdir -p "$cache/debs"
shopt -s nullglob
debs=("$cache/debs/${kpkg}_"*.deb)
if [ "${#debs[@]}" = 0 ]; then
    say "downloading $kpkg"
    dl=$(mktemp -d "$cache/debs/dl.XXXXXX")
    chmod 755 "$dl"
    chown _apt "$dl" 2>/dev/null || true # else apt warns that it downloads unsandboxed
    if ! (cd "$dl" && apt-get download -q "$kpkg" >/dev/null); then
        apt_update # a point release may have replaced the file the old lists name
        (cd "$dl" && apt-get download -q "$kpkg" >/dev/null)
    fi
    mv "$dl"/*.deb "$cache/debs/"
    rmdir "$dl"
    debs=("$cache/debs/${kpkg}_"*.deb)
    [ "${#debs[@]}" -gt 0 ] || { say "apt-get download gave no .deb"; exit 1; }
fi
deb=${debs[-1]}

build=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$build"' EXIT
say "extracting $(basename "$deb")"
dpkg-deb -x "$deb" "$build/deb"
kmods=$build/deb/lib/modules/$kver
[ -d "$kmods" ] || { say "no lib/modules/$kver in $deb"; exit 1; }

# --- 3. modules and their depends= closure ---------------------------------------------------
declare -A modpath=() # module name (with _) -> path relative to $kmods
while IFS= read -r -d '' f; do
    rel=${f#"$kmods"/}
    name=$(basename "$rel")
    name=${name%%.ko*}
    modpath[${name//-/_}]=$rel
done < <(find "$kmods/kernel" -name '*.ko*' -print0)

modfield() { # FILE FIELD: values of FIELD= in the module's .modinfo strings
    case $1 in
        *.xz) xz -dc "$1" ;;
        *.zst) zstd -dc "$1" ;;
        *) cat "$1" ;;
    esac | tr '\0' '\n' | sed -n "s/^$2=//p"
}

queue=()
for rel in "${modpath[@]}"; do
    case $rel in
        kernel/net/netfilter/ipvs/ip_vs*) queue+=("$rel") ;;
        kernel/drivers/net/veth.ko* | kernel/drivers/net/dummy.ko*) queue+=("$rel") ;;
        # Director pairs (tests/vm/pairs.sh): the bridge that joins the namespaces.
        kernel/net/bridge/bridge.ko*) queue+=("$rel") ;;
    esac
done
declare -A want=()
while [ "${#queue[@]}" -gt 0 ]; do
    rel=${queue[0]}
    queue=("${queue[@]:1}")
    [ -n "${want[$rel]:-}" ] && continue
    want[$rel]=1
    deps=$(modfield "$kmods/$rel" depends | tr ',' ' ')
    # softdeps ("pre: crc32c") are followed when they are modules, skipped when built in.
    soft=$(modfield "$kmods/$rel" softdep | sed 's/\(pre\|post\)://g')
    for d in $deps $soft; do
        d=${d//-/_}
        if [ -n "${modpath[$d]:-}" ]; then
            queue+=("${modpath[$d]}")
        elif ! grep -q "/${d//_/[-_]}\.ko" "$kmods/modules.builtin"; then
            case " $deps " in *" $d "*) say "module $d needed by $rel not found"; exit 1 ;; esac
        fi
    done
done

root=$build/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib64,lib/x86_64-linux-gnu,etc,proc,sys,dev,run,tmp,work,out,root}
mkdir -p "$root/lib/modules/$kver"
for rel in "${!want[@]}"; do
    mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
    cp "$kmods/$rel" "$root/lib/modules/$kver/$rel"
done
cp "$kmods"/modules.builtin "$kmods"/modules.order "$root/lib/modules/$kver/"
[ -f "$kmods/modules.builtin.modinfo" ] && cp "$kmods/modules.builtin.modinfo" "$root/lib/modules/$kver/"
busybox depmod -b "$root" "$kver"
cp "$build/deb/boot/vmlinuz-$kver" "$build/vmlinuz"

# --- 4. base initramfs ---------------------------------------------------------------------
copy_libs() { # ELF...: copy each one's shared libraries to the same path in $root
    local line lib
    for elf in "$@"; do
        while read -r line; do
            case $line in
                *"=> /"*) lib=${line#*=> }; lib=${lib%% (*} ;;
                /*) lib=${line%% (*} ;;
                *) continue ;;
            esac
            if [ ! -e "$root$lib" ]; then
                mkdir -p "$root$(dirname "$lib")"
                cp -L "$lib" "$root$lib"
            fi
        done < <(ldd "$elf" 2>/dev/null || true)
    done
}
cp /usr/bin/busybox "$root/bin/busybox"
for p in "${guest_progs[@]}"; do
    [ -x "$p" ] || { say "missing host program $p"; exit 1; }
    cp -L "$p" "$root$p"
done
copy_libs "${guest_progs[@]}"
for a in $(busybox --list-full); do
    case $skip_applets in *" ${a##*/} "*) continue ;; esac
    [ -e "$root/$a" ] || [ -L "$root/$a" ] || ln -s /bin/busybox "$root/$a"
done
ln -sfn /usr/bin/bash "$root/bin/sh"
ln -sfn /usr/bin/bash "$root/bin/bash"
ln -sfn /usr/sbin/ip "$root/sbin/ip"
[ -L "$root/sbin/modprobe" ] || ln -s /bin/busybox "$root/sbin/modprobe"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
install -m 755 "$here/guest-init.sh" "$root/init"

(cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    busybox cpio -o -0 -H newc -R 0:0 --renumber-inodes --ignore-devno 2>/dev/null) >"$build/base.cpio"
(cd "$root" && find . -mindepth 1 \! -type d | sed 's/^\.//' | LC_ALL=C sort) >"$build/base.list"

mkdir -p "$kdir"
for f in vmlinuz base.cpio base.list; do mv -f "$build/$f" "$kdir/$f"; done
echo "$stamp" >"$kdir/base.stamp"
ln -sfn "$kver" "$cache/current.tmp" && mv -T "$cache/current.tmp" "$cache/current"
# Older kernels are dropped; the current .deb is kept for an offline rebuild.
for d in "$cache"/*/; do
    d=${d%/}
    [ -L "$d" ] && continue
    case ${d##*/} in debs | "$kver" | build.*) ;; *) if [ -f "$d/base.stamp" ]; then rm -rf "$d"; fi ;; esac
done
for f in "$cache"/debs/*.deb; do
    case ${f##*/} in "${kpkg}"_*) ;; *) rm -f "$f" ;; esac
done
say "built kernel $kver: ${#want[@]} modules, base initramfs $(du -h "$kdir/base.cpio" | cut -f1), in $cache ($(elapsed) s)"
