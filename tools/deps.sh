#!/usr/bin/env bash
# Installs what paymux needs from Debian's archive, skipping what is already present.
# Usage: tools/deps.sh [build|test|bench|image|runtime]
#   build    compiler, CMake and the libraries' headers (also what docker/Dockerfile's build stage runs)
#   runtime  only the shared libraries paymux links plus CA certificates (docker/Dockerfile's runtime stage)
#   image    buildah and debootstrap, to build and run the container image without a Docker engine
set -euo pipefail
# Boost: libboost1.81-dev (the headers: Asio, Beast) plus the two compiled libraries paymux links,
# Boost.JSON and Boost.URL: the parts of libboost1.81-all-dev that paymux uses.
want=(g++ cmake ninja-build pkg-config ccache ca-certificates curl
      libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
      libssl-dev libspdlog-dev libyaml-cpp-dev libsqlite3-dev libqrencode-dev libpq-dev
      libzstd-dev prometheus-cpp-dev libtcmalloc-minimal4)
case "${1:-build}" in
  build) ;;
  test)  want+=(catch2 python3 nodejs npm wrk chromium postgresql-15 postgresql-client-15) ;;
  bench) want+=(wrk python3 postgresql-15 postgresql-client-15) ;;
  image) want=(buildah debootstrap ca-certificates) ;;
  runtime) want=(ca-certificates libboost-json1.81.0 libboost-url1.81.0 libssl3 libspdlog1.10
                 libfmt9 libyaml-cpp0.7 libsqlite3-0 libpq5 libqrencode4 libzstd1 libprometheus-cpp-core1.0
                 libtcmalloc-minimal4) ;;
  *) echo "usage: $0 [build|test|bench|image|runtime]" >&2; exit 2 ;;
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
