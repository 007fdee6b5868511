#!/usr/bin/env bash
# Prepares this host to build, test and run roam, doing only what is missing:
# system packages, CRIU >= 4.2 (built from Debian's source package when the
# installed one is older or absent), npm dependencies, the native addon and the
# TypeScript build. Safe to run again; each step says whether it did anything.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
CRIU_MIN=4.2
CRIU_PREFIX=/usr/local
CRIU_SRC_CACHE=/var/cache/roam/criu
# Where CRIU keeps its kernel-feature cache (criu.kdat); see ensure_criu_kdat_cache.
CRIU_KDAT_DIR=/run/roam-criu
# runc runs containers (and checkpoints them through CRIU); tar carries a
# container's filesystem changes and volumes between agents.
RUNTIME_PACKAGES=(nftables iproute2 util-linux procps runc tar)
# What the tests and benches use: iperf3 (throughput), python3 (a forking
# server workload), prometheus (promtool and a real scrape of the testbed),
# busybox-static (the root filesystem of the containers tests and benches run), redis-server (an
# unmodified service run as an endpoint, with an empty argument: --save ''), containerd and the CNI
# plugins (Debian's, in /usr/lib/cni: the testbed runs one containerd per node for the pods' tests).
TOOL_PACKAGES=(iperf3 python3 prometheus busybox-static redis-server containerd containernetworking-plugins)
# The addon links libnftables (the network lock), roam-hold links
# libnetfilter_log (what the lock drops, kept for replay); node-gyp builds both.
NATIVE_BUILD_PACKAGES=(build-essential pkg-config libnftables-dev libnetfilter-log-dev)
CRIU_RPC_PROTO=$CRIU_PREFIX/share/roam/criu/rpc.proto
CRIU_BUILD_PACKAGES=(build-essential pkg-config libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler
  protobuf-compiler python3-protobuf libnl-3-dev libnet1-dev libcap-dev libbsd-dev libgnutls28-dev
  libnftables-dev uuid-dev libdrm-dev xz-utils)

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "roam needs root (network namespaces, netlink, CRIU); run as root"

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
}

missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf '%s ' "$p"
  done
}

