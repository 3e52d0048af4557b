#!/usr/bin/env bash
# Installs the ready adapters' client libraries inside the checkout, nothing system-wide:
#   adapters/.venv                 redis-py and valkey-glide (PyPI), for the Python adapters
#   adapters/ioredis/node_modules  ioredis (npm)
# Then each adapter runs as `adapters/<name>/run` (what `--clients exec:NAME=...` is given).
# Needs python3 (with venv/pip) and, for ioredis, node and npm. Safe to run again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# Every package, dependencies included, is locked with its files' hashes, so that a measured table
# can be reproduced and a file changed under a known version is refused: redis-py and valkey-glide
# in requirements.lock (regenerate it with the command in its header), ioredis in
# ioredis/package-lock.json (`npm install --package-lock-only` after editing package.json).
# REDIS_PY_VERSION / GLIDE_VERSION still install another version, but say so: nothing is then
# hash-checked.
lock="$here/requirements.lock"
locked() { sed -n "s/^$1==\([^ ;]*\).*/\1/p" "$lock"; }

# What a bare Debian/Ubuntu lacks (python3-venv, node and npm), from its packages.
# shellcheck source=scripts/apt.sh
. "$here/../scripts/apt.sh"

if [ ! -x "$here/.venv/bin/python" ]; then
  rm -rf "$here/.venv"
  python3 -m venv "$here/.venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$here/.venv"; }
fi
# Wheels only: installing runs no package's build code.
pip=("$here/.venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all:)
if [ -n "${REDIS_PY_VERSION:-}${GLIDE_VERSION:-}" ]; then
  for var in REDIS_PY_VERSION:redis GLIDE_VERSION:valkey-glide; do
    name="${var%%:*}" package="${var##*:}"
    [ -z "${!name:-}" ] || echo "adapters/install.sh: $name=${!name} overrides the locked $package $(locked "$package"): installed without hash checking" >&2
  done
  "${pip[@]}" "redis==${REDIS_PY_VERSION:-$(locked redis)}" "valkey-glide==${GLIDE_VERSION:-$(locked valkey-glide)}"
else
  # Without --no-deps: a dependency missing from the lock is refused rather than fetched unchecked.
  "${pip[@]}" --require-hashes -r "$lock"
fi

command -v npm >/dev/null || apt_install nodejs npm
# `npm ci` installs exactly package-lock.json and checks each tarball against its integrity hash.
(cd "$here/ioredis" && npm ci --silent --no-audit --no-fund --ignore-scripts >/dev/null)

echo "adapters installed:"
"$here/.venv/bin/python" -c 'import redis; print("  redis-py", redis.__version__)'
"$here/.venv/bin/python" -c 'import importlib.metadata as m; print("  valkey-glide", m.version("valkey-glide"))'
if [ -f "$here/ioredis/node_modules/ioredis/package.json" ]; then
  node -e 'console.log("  ioredis", require(process.argv[1]).version)' "$here/ioredis/node_modules/ioredis/package.json"
fi
