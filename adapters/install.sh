#!/usr/bin/env bash
# Installs the ready adapters' client libraries inside the checkout, nothing system-wide:
#   adapters/.venv                 redis-py and valkey-glide (PyPI), for the Python adapters
#   adapters/ioredis/node_modules  ioredis (npm)
# Then each adapter runs as `adapters/<name>/run` (what `--clients exec:NAME=...` is given).
# Needs python3 (with venv/pip) and, for ioredis, node and npm. Safe to run again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# Versions pinned (ioredis in adapters/ioredis/package.json) so that a measured table can be reproduced; bump them deliberately.
REDIS_PY_VERSION="${REDIS_PY_VERSION:-8.1.0}"
GLIDE_VERSION="${GLIDE_VERSION:-2.6.0}"

# What a bare Debian/Ubuntu lacks (python3-venv, node and npm), from its packages.
# shellcheck source=scripts/apt.sh
. "$here/../scripts/apt.sh"

if [ ! -x "$here/.venv/bin/python" ]; then
  rm -rf "$here/.venv"
  python3 -m venv "$here/.venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$here/.venv"; }
fi
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check \
  "redis==$REDIS_PY_VERSION" "valkey-glide==$GLIDE_VERSION"

command -v npm >/dev/null || apt_install nodejs npm
(cd "$here/ioredis" && npm install --silent --no-audit --no-fund --no-package-lock >/dev/null)

echo "adapters installed:"
"$here/.venv/bin/python" -c 'import redis; print("  redis-py", redis.__version__)'
"$here/.venv/bin/python" -c 'import importlib.metadata as m; print("  valkey-glide", m.version("valkey-glide"))'
[ -f "$here/ioredis/node_modules/ioredis/package.json" ] &&
  node -e 'console.log("  ioredis", require(process.argv[1]).version)' "$here/ioredis/node_modules/ioredis/package.json"
