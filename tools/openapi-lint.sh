#!/usr/bin/env bash
# Lints openapi.yaml (the merchant/gateway contract of ../shared/design/API.md) with Redocly CLI and
# its recommended ruleset, warnings raised to errors (tools/openapi/redocly.yaml says why any rule
# is relaxed). Redocly is pinned in tools/openapi/package.json + package-lock.json and installed
# into tools/openapi/node_modules on first use (npm ci when the lock file exists).
# Works from any directory; exits non-zero when the lint reports a problem or node/npm is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tool_dir="tools/openapi"
redocly="$tool_dir/node_modules/.bin/redocly"

for cmd in node npm; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "openapi-lint: '$cmd' not found; install Node.js (>= 20.19) and npm" >&2
    exit 2
  fi
done

# No telemetry or update banners from a lint run (CI logs stay about the spec).
export REDOCLY_TELEMETRY=off
export REDOCLY_SUPPRESS_UPDATE_NOTICE=true
export REDOCLY_SUPPRESS_NOTIFICATIONS=true

# Installed already, and at the pinned version? (A bumped pin reinstalls.)
pinned="$(node -p "require('./$tool_dir/package.json').devDependencies['@redocly/cli']")"
installed="$(node -p "try { require('./$tool_dir/node_modules/@redocly/cli/package.json').version } catch { '' }")"
if [[ ! -x "$redocly" || "$installed" != "$pinned" ]]; then
  echo "openapi-lint: installing @redocly/cli $pinned into $tool_dir/node_modules" >&2
  if [[ -f "$tool_dir/package-lock.json" ]]; then
    npm ci --prefix "$tool_dir" --no-audit --no-fund --loglevel=error
  else
    npm install --prefix "$tool_dir" --no-audit --no-fund --loglevel=error
  fi
fi

exec "$redocly" lint --config "$tool_dir/redocly.yaml" --format=codeframe openapi.yaml
