#!/usr/bin/env bash
# Installs what paymux needs from Debian's archive, skipping what is already present.
# Usage: tools/deps.sh [build|test|bench]
set -euo pipefail
want=(g++ cmake ninja-build pkg-config ca-certificates curl
      libboost1.81-all-dev libboost-json1.81-dev libboost-url1.81-dev
      libssl-dev libspdlog-dev libyaml-cpp-dev libsqlite3-dev libqrencode-dev
      prometheus-cpp-dev)
case "${1:-build}" in
  test)  want+=(catch2 python3 nodejs npm wrk chromium) ;;
  bench) want+=(wrk python3) ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs from another origin may provide npm itself
if [[ " ${missing[*]} " == *" npm "* ]] && command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/npm}")
fi
if [[ " ${missing[*]} " == *" nodejs "* ]] && command -v node >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs}")
fi
read -r -a missing <<<"${missing[*]:-}"
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
