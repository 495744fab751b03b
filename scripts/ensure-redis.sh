#!/usr/bin/env bash
# Installs redis-server with the system package manager when it is missing.
# The integration tests need a real Redis; they are never skipped for want of one.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
SUDO=""
if [ "$(id -u)" != "0" ]; then
  command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
fi
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -q && $SUDO apt-get install -y -q redis-server && exit 0
elif command -v dnf >/dev/null 2>&1; then
  $SUDO dnf install -y redis && exit 0
elif command -v brew >/dev/null 2>&1; then
  brew install redis && exit 0
fi
echo "error: redis-server is required by the test suite and could not be installed automatically." >&2
echo "Install it (Debian/Ubuntu: 'apt-get install redis-server', macOS: 'brew install redis') and rerun 'make test'." >&2
exit 1
