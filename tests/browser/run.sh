#!/usr/bin/env bash
# The browser tests (test_browser.py): installs playwright-core at the version pinned in
# tests/browser/package-lock.json into tests/browser/node_modules when missing or different, then
# runs them against PAYMUX_BIN / PAYMUX_SANDBOX_BIN with Debian's chromium (tools/deps.sh test).
# Screenshots go to $PAYMUX_BROWSER_ARTIFACTS.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$dir"

for cmd in node npm python3; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "browser tests: '$cmd' not found (tools/deps.sh test)" >&2; exit 2; }
done
chromium="${PAYMUX_CHROMIUM:-/usr/bin/chromium}"
[[ -x "$chromium" ]] || { echo "browser tests: $chromium not found (tools/deps.sh test installs chromium)" >&2; exit 2; }

pinned="$(node -p "require('./package.json').devDependencies['playwright-core']")"
installed="$(node -p "try { require('./node_modules/playwright-core/package.json').version } catch { '' }")"
if [[ "$installed" != "$pinned" ]]; then
  echo "browser tests: installing playwright-core $pinned (npm ci)" >&2
  npm ci --prefer-offline --no-audit --no-fund --loglevel=error
fi

# Arguments name tests (test_browser.CheckoutJourneys.test_glocash_card_page); default: all of them.
(($#)) || set -- test_browser
exec python3 -m unittest -v "$@"
