#!/bin/sh
# Points APT at one Debian archive: apt-sources.sh MIRROR SECURITY_MIRROR (bookworm, main).
set -eu
rm -f /etc/apt/sources.list.d/debian.sources
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
  "$1" "$1" "$2" > /etc/apt/sources.list
