#!/usr/bin/env bash
# Installs Debian's chromium when /usr/bin/chromium is missing: the console's browser tests drive it with
# Playwright. Playwright's own browser download (`playwright install`) is never used: it cannot work where
# only package registries are reachable, and one system browser is enough.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
SUDO=""
if [ "$(id -u)" != "0" ]; then
  command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
fi
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends chromium && [ -x /usr/bin/chromium ] && exit 0
fi
echo "error: the browser tests need /usr/bin/chromium and it could not be installed automatically." >&2
echo "Install it (Debian/Ubuntu: 'apt-get install chromium') and rerun 'make test'." >&2
exit 1