ensure_packages() {
  local what=$1; shift
  local missing
  missing=$(missing_packages "$@")
  if [ -z "$missing" ]; then
    say "$what: already installed"
    return
  fi
  apt_update_once
  say "$what: installing $missing"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

version_at_least() { # $1 >= $2 ?
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

installed_criu_version() {
  command -v criu >/dev/null 2>&1 || return 0
  criu --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1
}

# Each CRIU run probes ~20 kernel features (creating a veth, among others)
# unless it finds them cached in criu.kdat, which CRIU writes only on a tmpfs
# (the cache must not survive a reboot into another kernel). On hosts whose
# /run is not a tmpfs, the probe costs ~20 ms of every dump and restore, inside
# the frozen window. So CRIU is built to keep it in $CRIU_KDAT_DIR, on a small
# tmpfs that ensure_criu_kdat_cache mounts.
criu_kdat_file() {
  grep -aoE '/[A-Za-z0-9/_.-]*/criu\.kdat' "$(command -v criu)" | head -n1
}

criu_keeps_kdat_cache() {
  local file
  file=$(criu_kdat_file)
  [ "$file" = "$CRIU_KDAT_DIR/criu.kdat" ] || [ "$(stat -f -c %T "$(dirname "${file:-/run/criu.kdat}")" 2>/dev/null)" = tmpfs ]
}

ensure_criu_kdat_cache() {
  [ "$(criu_kdat_file)" = "$CRIU_KDAT_DIR/criu.kdat" ] || return 0
  mkdir -p "$CRIU_KDAT_DIR"
  if [ "$(stat -f -c %T "$CRIU_KDAT_DIR")" = tmpfs ]; then
    say "criu kernel-feature cache: $CRIU_KDAT_DIR is a tmpfs"
    return
  fi
  say "criu kernel-feature cache: mounting a 1 MiB tmpfs at $CRIU_KDAT_DIR"
  mount -t tmpfs -o size=1m,mode=0700 roam-criu "$CRIU_KDAT_DIR" || say "warning: could not mount a tmpfs at $CRIU_KDAT_DIR; every CRIU run will probe the kernel again"
}

ensure_criu() {
  local have
  have=$(installed_criu_version)
  if [ -n "$have" ] && version_at_least "$have" "$CRIU_MIN" && [ -f "$CRIU_RPC_PROTO" ]; then
    if criu_keeps_kdat_cache; then
      say "criu $have: already installed"
      return
    fi
    say "criu $have: cannot keep its kernel-feature cache here (built for $(dirname "$(criu_kdat_file)"), not a tmpfs): rebuilding"
  fi
  say "criu ${have:-missing}: building >= $CRIU_MIN from Debian's source package"
  ensure_packages "criu build dependencies" "${CRIU_BUILD_PACKAGES[@]}"
  local sources=/etc/apt/sources.list.d/roam-criu-src.sources
  if [ ! -f "$sources" ]; then
    # Only source packages from unstable: nothing installed comes from there.
    cat >"$sources" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_updated=0
  fi
  apt_update_once
  mkdir -p "$CRIU_SRC_CACHE"
  (cd "$CRIU_SRC_CACHE" && apt-get source --download-only --tar-only criu/sid >/dev/null 2>&1) \
    || die "could not download CRIU's source package (apt-get source criu/sid)"
  local tarball
  tarball=$(ls -1 "$CRIU_SRC_CACHE"/criu_*.orig.tar.* | sort -V | tail -n1)
  [ -n "$tarball" ] || die "no CRIU source tarball in $CRIU_SRC_CACHE"
  local build
  build=$(mktemp -d /tmp/roam-criu-build.XXXXXX)
  tar -xf "$tarball" -C "$build"
  local dir
  dir=$(ls -d "$build"/criu-*)
  say "building $(basename "$dir") (make criu)"
  make -C "$dir" -j"$(nproc)" RUNDIR="$CRIU_KDAT_DIR" criu >"$build/build.log" 2>&1 || { tail -n 30 "$build/build.log" >&2; die "CRIU build failed (log: $build/build.log)"; }
  install -m 0755 "$dir/criu/criu" "$CRIU_PREFIX/sbin/criu"
  install -d "$CRIU_PREFIX/share/roam/criu"
  install -m 0644 "$dir/images/rpc.proto" "$CRIU_PREFIX/share/roam/criu/rpc.proto"
  rm -rf "$build"
  hash -r
  have=$(installed_criu_version)
  version_at_least "${have:-0}" "$CRIU_MIN" || die "installed CRIU reports version '${have:-none}', need >= $CRIU_MIN"
  criu check >/dev/null 2>&1 || say "warning: 'criu check' is not happy on this kernel; see 'criu check' output"
  say "criu $have installed at $CRIU_PREFIX/sbin/criu"
}

# CRIU's lazy-pages server (post-copy) sizes its tee pipe to ~3.2 MiB with
# F_SETPIPE_SZ. Above fs.pipe-max-size (1 MiB by default) that needs
# CAP_SYS_RESOURCE, which root lacks on some hosts (containers, sandboxes);
# CRIU then fails while serving pages ("page-pipe: tee: 65536: Operation not
# permitted", or "splice: -1: Bad file descriptor"). 4 MiB is enough.
PIPE_MAX_SIZE_NEEDED=4194304
ensure_pipe_max_size() {
  local now
  now=$(cat /proc/sys/fs/pipe-max-size)
  if [ "$now" -ge "$PIPE_MAX_SIZE_NEEDED" ]; then
    say "fs.pipe-max-size $now: enough for CRIU's lazy pages"
    return
  fi
  say "fs.pipe-max-size $now: raising to $PIPE_MAX_SIZE_NEEDED for CRIU's lazy pages"
  echo "$PIPE_MAX_SIZE_NEEDED" >/proc/sys/fs/pipe-max-size || say "warning: could not raise fs.pipe-max-size; post-copy will not work here"
}

ensure_node_modules() {
  local stamp=node_modules/.package-lock.json
  if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ] && [ "$stamp" -nt package.json ]; then
    say "npm dependencies: up to date"
    return
  fi
  say "npm dependencies: npm ci"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
}

ensure_native() {
  local out=native/build/Release
  if [ ! -f native/build/Makefile ]; then
    say "native addon: configuring"
    npx --no-install node-gyp --directory=native configure --loglevel=error >/dev/null
  fi
  local newest_src
  newest_src=$(find native/src native/binding.gyp -newer "$out/roam_native.node" 2>/dev/null | head -n1 || true)
  if [ -f "$out/roam_native.node" ] && [ -f "$out/roam-shim" ] && [ -f "$out/roam-nsexec" ] && [ -f "$out/roam-hold" ] && [ -f "$out/roam-criu-hook" ] && [ -z "$newest_src" ]; then
    say "native addon: up to date"
    return
  fi
  say "native addon: building"
  npx --no-install node-gyp --directory=native build --loglevel=error >/dev/null
}

ensure_typescript() {
  if [ -f dist/.tsbuildinfo ] && [ ! tsconfig.json -nt dist/.tsbuildinfo ] && [ -z "$(find src test bench -name '*.ts' -newer dist/.tsbuildinfo 2>/dev/null | head -n1)" ]; then
    say "typescript: up to date"
    return
  fi
  say "typescript: building"
  npx --no-install tsc -p tsconfig.json
}

ensure_packages "runtime packages" "${RUNTIME_PACKAGES[@]}"
ensure_packages "native build packages" "${NATIVE_BUILD_PACKAGES[@]}"
ensure_packages "test and bench tools" "${TOOL_PACKAGES[@]}"
ensure_criu
ensure_criu_kdat_cache
ensure_pipe_max_size
ensure_node_modules
ensure_native
ensure_typescript
say "ready ($ROOT)"
