#!/usr/bin/env bash
# Installs the ready adapters' client libraries inside the checkout, nothing system-wide:
#   adapters/.venv                 redis-py and valkey-glide (PyPI), for the Python adapters
#   adapters/ioredis/node_modules  ioredis (npm)
#   adapters/node-redis/node_modules  node-redis (npm `redis`)
#   adapters/go-redis/bin          the go-redis adapter, built with `go build` (its modules in
#                                  adapters/go-redis/.gomodcache)
#   adapters/lettuce/target        Lettuce (Maven Central), built with Maven: the JVM adapters
#   adapters/jedis/target          Jedis (Maven Central)
#   adapters/redisson/target       Redisson (Maven Central)
# Then each adapter runs as `adapters/<name>/run` (what `--clients exec:NAME=...` is given).
# Needs python3 (with venv/pip), for ioredis and node-redis node and npm, for go-redis Go >= the
# version in adapters/go-redis/go.mod, for the JVM adapters a JDK (>= 17) and Maven (installed
# from Debian's packages when missing). Safe to run again. A Go, node-redis or JVM step that
# cannot build says which and why, the others still install, and the script then exits 1.
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

# Adapters whose step may fail without stopping the others: their names, for the end.
not_installed=()

# --- node-redis (npm `redis`) ---------------------------------------------------------------
# Exactly node-redis/package-lock.json (`npm install --package-lock-only --ignore-scripts` after
# editing package.json), each tarball checked against its integrity hash, no install scripts.
install_node_redis() {
  command -v npm >/dev/null || { echo "adapters/install.sh: node-redis not installed: no npm" >&2; return 1; }
  (cd "$here/node-redis" && npm ci --silent --no-audit --no-fund --ignore-scripts >/dev/null) || {
    echo "adapters/install.sh: node-redis not installed: \`npm ci\` in adapters/node-redis failed (above)" >&2
    return 1
  }
}
install_node_redis || not_installed+=(node-redis)

# --- go-redis (Go) ----------------------------------------------------------------------------
# go.mod pins go-redis, go.sum holds the hash of every module: -mod=readonly refuses to change
# either, each download is checked against go.sum (and the checksum database), and `go mod
# verify` checks the module cache the binary is built from. The modules stay in the checkout
# (-modcacherw: removable with rm -rf); GOTOOLCHAIN=local: an older Go says so rather than
# fetching a newer one.
install_go_redis() {
  local dir="$here/go-redis"
  command -v go >/dev/null || {
    echo "adapters/install.sh: go-redis not built: no \`go\` on PATH (Go $(sed -n 's/^go //p' "$dir/go.mod") or newer: https://go.dev/dl/)" >&2
    return 1
  }
  (
    cd "$dir" &&
      export GOFLAGS="-mod=readonly -modcacherw" GOMODCACHE="$dir/.gomodcache" GOTOOLCHAIN=local CGO_ENABLED=0 &&
      go mod download &&
      go mod verify >/dev/null &&
      go build -trimpath -o bin/go-redis-adapter .
  ) || {
    echo "adapters/install.sh: go-redis not built: \`go build\` in adapters/go-redis failed (above)" >&2
    return 1
  }
}
install_go_redis || not_installed+=(go-redis)

# --- JVM adapters: Lettuce, Jedis, Redisson ---------------------------------------------------------------
# Each is one Maven project (adapters/<name>/pom.xml, every version pinned, plugins included),
# built with --strict-checksums (a downloaded file whose checksum does not match is refused, not
# warned about) into adapters/<name>/target: the jar, its libraries in target/lib, and a
# class-data sharing archive (target/app.jsa, made by one training run of the adapter, see
# adapters/jvm-protocol) that its `run` maps to start faster. Maven's local repository is the
# usual ~/.m2.
build_jvm_adapter() {
  local name="$1" dir="$here/$1"
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    apt_install openjdk-17-jdk-headless maven || true
  fi
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    echo "adapters/install.sh: $name not built: needs java (a JDK >= 17) and mvn (Maven), which could not be installed" >&2
    return 1
  fi
  # Maven's own output only when it fails (a quiet build still prints terminal resets).
  local out
  out="$(mktemp)"
  if ! (cd "$dir" && mvn -B -q -Dstyle.color=never --strict-checksums package) >"$out" 2>&1; then
    cat "$out" >&2
    rm -f "$out"
    echo "adapters/install.sh: $name not built: \`mvn package\` failed in adapters/$name (its output is above)" >&2
    return 1
  fi
  rm -f "$out"
  rm -f "$dir/target/app.jsa"
  # The training run fails to connect on purpose (a refused address): the archive is written at exit.
  FAILPROBE_ADAPTER_TRAIN=1 FAILPROBE_TARGET=redis://127.0.0.1:1 FAILPROBE_TIMEOUT_MS=250 \
    java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ArchiveClassesAtExit="$dir/target/app.jsa" \
    -jar "$dir/target/failprobe-$name.jar" >/dev/null 2>&1 || true
  [ -f "$dir/target/app.jsa" ] || echo "adapters/install.sh: $name: no class-data sharing archive (it starts slower)" >&2
}
build_lettuce() { build_jvm_adapter lettuce || not_installed+=(lettuce); }
build_jedis() { build_jvm_adapter jedis || not_installed+=(jedis); }
build_redisson() { build_jvm_adapter redisson || not_installed+=(redisson); }
build_lettuce
build_jedis
build_redisson

echo "adapters installed:"
"$here/.venv/bin/python" -c 'import redis; print("  redis-py", redis.__version__)'
"$here/.venv/bin/python" -c 'import importlib.metadata as m; print("  valkey-glide", m.version("valkey-glide"))'
if [ -f "$here/ioredis/node_modules/ioredis/package.json" ]; then
  node -e 'console.log("  ioredis", require(process.argv[1]).version)' "$here/ioredis/node_modules/ioredis/package.json"
fi
if [ -f "$here/node-redis/node_modules/redis/package.json" ]; then
  node -e 'console.log("  node-redis", require(process.argv[1]).version)' "$here/node-redis/node_modules/redis/package.json"
fi
if [ -x "$here/go-redis/bin/go-redis-adapter" ]; then
  go version -m "$here/go-redis/bin/go-redis-adapter" | awk '$2 == "github.com/redis/go-redis/v9" { print "  go-redis", $3 }'
fi
# The library each JVM adapter was built with, from its jar's name in target/lib.
for name in lettuce:lettuce-core jedis:jedis redisson:redisson; do
  dir="$here/${name%%:*}/target/lib"
  for jar in "$dir/${name##*:}"-[0-9]*.jar; do
    [ ! -f "$jar" ] || echo "  ${name%%:*} $(basename "$jar" .jar | sed "s/^${name##*:}-//")"
  done
done
if [ ${#not_installed[@]} -gt 0 ]; then
  echo "adapters/install.sh: not installed: ${not_installed[*]} (why: above)" >&2
  exit 1
fi
