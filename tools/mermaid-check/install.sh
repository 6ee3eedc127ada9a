#!/usr/bin/env bash
# Installs the npm packages of tools/mermaid-check from the committed
# package-lock.json, only when node_modules is missing or stale.
#
#   bash tools/mermaid-check/install.sh            # mermaid only: check.mjs
#   bash tools/mermaid-check/install.sh --render   # also mermaid-cli + puppeteer: render.mjs
#
# Once --render was installed, later runs keep it (a stale tree is reinstalled with it).
#
# Needs node and npm (Debian: apt-get install nodejs npm, or the machine's own).
# --render needs Debian's chromium to be useful (apt-get install chromium);
# puppeteer never downloads a browser of its own here.
set -euo pipefail
cd "$(dirname "$0")"

mode=check
case "${1:-}" in
  "") ;;
  --render) mode=render ;;
  *) echo "usage: $0 [--render]" >&2; exit 2 ;;
esac

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "mermaid-check: $tool not found (apt-get install nodejs npm)" >&2; exit 1; }
done

# What node_modules was installed from: the lockfile's hash, the mode, node's major version.
lock_hash=$(sha256sum package.json package-lock.json | sha256sum | cut -c1-16)
node_major=$(node -p 'process.versions.node.split(".")[0]')
stamp=node_modules/.oxcat-install-stamp
if [ -f "$stamp" ]; then
  read -r have_hash have_mode have_node <"$stamp" || true
  if [ "${have_hash:-}" = "$lock_hash" ] && [ "${have_node:-}" = "$node_major" ] &&
     { [ "${have_mode:-}" = render ] || [ "$mode" = check ]; }; then
    exit 0 # up to date
  fi
  # Never drop the render packages that were there: reinstall them too.
  if [ "${have_mode:-}" = render ]; then mode=render; fi
fi

omit=()
[ "$mode" = check ] && omit=(--omit=dev)
echo "mermaid-check: npm ci ($mode) in tools/mermaid-check" >&2
rm -f "$stamp"
# mermaid 12 declares node >=22.12 but parses and renders under node 20: keep
# npm's engine warnings out of the log.
PUPPETEER_SKIP_DOWNLOAD=1 PUPPETEER_SKIP_CHROME_HEADLESS_SHELL_DOWNLOAD=1 \
  npm ci --no-audit --no-fund --loglevel=error "${omit[@]}" >&2
echo "$lock_hash $mode $node_major" >"$stamp"
