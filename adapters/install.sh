#!/usr/bin/env bash
# Installs the ready adapters' client libraries inside the checkout, nothing system-wide:
#   adapters/.venv                 redis-py and valkey-glide (PyPI), for the Python adapters
#   adapters/ioredis/node_modules  ioredis (npm)
#   adapters/lettuce/target        Lettuce (Maven Central), built with Maven: the JVM adapters
#   adapters/jedis/target          Jedis (Maven Central)
#   adapters/redisson/target       Redisson (Maven Central)
# Then each adapter runs as `adapters/<name>/run` (what `--clients exec:NAME=...` is given).
# Needs python3 (with venv/pip), for ioredis node and npm, for the JVM adapters a JDK (>= 17) and
# Maven (installed from Debian's packages when missing). Safe to run again. A JVM adapter that
# cannot be built says which and why; the others still install (exit status 1 at the end).
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

# --- JVM adapters: Lettuce, Jedis, Redisson ---------------------------------------------------------------
# Each is one Maven project (adapters/<name>/pom.xml, every version pinned, plugins included),
# built with --strict-checksums (a downloaded file whose checksum does not match is refused, not
# warned about) into adapters/<name>/target: the jar, its libraries in target/lib, and a
# class-data sharing archive (target/app.jsa, made by one training run of the adapter, see
# adapters/jvm-protocol) that its `run` maps to start faster. Maven's local repository is the
# usual ~/.m2.
jvm_failed=()
build_jvm_adapter() {
  local name="$1" dir="$here/$1"
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    apt_install openjdk-17-jdk-headless maven || true
  fi
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    echo "adapters/install.sh: $name not built: needs java (a JDK >= 17) and mvn (Maven), which could not be installed" >&2
    return 1
  fi
  if ! (cd "$dir" && mvn -B -q --strict-checksums package); then
    echo "adapters/install.sh: $name not built: \`mvn package\` failed in adapters/$name (its output is above)" >&2
    return 1
  fi
  rm -f "$dir/target/app.jsa"
  # The training run fails to connect on purpose (a refused address): the archive is written at exit.
  FAILPROBE_ADAPTER_TRAIN=1 FAILPROBE_TARGET=redis://127.0.0.1:1 FAILPROBE_TIMEOUT_MS=250 \
    java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ArchiveClassesAtExit="$dir/target/app.jsa" \
    -jar "$dir/target/failprobe-$name.jar" >/dev/null 2>&1 || true
  [ -f "$dir/target/app.jsa" ] || echo "adapters/install.sh: $name: no class-data sharing archive (it starts slower)" >&2
}
build_lettuce() { build_jvm_adapter lettuce || jvm_failed+=(lettuce); }
build_jedis() { build_jvm_adapter jedis || jvm_failed+=(jedis); }
build_redisson() { build_jvm_adapter redisson || jvm_failed+=(redisson); }
build_lettuce
build_jedis
build_redisson

echo "adapters installed:"
"$here/.venv/bin/python" -c 'import redis; print("  redis-py", redis.__version__)'
"$here/.venv/bin/python" -c 'import importlib.metadata as m; print("  valkey-glide", m.version("valkey-glide"))'
if [ -f "$here/ioredis/node_modules/ioredis/package.json" ]; then
  node -e 'console.log("  ioredis", require(process.argv[1]).version)' "$here/ioredis/node_modules/ioredis/package.json"
fi
# The library each JVM adapter was built with, from its jar's name in target/lib.
for name in lettuce:lettuce-core jedis:jedis redisson:redisson; do
  dir="$here/${name%%:*}/target/lib"
  for jar in "$dir/${name##*:}"-[0-9]*.jar; do
    [ ! -f "$jar" ] || echo "  ${name%%:*} $(basename "$jar" .jar | sed "s/^${name##*:}-//")"
  done
done
if [ "${#jvm_failed[@]}" -gt 0 ]; then
  echo "adapters/install.sh: not built: ${jvm_failed[*]} (see above)" >&2
  exit 1
fi
