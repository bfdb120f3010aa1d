#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, integration, lint) through CTest.
set -euo pipefail
cd "$(dirname "$0")"
bash tools/deps.sh test
preset=${PAYMUX_TEST_PRESET:-release}
cmake --preset "$preset" -DBUILD_TESTING=ON >/dev/null
cmake --build --preset "$preset"
ctest --preset "$preset" -j2 "$@"
