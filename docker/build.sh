#!/usr/bin/env bash
# Builds the paymux container image (docker/Dockerfile) with buildah, without a Docker engine or an
# image registry: when the base image debian:bookworm is not in buildah's local storage it is made
# here from Debian's archive (debootstrap --variant=minbase) and stored under the name the
# Dockerfile's FROM resolves to. Idempotent: a second run reuses the base image and cached layers.
#
#   docker/build.sh [extra buildah build arguments]
#
# Environment: IMAGE (default paymux:latest), DEBIAN_MIRROR (default: the first Debian mirror in
# this machine's APT sources, else http://deb.debian.org/debian), DEBIAN_SECURITY_MIRROR,
# BUILDAH_STORAGE_DRIVER (default vfs), PAYMUX_IMAGE_LAYERS=0 to build without the layer cache,
# PAYMUX_IMAGE_CCACHE (default /var/cache/paymux-image/ccache) the compiler cache kept between builds,
# PAYMUX_IMAGE_PRUNE=0 to keep untagged images of earlier builds (removed by default: vfs storage).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-paymux:latest}
BASE=docker.io/library/debian:bookworm      # what "FROM debian:bookworm" resolves to (shortnames.conf)
DRIVER=${BUILDAH_STORAGE_DRIVER:-vfs}

bash tools/deps.sh image

# The machine's own Debian mirror (sources.list or deb822 .sources), so the build needs nothing else.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && grep -v '^[[:space:]]*#' "$f"
  done | grep -oE "https?://[^ ]+/debian$1/?( |\$)" | head -n1 | tr -d ' ' | sed 's:/$::' || true
}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(apt_mirror '')}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(apt_mirror '-security')}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

bh() { buildah --storage-driver "$DRIVER" "$@"; }

if ! bh inspect --type image "$BASE" >/dev/null 2>&1; then
  echo "making $BASE from $DEBIAN_MIRROR (debootstrap --variant=minbase)"
  work=$(mktemp -d /var/tmp/paymux-rootfs.XXXXXX)
  ctr=""
  cleanup() { [ -z "$ctr" ] || bh rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$work"; }
  trap cleanup EXIT
  debootstrap --variant=minbase bookworm "$work/rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  # As in Debian's official image: no downloaded packages, package indexes or logs kept.
  chroot "$work/rootfs" apt-get clean
  rm -rf "$work/rootfs"/var/lib/apt/lists/* "$work/rootfs"/var/cache/apt/*.bin \
         "$work/rootfs"/var/log/*.log "$work/rootfs"/var/log/apt/* "$work/rootfs"/tmp/* \
         "$work/rootfs"/dev/* "$work/rootfs"/proc/* "$work/rootfs"/sys/* "$work/rootfs"/run/*
  ctr=$(bh from scratch)
  # tar keeps owners, modes, hard links and special bits; buildah copy would reset owners.
  mnt=$(bh mount "$ctr")
  tar -C "$work/rootfs" -cf - . | tar -C "$mnt" -xpf - --numeric-owner
  bh umount "$ctr" >/dev/null
  bh config --os linux --arch "$(dpkg --print-architecture)" --cmd bash \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  bh commit --quiet --rm "$ctr" "$BASE" >/dev/null
  ctr=""
  rm -rf "$work"
  trap - EXIT
  echo "stored $BASE"
fi

layers=--layers
[ "${PAYMUX_IMAGE_LAYERS:-1}" = 1 ] || layers=--layers=false
# The compile's ccache outlives the build: after a source change only what changed compiles.
CCACHE_HOST_DIR=${PAYMUX_IMAGE_CCACHE:-/var/cache/paymux-image/ccache}
mkdir -p "$CCACHE_HOST_DIR"
# --pull=never: the base comes from local storage (made above), never from a registry.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
bh build --isolation chroot --pull=never "$layers" --format docker -v "$CCACHE_HOST_DIR:/ccache" \
  --build-arg "DEBIAN_MIRROR=$DEBIAN_MIRROR" --build-arg "DEBIAN_SECURITY_MIRROR=$DEBIAN_SECURITY_MIRROR" \
  -f docker/Dockerfile -t "$IMAGE" "$@" . | tee "$log"

# vfs keeps every layer as a full copy (about 3 GB per build of changed sources): untagged images
# in this storage that this build did not produce or reuse (earlier builds' layers) are removed,
# children first.
if [ "${PAYMUX_IMAGE_PRUNE:-1}" = 1 ]; then
  keep=" $(grep -oE '^--> [0-9a-f]{11}$' "$log" | cut -c5- | tr '\n' ' ') "
  while :; do
    removed=0
    for id in $(bh images --noheading --format '{{.ID}} {{.Name}}' | awk '$2 == "<none>" {print $1}'); do
      [[ $keep == *" ${id:0:11} "* ]] && continue
      bh rmi "$id" >/dev/null 2>&1 && removed=1
    done
    [ "$removed" = 1 ] || break
  done
fi
bh images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"
