#!/usr/bin/env bash
# The base images the Dockerfiles start from: `python:3.11-slim` (the services) and
# `debian:bookworm-slim` (the offline profile's Kafka and PostgreSQL). Pulled from the registry
# when one answers; otherwise made here: a Debian bookworm minbase with Python 3.11 (debootstrap
# from the Debian mirror), a venv in /usr/local for the `pip` the Dockerfiles call, imported
# under both names. The root file system is cached as a tarball in .cache/images/, so a second
# run is instant and an image store wiped by `podman system reset` is refilled in seconds.
# Needs root for debootstrap (docs/operations.md, "Images").
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/ops/images/containers.conf}"

say() { printf '\033[1;36mimages\033[0m %s\n' "$*"; }

CACHE="${SYI_CACHE_DIR:-$PWD/.cache}/images"
TARBALL="$CACHE/python-3.11-bookworm.tar"
MIRROR="${SYI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The names the Dockerfiles use, and the official images they stand for.
NAMES=(python:3.11-slim debian:bookworm-slim)
OFFICIAL=(docker.io/library/python:3.11-slim docker.io/library/debian:bookworm-slim)

have() { podman image exists "$1"; }

missing=()
for i in "${!NAMES[@]}"; do
  have "${OFFICIAL[$i]}" || missing+=("$i")
done
[ ${#missing[@]} -eq 0 ] && exit 0

# A registry first: production images keep the official bases.
if [ "${SYI_IMAGES_OFFLINE:-0}" != 1 ]; then
  still=()
  for i in "${missing[@]}"; do
    timeout 300 podman pull -q "${OFFICIAL[$i]}" >/dev/null 2>&1 || still+=("$i")
  done
  missing=("${still[@]+"${still[@]}"}")
  [ ${#missing[@]} -eq 0 ] && exit 0
  say "no registry answers for ${NAMES[*]}: using the local Debian base"
fi

if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null || { echo "debootstrap is missing (bash scripts/setup.sh --containers)" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "making the local base needs root (debootstrap, chroot)" >&2; exit 1; }
  mkdir -p "$CACHE"
  root="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  trap 'rm -rf "$root"' EXIT
  say "debootstrap bookworm (minbase, python3) into $root: about a minute"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  # The official image's `pip` and `python` are on PATH in /usr/local/bin: a venv there gives both.
  chroot "$root" python3 -m venv /usr/local
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -cf "$TARBALL.part" . && mv "$TARBALL.part" "$TARBALL"
  rm -rf "$root"
  trap - EXIT
fi

say "importing the local base from $TARBALL"
id="$(podman import -q --change "ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change 'CMD ["python3"]' "$TARBALL")"
for i in "${missing[@]}"; do
  podman tag "$id" "${OFFICIAL[$i]}"
done
say "base ready: ${NAMES[*]} (local Debian bookworm + Python 3.11)"
